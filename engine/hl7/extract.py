"""HL7 message -> plain domain requests (``engine.domain.model``), through a mapping profile.

This is the HL7 adapter's half of every transaction: it reads fields, applies the profile and the
rules' scheduling decisions, and reports missing or malformed fields as ``Rejection`` with the HL7
location.  It writes nothing; the workflow does that.
"""
from __future__ import annotations

from typing import Any, Callable

from ..domain.model import (OrderRequest, PatientData, PatientIdentity, Problem, ProcedureRequest, Rejection,
                            StepRequest)
from ..domain.decision import Decision
from . import convert
from .mapping import MappingError, Profile, StepContext
from .message import Message

SCHEDULE_TO_KEYWORD = {
    "station_ae": "ScheduledStationAETitle",
    "station_name": "ScheduledStationName",
    "location": "ScheduledProcedureStepLocation",
    "modality": "Modality",
}


def _identity(message: Message, raw_repetition: str) -> PatientIdentity:
    components = message.components(raw_repetition)
    padded = components + [""] * 6
    authority = message.subcomponents(raw_repetition.split(message.delimiters.component)[3]) if len(
        components) > 3 else [""]
    authority += ["", "", ""]
    return PatientIdentity(patient_id=padded[0].strip(), issuer=authority[0].strip(),
                           universal_id=authority[1].strip(), universal_id_type=authority[2].strip(),
                           identifier_type=padded[4].strip())


def patient_identities(message: Message, path: str, primary_issuer: str = "") -> list[PatientIdentity]:
    """All identifiers of a CX list field (PID-3, MRG-1), the primary issuer's first."""
    identities = [_identity(message, rep) for rep in message.repetitions(path)]
    identities = [identity for identity in identities if identity.patient_id]
    if primary_issuer:
        identities.sort(key=lambda identity: identity.issuer != primary_issuer)
    return identities


def patient_data(message: Message, profile: Profile, primary_issuer: str = "") -> PatientData:
    if not message.has_segment("PID"):
        raise Rejection(Problem.REQUIRED_MISSING, "PID segment missing", "PID")
    identities = patient_identities(message, "PID-3", primary_issuer)
    if not identities:
        raise Rejection(Problem.REQUIRED_MISSING, "PID-3 Patient Identifier List is empty", "PID-3")
    if not message.get("PID-5.1") and not message.get("PID-5"):
        raise Rejection(Problem.REQUIRED_MISSING, "PID-5 Patient Name is empty", "PID-5")
    try:
        attributes = profile.patient_attributes(message)
    except MappingError as exc:
        raise _bad_value(exc) from None
    primary = identities[0]
    if primary.universal_id:
        attributes["IssuerOfPatientIDQualifiersSequence"] = [
            {"UniversalEntityID": primary.universal_id, "UniversalEntityIDType": primary.universal_id_type}]
    if len(identities) > 1:
        attributes["OtherPatientIDsSequence"] = [
            {"PatientID": other.patient_id, "IssuerOfPatientID": other.issuer, "TypeOfPatientID": "TEXT"}
            for other in identities[1:]]
    return PatientData(identity=primary, other_ids=identities[1:], attributes=attributes,
                       visit_number=message.get("PV1-19.1"), patient_class=message.get("PV1-2"),
                       location="^".join(message.components(message.repetitions("PV1-3")[0])).rstrip("^")
                       if message.repetitions("PV1-3") else "")


def _split_start(value: str) -> tuple[str, str]:
    date, _, time = value.partition("T")
    return date, time


