"""Outbound HL7 messages built from the engine's data (SWF.md 4.3 status, 4.4 RAD-4/12/13).

Pure functions of plain views: no store, no sockets.  Strings are assembled field by field with HL7
escaping; the tests check the results with hl7apy (``engine/hl7/validate.py``) and against SWF.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..hl7.ack import new_control_id
from ..hl7.message import Delimiters, escape

D = Delimiters()
CHARSET_CODECS = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii", "": "latin-1"}
STATUS_BY_EVENT = {"mpps.in_progress": ("SC", "IP", "I"), "mpps.completed": ("SC", "CM", "R"),
                   "mpps.discontinued": ("SC", "DC", "X"), "commitment.succeeded": ("SC", "CM", "R"),
                   "order.cancelled_by_operator": ("OC", "CA", "X"), "order.changed_by_operator": ("XO", "SC", ""),
                   "order.aged_out": ("SC", "DC", "X")}
PROCEDURE_BY_EVENT = {"order.scheduled": ("NW", "SC"), "order.changed": ("XO", "SC"), "order.cancelled": ("CA", "CA"),
                      "order.discontinued": ("DC", "CA"), "order.cancelled_by_operator": ("CA", "CA"),
                      "order.changed_by_operator": ("XO", "SC"), "order.aged_out": ("DC", "CA")}


@dataclass
class StepView:
    sps_id: str
    modality: str
    status: str
    station_ae_title: str
    start_date: str
    start_time: str
    protocol_codes: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ProcedureView:
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    attributes: dict[str, Any]
    steps: list[StepView] = field(default_factory=list)


@dataclass
class OrderView:
    """Everything a message about one order needs, read from the store by ``dispatch.py``."""

    patient_id: str
    issuer: str
    patient: dict[str, Any]
    placer_order_number: str
    filler_order_number: str
    order_status: str
    procedures: list[ProcedureView]
    performed_start: str = ""      # MPPS start, HL7 TS
    performed_end: str = ""
    discontinuation_reason: dict[str, str] = field(default_factory=dict)
    performed_comments: str = ""


@dataclass(frozen=True)
class Envelope:
    """MSH content of one outbound message."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    version: str = "2.3.1"
    charset: str = "8859/1"
    status_message: str = "ORM"     # v2.5.1: OMG (default) or OMI


def _e(value: Any) -> str:
    return escape(str(value), D) if value not in (None, "") else ""


def _fields(name: str, values: dict[int, str]) -> str:
    """A segment from {field number: already-escaped text}."""
    last = max(values) if values else 0
    return "|".join([name] + [values.get(index, "") for index in range(1, last + 1)])


def pn_to_xpn(pn: str) -> str:
    """DICOM family^given^middle^prefix^suffix -> HL7 XPN family^given^middle^suffix^prefix."""
    c = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    return "^".join(_e(part) for part in (c[0], c[1], c[2], c[4], c[3])).rstrip("^")


def pn_to_xcn(pn: str) -> str:
    c = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    return ("^" + "^".join(_e(part) for part in (c[0], c[1], c[2], c[4], c[3]))).rstrip("^") if pn else ""


def _code_parts(item: dict[str, str]) -> list[str]:
    return [item.get("CodeValue") or item.get("LongCodeValue", ""), item.get("CodeMeaning", ""),
            item.get("CodingSchemeDesignator", "")]


def _code(item: dict[str, str] | None) -> str:
    return "^".join(_e(part) for part in _code_parts(item)).rstrip("^") if item else ""


def _now() -> str:
    return time.strftime("%Y%m%d%H%M%S")


def _msh(envelope: Envelope, message_type: str, control_id: str) -> str:
    values = {1: "^~\\&", 2: _e(envelope.sending_application), 3: _e(envelope.sending_facility),
              4: _e(envelope.receiving_application), 5: _e(envelope.receiving_facility), 6: _now(),
              8: message_type, 9: control_id, 10: "P", 11: envelope.version}
    if envelope.charset and envelope.charset != "ASCII":
        values[17] = envelope.charset
    # MSH-1 is the field separator itself: MSH|^~\&|... so field n sits at position n-1 after the name.
    return "MSH|" + "|".join(values.get(index, "") for index in range(1, max(values) + 1))


def _pid(view: OrderView | None, patient_id: str, issuer: str, patient: dict[str, Any]) -> str:
    return _fields("PID", {1: "1", 3: f"{_e(patient_id)}^^^{_e(issuer)}^MR", 5: pn_to_xpn(patient.get("PatientName", "")),
                           7: _e(patient.get("PatientBirthDate", "")), 8: _e(patient.get("PatientSex", ""))})


def _pv1(patient: dict[str, Any]) -> str:
    return _fields("PV1", {1: "1", 2: _e(patient.get("RouteOfAdmissions", "")),
                           3: _e(patient.get("CurrentPatientLocation", "")).replace("\\S\\", "^"),
                           8: pn_to_xcn(patient.get("ReferringPhysicianName", "")),
                           19: _e(patient.get("AdmissionID", ""))})


