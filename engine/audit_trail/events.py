"""One builder per audit event class of PS3.15 A.5.3: the engine's facts in, an ``AuditEvent`` out.

Every builder takes ``engine``, the participant this engine is in the event (its AE title / application
name, its host), and returns the participants and participant objects the message description requires.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import codes
from .codes import Code
from .message import AuditEvent, Participant, ParticipantObject, StudyDescription


@dataclass(frozen=True)
class PatientRef:
    patient_id: str
    issuer: str = ""
    name: str = ""

    @property
    def object_id(self) -> str:
        """The CX form, ID^^^issuer (RFC 3881 Patient Number)."""
        return f"{self.patient_id}^^^{self.issuer}" if self.issuer else self.patient_id


@dataclass(frozen=True)
class StudyRef:
    uid: str
    accessions: tuple[str, ...] = ()
    mpps: tuple[str, ...] = ()
    sop_classes: tuple[tuple[str, int], ...] = ()   # (SOP Class UID, number of instances)


def patient_object(patient: PatientRef, life_cycle: str = "") -> ParticipantObject:
    return ParticipantObject(patient.object_id, codes.PATIENT_NUMBER, codes.PERSON, codes.ROLE_PATIENT, life_cycle,
                             name=patient.name)


def study_object(study: StudyRef, life_cycle: str = "") -> ParticipantObject:
    return ParticipantObject(study.uid, codes.STUDY_INSTANCE_UID, codes.SYSTEM_OBJECT, codes.ROLE_REPORT, life_cycle,
                             description=StudyDescription(study.accessions, study.mpps, study.sop_classes))


def _subjects(patient: PatientRef | None, studies: tuple[StudyRef, ...], life_cycle: str = "") -> tuple[ParticipantObject, ...]:
    found = [study_object(study, life_cycle) for study in studies if study.uid]
    if patient is not None and patient.patient_id:
        found.append(patient_object(patient, life_cycle))
    return tuple(found)


def _as(participant: Participant, *roles: Code, requestor: bool | None = None) -> Participant:
    return Participant(participant.user_id, participant.requestor if requestor is None else requestor,
                       roles or participant.roles, participant.alternative_user_id, participant.user_name,
                       participant.network_access_point)


def application_activity(engine: Participant, when: str, started: bool, launcher: str = "") -> AuditEvent:
    """PS3.15 A.5.3: the engine started or stopped; the launcher is the OS user that ran it."""
    participants = [_as(engine, codes.APPLICATION, requestor=False)]
    if launcher:
        participants.append(Participant(launcher, True, (codes.APPLICATION_LAUNCHER,)))
    return AuditEvent(codes.APPLICATION_ACTIVITY, "E", when, codes.SUCCESS, tuple(participants),
                      (codes.APPLICATION_START if started else codes.APPLICATION_STOP,))


def user_authentication(engine: Participant, when: str, user: str, client: str, login: bool, success: bool,
                        detail: str = "") -> AuditEvent:
    """PS3.15 A.5.3: a console login (success or failure) or logout; the user requests, the engine authenticates."""
    return AuditEvent(codes.USER_AUTHENTICATION, "E", when, codes.SUCCESS if success else codes.MINOR_FAILURE,
                      (Participant(user or "-", True, network_access_point=client), _as(engine, requestor=False)),
                      (codes.LOGIN if login else codes.LOGOUT,), detail)


def patient_record(engine: Participant, requestor: Participant, when: str, action: str, patient: PatientRef,
                   detail: str = "", outcome: str = codes.SUCCESS) -> AuditEvent:
    """PS3.15 A.5.3: a patient created (ADT A04/A01 ...), updated (A08 ...) or merged (A40: U on the survivor)."""
    life_cycle = "1" if action == "C" else "3"
    return AuditEvent(codes.PATIENT_RECORD, action, when, outcome, (requestor, _as(engine, requestor=False)),
                      outcome_description=detail, objects=(patient_object(patient, life_cycle),))


def order_record(engine: Participant, requestor: Participant, when: str, action: str, patient: PatientRef,
                 studies: tuple[StudyRef, ...], detail: str = "", outcome: str = codes.SUCCESS) -> AuditEvent:
    """PS3.15 A.5.3: an order created, updated or cancelled (D), from HL7, the API or the CLI."""
    return AuditEvent(codes.ORDER_RECORD, action, when, outcome, (requestor, _as(engine, requestor=False)),
                      outcome_description=detail, objects=_subjects(patient, studies))


def procedure_record(engine: Participant, requestor: Participant, when: str, action: str, patient: PatientRef,
                     studies: tuple[StudyRef, ...], detail: str = "", outcome: str = codes.SUCCESS) -> AuditEvent:
    """PS3.15 A.5.3: a performed procedure step (MPPS N-CREATE: C, N-SET: U) recorded against its study."""
    return AuditEvent(codes.PROCEDURE_RECORD, action, when, outcome, (requestor, _as(engine, requestor=False)),
                      outcome_description=detail, objects=_subjects(patient, studies))


def query(engine: Participant, requestor: Participant, when: str, sop_class: str, dataset: bytes,
          transfer_syntax: str, outcome: str = codes.SUCCESS, detail: str = "") -> AuditEvent:
    """PS3.15 A.5.3: a C-FIND (MWL or Q/R): the requestor is the source, the engine the destination; the
    query is the identifier as received, its transfer syntax a detail."""
    query_object = ParticipantObject(sop_class, codes.SOP_CLASS_UID, codes.SYSTEM_OBJECT, codes.ROLE_REPORT,
                                     query=dataset, details=(("TransferSyntax", transfer_syntax.encode("ascii")),))
    return AuditEvent(codes.QUERY, "E", when, outcome,
                      (_as(requestor, codes.SOURCE, requestor=True), _as(engine, codes.DESTINATION, requestor=False)),
                      outcome_description=detail, objects=(query_object,))


def instances_transferred(source: Participant, destination: Participant, when: str, action: str,
                          patient: PatientRef | None, studies: tuple[StudyRef, ...], outcome: str = codes.SUCCESS,
                          detail: str = "", others: tuple[Participant, ...] = ()) -> AuditEvent:
    """PS3.15 A.5.3: instances stored here (C, the sender is the source) or sent from here by C-MOVE / C-GET
    (R, this engine is the source; the mover is another participant)."""
    return AuditEvent(codes.INSTANCES_TRANSFERRED, action, when, outcome,
                      (_as(source, codes.SOURCE), _as(destination, codes.DESTINATION), *others),
                      outcome_description=detail, objects=_subjects(patient, studies))


def begin_transferring(source: Participant, destination: Participant, when: str, patient: PatientRef | None,
                       studies: tuple[StudyRef, ...], others: tuple[Participant, ...] = ()) -> AuditEvent:
    """PS3.15 A.5.3: a C-MOVE / C-GET begins sending instances."""
    return AuditEvent(codes.BEGIN_TRANSFERRING, "E", when, codes.SUCCESS,
                      (_as(source, codes.SOURCE), _as(destination, codes.DESTINATION), *others),
                      objects=_subjects(patient, studies))


def security_alert(engine: Participant, when: str, type_code: Code, detail: str, outcome: str = codes.MINOR_FAILURE,
                   performer: Participant | None = None, subject: ParticipantObject | None = None) -> AuditEvent:
    """PS3.15 A.5.3: the engine reports; the performer is the peer or user that caused it; the
    subject (a node, a user, a rules folder) carries the alert description."""
    participants = [_as(engine, requestor=performer is None)]
    if performer is not None:
        participants.append(performer)
    objects = ()
    if subject is not None:
        objects = (ParticipantObject(subject.object_id, subject.id_type, subject.type_code, subject.role,
                                     name=subject.name, details=(("Alert Description", detail.encode("utf-8")),)),)
    return AuditEvent(codes.SECURITY_ALERT, "E", when, outcome, tuple(participants), (type_code,), detail, objects)


def export(engine: Participant, requestor: Participant, destination: Participant, when: str,
           patient: PatientRef | None, studies: tuple[StudyRef, ...], detail: str = "") -> AuditEvent:
    """PS3.15 A.5.3: an operator sends data out again (an outbox message or DICOM forward resent)."""
    return AuditEvent(codes.EXPORT, "R", when, codes.SUCCESS,
                      (requestor, _as(engine, codes.SOURCE, requestor=False), _as(destination, codes.DESTINATION)),
                      outcome_description=detail, objects=_subjects(patient, studies, "10"))


def user_object(name: str) -> ParticipantObject:
    return ParticipantObject(name, codes.USER_IDENTIFIER, codes.PERSON, codes.ROLE_SECURITY_USER, name=name)


def node_object(node: str) -> ParticipantObject:
    return ParticipantObject(node, codes.NODE_ID, codes.SYSTEM_OBJECT, codes.ROLE_SECURITY_RESOURCE)


def resource_object(uri: str) -> ParticipantObject:
    return ParticipantObject(uri, codes.URI, codes.SYSTEM_OBJECT, codes.ROLE_SECURITY_RESOURCE)