def order_requests(message: Message, profile: Profile, decision: Decision,
                   schedule_for: Callable[[StepContext], dict[str, str]] | None = None) -> list[OrderRequest]:
    """The orders of a message; ``schedule_for`` routes each step by its own fields (else the message's)."""
    groups = profile.groups(message)
    if not groups:
        raise Rejection(Problem.SEGMENT_SEQUENCE, f"{profile.order_group_segment} segment missing",
                        profile.order_group_segment)
    sent_at = message.get("MSH-7.1")  # TS = DTM^degree of precision
    try:
        fallback = convert.parse_ts("" if sent_at == '""' else sent_at)
    except convert.ConversionError as exc:
        raise Rejection(Problem.BAD_VALUE, f"MSH-7 {exc}", "MSH-7") from None
    # ORC/OBR pairs with the same order numbers are one order with several steps (RAD-4 v2.3.1 layout).
    requests: dict[tuple[str, str, str, str], tuple[OrderRequest, dict[tuple[str, ...], ProcedureRequest]]] = {}
    for group in groups:
        top = StepContext(message, group, None, groups[0].start)
        control = top.value(profile.order_control).upper()
        if not control:
            sequence = top.sequence(profile.order_group_segment)
            raise Rejection(Problem.REQUIRED_MISSING, f"{_where(profile.order_control, sequence)} Order Control is empty",
                            profile.order_control, sequence=sequence)
        placer = top.value("ORC-2.1") or top.value("OBR-2.1")
        filler = top.value("ORC-3.1") or top.value("OBR-3.1")
        if not placer and not filler:
            sequence = top.sequence("ORC")
            raise Rejection(Problem.REQUIRED_MISSING, f"{_where('ORC-2', sequence)} placer and ORC-3 filler order"
                            " numbers are both empty", "ORC-2", sequence=sequence)
        status = top.value(profile.order_status).upper()
        order_key = (control, status, placer, filler)
        if order_key not in requests:
            requests[order_key] = (OrderRequest(control=control, status=status, placer_order_number=placer,
                                                filler_order_number=filler, default_start=fallback), {})
        request, procedures = requests[order_key]
        if not any(i in group for i in message.segment_indexes("OBR")):
            if control in ("NW", "XO"):
                raise Rejection(Problem.SEGMENT_SEQUENCE, f"OBR segment missing (required by ORC-1={control})", "OBR")
            continue
        for context in profile.step_contexts(message, group):
            if control in ("NW", "XO") and not context.value("OBR-4.1") and not context.value("OBR-4.2"):
                sequence = context.sequence("OBR")
                raise Rejection(Problem.REQUIRED_MISSING, f"{_where('OBR-4', sequence)} Universal Service ID is empty",
                                "OBR-4", sequence=sequence)
            try:
                request_attributes = profile.request_attributes(context)
                step_attributes = profile.step_attributes(context)
            except MappingError as exc:
                raise _bad_value(exc) from None
            schedule = schedule_for(context) if schedule_for is not None else decision.schedule
            for key, keyword in SCHEDULE_TO_KEYWORD.items():
                if schedule.get(key):
                    step_attributes[keyword] = schedule[key]
            accession = request_attributes.pop("AccessionNumber", "")
            rp_id = request_attributes.pop("RequestedProcedureID", "")
            study_uid = request_attributes.pop("StudyInstanceUID", "")
            codes = request_attributes.get("RequestedProcedureCodeSequence") or [{}]
            key = (accession, rp_id, study_uid) if (accession or rp_id or study_uid) else (
                "", "", "", str(codes[0].get("CodeValue", context.value("OBR-4.1"))))
            procedure = procedures.get(key)
            if procedure is None:
                procedure = procedures[key] = ProcedureRequest(accession, rp_id, study_uid, request_attributes)
            start = step_attributes.pop("ScheduledProcedureStepStartDateTime", "")
            date, time = _split_start(start) if start else ("", "")
            sps_id = step_attributes.pop("ScheduledProcedureStepID", "")
            existing = next((s for s in procedure.steps if sps_id and s.sps_id == sps_id), None)
            if existing is not None:
                _merge_protocol_codes(existing.attributes, step_attributes)
                continue
            procedure.steps.append(StepRequest(sps_id, date, time, step_attributes))
    for request, procedures in requests.values():
        request.procedures = list(procedures.values())
    return [request for request, _ in requests.values()]


def _where(path: str, sequence: int) -> str:
    """``OBR-4``, or ``OBR(2)-4`` in the second OBR: how reasons name the field (``HL7Error.location``)."""
    segment, _, rest = path.partition("-")
    return f"{segment}({sequence})-{rest}" if sequence > 1 else path


def _bad_value(error: MappingError) -> Rejection:
    """A value the profile cannot convert: AE, ERR 102 at the field and the occurrence of its segment."""
    return Rejection(Problem.BAD_VALUE, f"{_where(error.path, error.sequence)} {error.reason}", error.path,
                     sequence=error.sequence)


def _merge_protocol_codes(target: dict[str, Any], extra: dict[str, Any]) -> None:
    """Repeated OBR/IPC with the same SPS ID add protocol code items to that step (SWF.md 3.5)."""
    items = target.setdefault("ScheduledProtocolCodeSequence", [])
    for item in extra.get("ScheduledProtocolCodeSequence", []):
        if item not in items:
            items.append(item)
