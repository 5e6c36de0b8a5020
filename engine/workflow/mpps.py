"""RAD-6 / RAD-7: Modality Performed Procedure Step N-CREATE and N-SET (SWF.md 6, 4.1, 4.2).

Pure workflow on one store transaction; its SQL is in ``engine/store/performed_steps.py``.  The DICOM
adapter (``engine/dicom/services/mpps.py``) hands over plain values: the attributes by DICOM keyword
(text as ``str``, sequences as lists of dicts; an attribute sent with zero length is present with ``""``
or ``[]``) and the encoded dataset to keep.
For N-SET it also hands over ``apply``, which merges the Modification List into the stored dataset;
it runs here, inside the transaction, so two N-SETs on one instance never interleave.

A refusal raises ``MppsRefused`` with a ``Refusal`` kind (the adapter maps it to a DIMSE status); the
store rolls back everything the call wrote.  Step status changes go through ``domain.status``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from ..domain.status import StepEvent, StepStatus, TransitionRefused, order_status, transition
from ..store import orders as order_store
from ..store import performed_steps as performed
from ..store import queues
from ..store.database import Transaction
from ..store.performed_steps import LinkableStep
from ..store.timestamps import now_iso
from . import storage

log = logging.getLogger(__name__)

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
PPS_STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
FINAL_PPS_STATUSES = (COMPLETED, DISCONTINUED)
REOFFER_REASON = "110514"   # DCM "Incorrect worklist entry selected": the step goes back to the worklist
NOT_UPDATABLE_COMMENT = "Performed Procedure Step Object may no longer be updated"

SSA = "ScheduledStepAttributesSequence"
REQUIRED_AT_CREATE = ("PerformedProcedureStepID", "PerformedStationAETitle", "PerformedProcedureStepStartDate",
                      "PerformedProcedureStepStartTime", "PerformedProcedureStepStatus", "Modality", SSA)
TYPE2_AT_CREATE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                   "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "PerformedSeriesSequence")
TYPE2_IN_SSA_ITEM = ("AccessionNumber", "RequestedProcedureID", "ScheduledProcedureStepID")
# Attributes an N-SET must not carry (SWF.md 6.2; DICOM PS3.4 Table F.7.2-1 "Not allowed").
NOT_SETTABLE = ("Modality", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                "StudyID", "AdmissionID", "PerformedStationAETitle", "PerformedStationName", "PerformedLocation",
                "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedProcedureStepID",
                SSA)
REQUIRED_WHEN_FINAL = ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "PerformedSeriesSequence")
REQUIRED_IN_SERIES_ITEM = ("SeriesInstanceUID", "ProtocolName")


class Refusal(str, Enum):
    """Why an N-CREATE / N-SET is refused; the adapter turns each into its DIMSE status (SWF.md 6)."""

    DUPLICATE = "duplicate"                    # 0x0111
    NO_SUCH_INSTANCE = "no such instance"      # 0x0112
    NOT_UPDATABLE = "final"                    # 0x0110 + Error ID 0xA710
    NOT_ALLOWED = "not allowed"                # 0x0105
    MISSING_ATTRIBUTE = "missing attribute"    # 0x0120
    MISSING_VALUE = "missing value"            # 0x0121
    INVALID_VALUE = "invalid value"            # 0x0106


class MppsRefused(Exception):
    """The request is refused; ``keywords`` name the attributes at fault (Attribute Identifier List)."""

    def __init__(self, refusal: Refusal, comment: str, keywords: tuple[str, ...] | list[str] = ()):
        super().__init__(comment)
        self.refusal = refusal
        self.comment = comment
        self.keywords = tuple(dict.fromkeys(keywords))


@dataclass
class CreateRequest:
    sop_instance_uid: str
    calling_ae_title: str
    attributes: dict[str, Any]
    dataset: bytes


@dataclass
class UpdateRequest:
    sop_instance_uid: str
    calling_ae_title: str
    modifications: dict[str, Any]
    # stored encoded dataset -> (merged encoded dataset, its attributes as plain values)
    apply: Callable[[bytes], tuple[bytes, dict[str, Any]]]


@dataclass
class MppsResult:
    sop_instance_uid: str
    status: str
    unscheduled: bool
    linked: list[str] = field(default_factory=list)          # "ACCESSION/SPS-ID -> STATUS" per linked step
    order_statuses: dict[str, str] = field(default_factory=dict)  # accession -> order status after the call


# -- checks --------------------------------------------------------------------------------------
def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _text(attributes: dict[str, Any], keyword: str) -> str:
    value = attributes.get(keyword, "")
    return value.strip() if isinstance(value, str) else ""


def check_create(attributes: dict[str, Any]) -> None:
    """SWF.md 6.1 after the duplicate check: Type 1 absent (0x0120), empty (0x0121), status (0x0106)."""
    missing = [k for k in REQUIRED_AT_CREATE if k not in attributes]
    empty = [k for k in REQUIRED_AT_CREATE if k in attributes and _empty(attributes[k])]
    items = attributes.get(SSA) if isinstance(attributes.get(SSA), list) else []
    for item in items:
        if "StudyInstanceUID" not in item:
            missing.append("StudyInstanceUID")
        elif _empty(item["StudyInstanceUID"]):
            empty.append("StudyInstanceUID")
    if missing:
        raise MppsRefused(Refusal.MISSING_ATTRIBUTE, "missing: " + ", ".join(dict.fromkeys(missing)), missing)
    if empty:
        raise MppsRefused(Refusal.MISSING_VALUE, "no value: " + ", ".join(dict.fromkeys(empty)), empty)
    status = _text(attributes, "PerformedProcedureStepStatus")
    if status != IN_PROGRESS:
        raise MppsRefused(Refusal.INVALID_VALUE, f"N-CREATE with Performed Procedure Step Status {status!r};"
                          " must be IN PROGRESS", ["PerformedProcedureStepStatus"])


def _type2_absent(attributes: dict[str, Any]) -> list[str]:
    absent = [k for k in TYPE2_AT_CREATE if k not in attributes]
    for item in attributes.get(SSA) or []:
        absent.extend(f"{SSA}>{k}" for k in TYPE2_IN_SSA_ITEM if k not in item)
    return list(dict.fromkeys(absent))


def check_final(attributes: dict[str, Any], status: str) -> None:
    """SWF.md 6.2: a final state needs the end date/time and Performed Series Sequence items (0x0121)."""
    empty = [k for k in REQUIRED_WHEN_FINAL if _empty(attributes.get(k))]
    for item in attributes.get("PerformedSeriesSequence") or []:
        empty.extend(k for k in REQUIRED_IN_SERIES_ITEM if _empty(item.get(k)))
    if empty:
        raise MppsRefused(Refusal.MISSING_VALUE, f"{status} needs a value for: " + ", ".join(dict.fromkeys(empty)),
                          empty)


def reason_code(attributes: dict[str, Any]) -> str:
    """The first item's Code Value of the PPS Discontinuation Reason Code Sequence, or ''."""
    items = attributes.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
    return _text(items[0], "CodeValue") if items and isinstance(items[0], dict) else ""