def _universal_service(procedure: ProcedureView, with_protocol: StepView | None = None) -> str:
    """OBR-4: procedure code^text^scheme, in v2.3.1 RAD-4 followed by the step's protocol code (SWF.md 4.4)."""
    codes = procedure.attributes.get("RequestedProcedureCodeSequence") or []
    parts = _code_parts(codes[0]) if codes else ["", procedure.attributes.get("RequestedProcedureDescription", ""), ""]
    if with_protocol is not None and with_protocol.protocol_codes:
        parts += _code_parts(with_protocol.protocol_codes[0])
    return "^".join(_e(part) for part in parts).rstrip("^")


def _ts(date: str, time_: str) -> str:
    return f"{date}{time_.split('.')[0]}" if date else ""


def status_message(view: OrderView, event_kind: str, envelope: Envelope,
                   codes: tuple[str, str, str] | None = None) -> tuple[str, bytes]:
    """RAD-3 style status: ORM^O01 (v2.3.1) or OMG^O19 / OMI^O23 (v2.5.1) with ORC-1/ORC-5 per SWF.md 4.3;
    ``codes`` (ORC-1, ORC-5, OBR-25) instead of the event's (the availability message's ORC-5 A or CM)."""
    control_id = new_control_id()
    order_control, order_status, result_status = codes or STATUS_BY_EVENT[event_kind]
    now = _now()
    v25 = envelope.version.startswith("2.5")
    message_type = {"ORM": "ORM^O01", "OMG": "OMG^O19^OMG_O19", "OMI": "OMI^O23^OMI_O23"}[
        envelope.status_message if v25 else "ORM"]
    segments = [_msh(envelope, message_type, control_id), _pid(view, view.patient_id, view.issuer, view.patient),
                _pv1(view.patient)]
    for procedure in view.procedures:
        step = procedure.steps[0] if procedure.steps else None
        orc = {1: order_control, 2: _e(view.placer_order_number), 3: _e(view.filler_order_number), 5: order_status,
               9: now}
        if order_status == "DC" and view.discontinuation_reason:
            orc[16] = _code(view.discontinuation_reason)
        segments.append(_fields("ORC", orc))
        if v25:
            segments.append(_fields("TQ1", {1: "1", 7: _e(view.performed_start)}))
        obr = {1: "1", 2: _e(view.placer_order_number), 3: _e(view.filler_order_number),
               4: _universal_service(procedure), 7: _e(view.performed_start), 8: _e(view.performed_end),
               22: now, 24: _e(step.modality if step else ""), 25: result_status}
        if not v25:
            obr.update({18: _e(procedure.accession_number), 19: _e(procedure.requested_procedure_id),
                        20: _e(step.sps_id if step else "")})
        segments.append(_fields("OBR", obr))
        if order_status == "DC" and view.performed_comments:
            segments.append(_fields("NTE", {1: "1", 3: _e(view.performed_comments)}))
        if v25 and envelope.status_message == "OMI":
            segments.append(_ipc(procedure, step))
        if not v25:
            segments.append(_zds(procedure, envelope))
    return control_id, _encode(segments, envelope)


@dataclass(frozen=True)
class StudyCounts:
    """A stable study as the availability message reports it."""

    study_instance_uid: str
    accession_number: str
    series: int
    instances: int


def _obx(number: int, kind: str, code: str, text: str, value: Any) -> str:
    return _fields("OBX", {1: str(number), 2: kind, 3: f"{code}^{_e(text)}^99SWF", 4: "1", 5: _e(value), 11: "F"})


def availability_message(view: OrderView, study: StudyCounts, envelope: Envelope, message: str = "ORU",
                         status: str = "CM") -> tuple[str, bytes]:
    """Image availability to the RIS (issue 16): ORU^R01 whose OBX carry the study's UID, accession and
    counts, or the order status message of v2.3.1 ORM^O01 / v2.5.1 OMG^O19 with ORC-5 = ``status``."""
    if message == "ORM":
        return status_message(view, "", replace(envelope, version="2.3.1"), ("SC", status, "R"))
    if message == "OMG":
        return status_message(view, "", replace(envelope, version="2.5.1", status_message="OMG"), ("SC", status, "R"))
    control_id = new_control_id()
    v25 = envelope.version.startswith("2.5")
    segments = [_msh(envelope, "ORU^R01^ORU_R01" if v25 else "ORU^R01", control_id),
                _pid(view, view.patient_id, view.issuer, view.patient)]
    procedure = next((p for p in view.procedures if p.study_instance_uid == study.study_instance_uid),
                     view.procedures[0] if view.procedures else None)
    segments.append(_fields("ORC", {1: "RE", 2: _e(view.placer_order_number), 3: _e(view.filler_order_number),
                                    5: "CM", 9: _now()}))
    obr = {1: "1", 2: _e(view.placer_order_number), 3: _e(view.filler_order_number),
           4: _universal_service(procedure) if procedure else "", 7: _now(), 25: "F"}
    if not v25:
        obr[18] = _e(study.accession_number)
    segments.append(_fields("OBR", obr))
    for number, (kind, code, text, value) in enumerate((
            ("ST", "StudyInstanceUID", "Study Instance UID", study.study_instance_uid),
            ("ST", "AccessionNumber", "Accession Number", study.accession_number),
            ("NM", "NumberOfStudyRelatedSeries", "Number of Study Related Series", study.series),
            ("NM", "NumberOfStudyRelatedInstances", "Number of Study Related Instances", study.instances)), 1):
        segments.append(_obx(number, kind, code, text, value))
    return control_id, _encode(segments, envelope)


