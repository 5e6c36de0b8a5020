"""Audit messages for the rows the engine writes anyway: domain events (patients, orders, MPPS) and
operator actions (logins, user changes, resends).  The recorder reads them after each batch, in the
batch's own transaction; this module only maps facts to ``AuditEvent``s (no SQL).
"""
from __future__ import annotations

from typing import Callable

from ..store.audit_queue import ActionFacts, EventFacts
from . import codes, events
from .events import PatientRef, StudyRef
from .message import AuditEvent, Participant

PATIENT_ACTIONS = {"patient.registered": "C", "patient.updated": "U", "patient.merged": "U"}
ORDER_ACTIONS = {"order.scheduled": "C", "order.changed": "U", "order.changed_by_operator": "U",
                 "order.discontinued": "U", "order.completed": "U", "order.cancelled": "D",
                 "order.cancelled_by_operator": "D", "order.aged_out": "U"}
PROCEDURE_ACTIONS = {"mpps.in_progress": "C", "mpps.unscheduled": "C", "mpps.completed": "U",
                     "mpps.discontinued": "U"}
USER_CHANGES = {"user.add": codes.SECURITY_ROLES_CHANGED, "user.remove": codes.SECURITY_ROLES_CHANGED,
                "user.token": codes.USER_SECURITY_ATTRIBUTES_CHANGED}
COMMAND_LINE = "swf (command line)"


def host_of(peer: str) -> str:
    """'10.1.2.3:51514' -> '10.1.2.3' (an address without a port, or a host name, stays as it is)."""
    host, colon, port = peer.rpartition(":")
    return host.strip("[]") if colon and port.isdigit() else peer


def _studies(facts: EventFacts | ActionFacts, accession: str = "") -> tuple[StudyRef, ...]:
    by_uid: dict[str, list[str]] = {}
    for uid, number in facts.studies:
        if uid and (not accession or number == accession):
            by_uid.setdefault(uid, []).append(number)
    return tuple(StudyRef(uid, tuple(n for n in numbers if n)) for uid, numbers in by_uid.items())


def event_audit(engine: Participant, facts: EventFacts, operator: Callable[[str], ActionFacts | None]) -> AuditEvent | None:
    """The message for one domain event (None for the kinds audited elsewhere or not at all).

    The requestor is the HL7 sender (MSH-3^MSH-4 at its address) for an event a message caused; for an
    operator's change, the user of the operator action written with it (``operator(accession)``), or
    the command line."""
    if facts.control_id or facts.sending_application:
        requestor = Participant(f"{facts.sending_application}^{facts.sending_facility}", True,
                                alternative_user_id=facts.control_id, network_access_point=host_of(facts.peer))
    else:
        action = operator(facts.subject)
        requestor = (Participant(action.actor, True, network_access_point=host_of(action.client))
                     if action is not None and action.client != "cli" else
                     Participant(action.actor if action is not None else COMMAND_LINE, True))
    kind = facts.kind
    if kind in PATIENT_ACTIONS:
        patient_id, _, issuer = facts.subject.partition("^")
        return events.patient_record(engine, requestor, facts.at, PATIENT_ACTIONS[kind], PatientRef(patient_id, issuer),
                                     f"{kind}: {facts.detail}"[:1000])
    patient = PatientRef(facts.patient_id, facts.issuer)
    if kind in ORDER_ACTIONS:
        return events.order_record(engine, requestor, facts.at, ORDER_ACTIONS[kind], patient,
                                   _studies(facts, facts.subject) or _studies(facts), f"{kind}: {facts.detail}"[:1000])
    if kind in PROCEDURE_ACTIONS:
        modality = Participant(facts.mpps_calling_ae or "-", True)
        studies = tuple(StudyRef(study.uid, study.accessions, (facts.mpps_uid,) if facts.mpps_uid else ())
                        for study in (_studies(facts, facts.subject) or _studies(facts)))
        if not studies and kind == "mpps.unscheduled":   # no order: the subject is the study
            studies = (StudyRef(facts.subject),)
        return events.procedure_record(engine, modality, facts.at, PROCEDURE_ACTIONS[kind], patient, studies,
                                       f"{kind}: {facts.detail}"[:1000])
    return None


def action_audit(engine: Participant, facts: ActionFacts, export: Callable[[ActionFacts], AuditEvent | None]
                 ) -> AuditEvent | None:
    """The message for one operator action: a login or logout, a user change (Security Alert), a
    resend (Export, built by ``export`` which reads what was resent).  Order changes are audited from
    their domain events."""
    action = facts.action
    client = "" if facts.client == "cli" else host_of(facts.client)
    if action in ("session.login", "session.logout"):
        return events.user_authentication(engine, facts.at, facts.actor, client, action == "session.login", True)
    if action in USER_CHANGES:
        performer = Participant(facts.actor, True, network_access_point=client)
        return events.security_alert(engine, facts.at, USER_CHANGES[action], f"{action} {facts.subject} by {facts.actor}",
                                     codes.SUCCESS, performer, events.user_object(facts.subject))
    if action.endswith(".resend"):
        return export(facts)
    return None