def performed_references(attributes: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Series and SOP Instance UIDs the MPPS lists in its Performed Series Sequence."""
    series: list[str] = []
    images: list[str] = []
    for item in attributes.get("PerformedSeriesSequence") or []:
        if not isinstance(item, dict):
            continue
        series.append(_text(item, "SeriesInstanceUID"))
        for image in item.get("ReferencedImageSequence") or []:
            if isinstance(image, dict):
                images.append(_text(image, "ReferencedSOPInstanceUID"))
    return [uid for uid in series if uid], [uid for uid in images if uid]


# -- linking (SWF.md 4.2) ------------------------------------------------------------------------
def latest_order(rows: list[LinkableStep]) -> list[LinkableStep]:
    """An accession or RP ID can repeat across orders (a resent NW): keep the newest order's steps."""
    if not rows:
        return rows
    newest = max(row.order_ref for row in rows)
    return [row for row in rows if row.order_ref == newest]


def _prefer_sps(rows: list[LinkableStep], sps_id: str) -> list[LinkableStep]:
    chosen = [row for row in rows if sps_id and row.sps_id == sps_id]
    return chosen or rows


def resolve_item(txn: Transaction, item: dict[str, Any]) -> list[LinkableStep]:
    """The scheduled steps one Scheduled Step Attributes Sequence item names, by the first rule that
    finds any: SPS ID + RP ID + accession; Study Instance UID + RP ID; accession alone."""
    sps_id, rp_id = _text(item, "ScheduledProcedureStepID"), _text(item, "RequestedProcedureID")
    accession, study = _text(item, "AccessionNumber"), _text(item, "StudyInstanceUID")
    if sps_id and rp_id and accession:
        rows = performed.steps_by_sps_id(txn, sps_id, rp_id, accession)
        if rows:
            return latest_order(rows)
    if study and rp_id:
        rows = performed.steps_by_study(txn, study, rp_id)
        if rows:
            return _prefer_sps(rows, sps_id)
    if accession:
        rows = latest_order(performed.steps_by_accession(txn, accession))
        if rows:
            return _prefer_sps(rows, sps_id)
    return []


def _resolve(txn: Transaction, items: list[dict[str, Any]], uid: str) -> list[LinkableStep]:
    steps: dict[int, LinkableStep] = {}
    for number, item in enumerate(items, 1):
        found = resolve_item(txn, item)
        if not found and any(_text(item, k) for k in TYPE2_IN_SSA_ITEM):
            log.warning("MPPS %s: Scheduled Step Attributes item %d (accession %r, RP %r, SPS %r) matches no"
                        " scheduled step; kept unlinked", uid, number, _text(item, "AccessionNumber"),
                        _text(item, "RequestedProcedureID"), _text(item, "ScheduledProcedureStepID"))
        for row in found:
            steps.setdefault(row.step_ref, row)
    return list(steps.values())


# -- step and order status -------------------------------------------------------------------------
def _order_status(txn: Transaction, order_ref: int) -> str:
    return order_status([StepStatus(status) for status in order_store.step_statuses_of_order(txn, order_ref)])


def apply_to_steps(txn: Transaction, steps: list[LinkableStep], event: StepEvent, pps_status: str, event_kind: str,
                   uid: str, station: str, note: str = "", kind: str = "") -> dict[str, str]:
    """Move each linked step with ``event``; history per step, one domain event per changed order's
    accession.  A step already in a final state is an append: history only.  Returns accession -> order status.
    ``kind`` names the history entries when images, not an MPPS, move the steps (images_without_mpps.py)."""
    kind = kind or f"MPPS {pps_status}"
    result: dict[str, str] = {}
    by_order: dict[int, list[LinkableStep]] = {}
    for step in steps:
        by_order.setdefault(step.order_ref, []).append(step)
    for order_ref, order_steps in by_order.items():
        before = _order_status(txn, order_ref)
        entries: list[tuple[str, str]] = []
        changed = False
        for step in order_steps:
            status = StepStatus(step.status)
            where = f"{uid} on {station}: accession {step.accession_number} SPS {step.sps_id}"
            if status.is_final:
                entries.append(("MPPS APPENDED", f"{where} is {status.value}: {pps_status} appended, step"
                                f" unchanged{note}"))
                continue
            try:
                new_status = transition(status, event)
            except TransitionRefused as refused:
                entries.append((kind, f"{where} stays {status.value} ({refused.reason}){note}"))
                continue
            if new_status != status:
                order_store.set_step_status(txn, step.step_ref, new_status.value)
                changed = True
            entries.append((kind, f"{where} {status.value} -> {new_status.value}{note}"))
        after = _order_status(txn, order_ref)
        if before != after and entries:
            last_kind, last_detail = entries[-1]
            entries[-1] = (last_kind, f"{last_detail}; order {before} -> {after}")
        for entry_kind, detail in entries:
            order_store.add_history(txn, order_ref, entry_kind, detail, None)
        order_store.touch(txn, order_ref)
        # IN PROGRESS is news only for the order's first started step (SWF.md 4.3); a final MPPS always
        # is, even when the order stays IP (the outbound side decides on partial messages).
        announce = changed and (event != StepEvent.START or before != after)
        for accession in sorted({s.accession_number for s in order_steps}):
            result[accession] = after
            if announce:
                queues.record_event(txn, event_kind, accession, f"{uid}; order {before} -> {after}{note}", order_ref)
                log.info("%s accession %s (%s %s): order %s -> %s", event_kind, accession, kind, uid, before, after)
    return result


# -- N-CREATE --------------------------------------------------------------------------------------
def create(txn: Transaction, request: CreateRequest) -> MppsResult:
    """RAD-6: store the new performed step, link it (SWF.md 4.2) and start the steps it performs."""
    uid = request.sop_instance_uid
    if performed.exists(txn, uid):
        raise MppsRefused(Refusal.DUPLICATE, f"Performed Procedure Step {uid} already exists")
    attributes = request.attributes
    check_create(attributes)
    absent = _type2_absent(attributes)
    if absent:
        log.warning("MPPS %s from %s: Type 2 attribute(s) absent (accepted): %s", uid, request.calling_ae_title,
                    ", ".join(absent))
    items = attributes[SSA]
    steps = _resolve(txn, items, uid)
    unscheduled = not steps
    station = _text(attributes, "PerformedStationAETitle") or request.calling_ae_title
    stamp = now_iso()
    performed_ref = performed.insert(
        txn, sop_instance_uid=uid, status=IN_PROGRESS, pps_id=_text(attributes, "PerformedProcedureStepID"),
        performed_station_ae_title=station, calling_ae_title=request.calling_ae_title,
        study_instance_uid=_text(items[0], "StudyInstanceUID"), unscheduled=unscheduled, dataset=request.dataset,
        at=stamp)
    performed.add_version(txn, performed_ref, "N-CREATE", IN_PROGRESS, request.dataset, stamp)
    for step in steps:
        performed.link(txn, performed_ref, step.step_ref)
    if unscheduled:
        study = _text(items[0], "StudyInstanceUID")
        queues.record_event(txn, "mpps.unscheduled", study, f"{uid} on {station}")
        log.info("MPPS %s IN PROGRESS on %s: unscheduled (study %s)", uid, station, study)
        return MppsResult(uid, IN_PROGRESS, True)
    statuses = apply_to_steps(txn, steps, StepEvent.START, IN_PROGRESS, "mpps.in_progress", uid, station)
    return MppsResult(uid, IN_PROGRESS, False, _describe(txn, performed_ref), statuses)


def _describe(txn: Transaction, performed_ref: int) -> list[str]:
    return [f"{s.accession_number}/{s.sps_id} -> {s.status}" for s in performed.linked_steps(txn, performed_ref)]


# -- N-SET -----------------------------------------------------------------------------------------
def update(txn: Transaction, request: UpdateRequest) -> MppsResult:
    """RAD-7: apply the Modification List; a final status moves the linked steps (SWF.md 6.2, 4.1)."""
    uid = request.sop_instance_uid
    row = performed.for_update(txn, uid)   # N-SETs on one instance from several processes queue here
    if row is None:
        raise MppsRefused(Refusal.NO_SUCH_INSTANCE, f"no Performed Procedure Step {uid}")
    if row.status in FINAL_PPS_STATUSES:
        raise MppsRefused(Refusal.NOT_UPDATABLE, NOT_UPDATABLE_COMMENT)
    modifications = request.modifications
    not_allowed = [k for k in modifications if k in NOT_SETTABLE]
    if not_allowed:
        raise MppsRefused(Refusal.NOT_ALLOWED, "N-SET may not change: " + ", ".join(not_allowed), not_allowed)
    status = row.status
    if "PerformedProcedureStepStatus" in modifications:
        status = _text(modifications, "PerformedProcedureStepStatus")
        if status not in PPS_STATUSES:
            raise MppsRefused(Refusal.INVALID_VALUE, f"Performed Procedure Step Status {status!r} is not one of"
                              f" {', '.join(PPS_STATUSES)}", ["PerformedProcedureStepStatus"])
    dataset, attributes = request.apply(row.dataset)
    if status in FINAL_PPS_STATUSES:
        check_final(attributes, status)
    stamp = now_iso()
    performed.update(txn, row.id, status, dataset, stamp)
    performed.add_version(txn, row.id, "N-SET", status, dataset, stamp)
    result = MppsResult(uid, status, row.unscheduled)
    steps = performed.linked_steps(txn, row.id)
    station = row.performed_station_ae_title or request.calling_ae_title
    if status == IN_PROGRESS or not steps:
        log.info("MPPS %s N-SET from %s: %s%s", uid, request.calling_ae_title, status,
                 " (unscheduled)" if not steps else "")
        result.linked = _describe(txn, row.id)
        return result
    if status == COMPLETED:
        result.order_statuses = apply_to_steps(txn, steps, StepEvent.COMPLETE, COMPLETED, "mpps.completed",
                                                uid, station)
    else:
        reason = reason_code(attributes)
        if reason == REOFFER_REASON:
            event, note = StepEvent.REOFFER, f"; reason {reason} (incorrect worklist entry): re-offered"
            series, images = performed_references(attributes)
            hidden = storage.hide_instances(txn, images, series, reason, row.id)
            note += f"; {hidden} stored instance(s) withdrawn from query/retrieve"
        else:
            event, note = StepEvent.DISCONTINUE, f"; reason {reason}" if reason else ""
        result.order_statuses = apply_to_steps(txn, steps, event, DISCONTINUED, "mpps.discontinued",
                                                uid, station, note)
    result.linked = _describe(txn, row.id)
    return result