def _zds(procedure: ProcedureView, envelope: Envelope) -> str:
    return _fields("ZDS", {1: f"{_e(procedure.study_instance_uid)}^{_e(envelope.sending_application)}^Application^DICOM"})


def _ipc(procedure: ProcedureView, step: StepView | None) -> str:
    protocol = _code(step.protocol_codes[0]) if step and step.protocol_codes else ""
    return _fields("IPC", {1: _e(procedure.accession_number), 2: _e(procedure.requested_procedure_id),
                           3: _e(procedure.study_instance_uid), 4: _e(step.sps_id if step else ""),
                           5: _e(step.modality if step else ""), 6: protocol,
                           9: _e(step.station_ae_title if step else "")})


def procedure_message(view: OrderView, event_kind: str, envelope: Envelope) -> tuple[str, bytes]:
    """RAD-4 (NW/SC) and RAD-13 (XO/SC, CA/CA, DC/CA) to a downstream image manager (SWF.md 4.4)."""
    control_id = new_control_id()
    order_control, order_status = PROCEDURE_BY_EVENT[event_kind]
    v25 = envelope.version.startswith("2.5")
    message_type = "OMI^O23^OMI_O23" if v25 else "ORM^O01"
    segments = [_msh(envelope, message_type, control_id), _pid(view, view.patient_id, view.issuer, view.patient),
                _pv1(view.patient)]
    for procedure in view.procedures:
        priority = procedure.attributes.get("RequestedProcedurePriority", "")
        priority_code = {"STAT": "S", "HIGH": "A", "ROUTINE": "R", "MEDIUM": "T"}.get(priority, "")
        for step in procedure.steps:
            start = _ts(step.start_date, step.start_time)
            timing = f"^^^{start}^^{priority_code}".rstrip("^") if start or priority_code else ""
            segments.append(_fields("ORC", {1: order_control, 2: _e(view.placer_order_number),
                                            3: _e(view.filler_order_number), 5: order_status,
                                            7: "" if v25 else timing, 9: _now()}))
            if v25:
                segments.append(_fields("TQ1", {1: "1", 7: start, 9: priority_code}))
            obr = {1: "1", 2: _e(view.placer_order_number), 3: _e(view.filler_order_number),
                   4: _universal_service(procedure, None if v25 else step), 24: _e(step.modality)}
            if not v25:
                obr.update({18: _e(procedure.accession_number), 19: _e(procedure.requested_procedure_id),
                            20: _e(step.sps_id), 27: timing})
            segments.append(_fields("OBR", obr))
            if v25:
                segments.append(_ipc(procedure, step))
        if not v25:
            segments.append(_zds(procedure, envelope))
    return control_id, _encode(segments, envelope)


def patient_message(patient_id: str, issuer: str, patient: dict[str, Any], event_kind: str, prior: str,
                    envelope: Envelope) -> tuple[str, bytes]:
    """RAD-12 to a downstream image manager: ADT^A08 (update) or ADT^A40 (merge, MRG-1 = prior ID^issuer)."""
    control_id = new_control_id()
    trigger = "A40" if event_kind == "patient.merged" else "A08"
    v25 = envelope.version.startswith("2.5")
    structure = {"A40": "ADT_A39", "A08": "ADT_A01"}[trigger]
    segments = [_msh(envelope, f"ADT^{trigger}^{structure}" if v25 else f"ADT^{trigger}", control_id),
                _fields("EVN", {1: trigger, 2: _now()}), _pid(None, patient_id, issuer, patient)]
    if trigger == "A40":
        prior_id, _, prior_issuer = prior.partition("^")
        segments.append(_fields("MRG", {1: f"{_e(prior_id)}^^^{_e(prior_issuer)}^MR"}))
    else:
        segments.append(_pv1(patient))
    return control_id, _encode(segments, envelope)


def _encode(segments: list[str], envelope: Envelope) -> bytes:
    return ("\r".join(segments) + "\r").encode(CHARSET_CODECS.get(envelope.charset, "utf-8"), errors="replace")
