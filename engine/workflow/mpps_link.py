"""Linking what arrived unscheduled (issue 16): the operator links an unscheduled MPPS (one whose
Scheduled Step Attributes named no known step, SWF.md 4.2) and its images to an order (``swf link``,
``POST /api/v1/mpps/{uid}/link``).

The order's steps then go where the MPPS says, with the same history and the same ``mpps.*`` events a
scheduled MPPS would have recorded (IN PROGRESS, then COMPLETED or DISCONTINUED), so the outbox tells the
RIS exactly what it would have been told.  The MPPS's images (its study, and the series its Performed
Series Sequence lists) take the order's accession, and its patient's ID and demographics when they
differ, as index corrections (engine/workflow/reconciliation.py): Q/R matches and answers with them and a
retrieve sends them; the files stay as received.  The order's history says who linked what.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..domain.status import StepEvent
from ..store import instances as indexed
from ..store import orders as order_store
from ..store import patients
from ..store import performed_steps as performed
from ..store.database import Transaction
from .mpps import COMPLETED, DISCONTINUED, IN_PROGRESS, apply_to_steps, latest_order, reason_code
from .reconciliation import correct, patient_keys

log = logging.getLogger(__name__)


class LinkRefused(Exception):
    """The link is not made; ``not_found`` when the MPPS or the accession is unknown (else a conflict)."""

    def __init__(self, reason: str, not_found: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.not_found = not_found


@dataclass
class LinkResult:
    mpps_uid: str
    accession_number: str
    mpps_status: str
    steps: list[str] = field(default_factory=list)                 # "SPS-ID -> STATUS"
    order_statuses: dict[str, str] = field(default_factory=dict)   # accession -> order status
    instances: int = 0                                             # images that took the order's keys


def _performed_series(step: performed.PerformedStep) -> list[str]:
    dataset = performed.decode_dataset(step.dataset)
    return [str(item.get("SeriesInstanceUID", "")) for item in dataset.get("PerformedSeriesSequence", []) or []]


def _mpps_attributes(step: performed.PerformedStep) -> dict[str, object]:
    """What ``reason_code`` reads of the stored dataset: the discontinuation reason items."""
    dataset = performed.decode_dataset(step.dataset)
    items = dataset.get("PerformedProcedureStepDiscontinuationReasonCodeSequence", []) or []
    return {"PerformedProcedureStepDiscontinuationReasonCodeSequence":
            [{"CodeValue": str(item.get("CodeValue", ""))} for item in items]}


def link(txn: Transaction, mpps_uid: str, accession_number: str, operator: str) -> LinkResult:
    """Link the unscheduled MPPS ``mpps_uid`` and its images to the order of ``accession_number``."""
    step = performed.for_update(txn, mpps_uid)
    if step is None:
        raise LinkRefused(f"no MPPS with SOP Instance UID {mpps_uid!r}", not_found=True)
    linked = performed.linked_steps(txn, step.id)
    if linked:
        raise LinkRefused(f"MPPS {mpps_uid} is already linked to accession "
                          f"{', '.join(sorted({s.accession_number for s in linked}))}")
    steps = latest_order(performed.steps_by_accession(txn, accession_number))
    if not steps:
        raise LinkRefused(f"no order with accession number {accession_number!r}", not_found=True)
    for scheduled in steps:
        others = performed.performed_of_step(txn, scheduled.step_ref)
        if others:
            raise LinkRefused(f"accession {accession_number} SPS {scheduled.sps_id} already has MPPS"
                              f" {', '.join(others)}")
    for scheduled in steps:
        performed.link(txn, step.id, scheduled.step_ref)
    performed.mark_linked(txn, step.id)
    order_ref = steps[0].order_ref
    station = step.performed_station_ae_title or step.calling_ae_title
    note = f"; linked by {operator}"
    result = LinkResult(mpps_uid, accession_number, step.status)
    result.order_statuses = apply_to_steps(txn, steps, StepEvent.START, IN_PROGRESS, "mpps.in_progress", mpps_uid,
                                           station, note)
    if step.status == COMPLETED:
        result.order_statuses = apply_to_steps(txn, performed.linked_steps(txn, step.id), StepEvent.COMPLETE,
                                               COMPLETED, "mpps.completed", mpps_uid, station, note)
    elif step.status == DISCONTINUED:
        reason = reason_code(_mpps_attributes(step))
        result.order_statuses = apply_to_steps(txn, performed.linked_steps(txn, step.id), StepEvent.DISCONTINUE,
                                               DISCONTINUED, "mpps.discontinued", mpps_uid, station,
                                               f"; reason {reason}{note}" if reason else note)
    result.steps = [f"{s.sps_id} -> {s.status}" for s in performed.linked_steps(txn, step.id)]
    result.instances = _link_images(txn, step, steps[0], order_ref)
    detail = (f"MPPS {mpps_uid} ({step.status}, unscheduled, from {station}) linked to accession {accession_number}"
              f" by {operator}; {result.instances} stored instance(s) of study {step.study_instance_uid or '-'}"
              " now carry the order's accession")
    order_store.add_history(txn, order_ref, "MPPS linked", detail, None)
    log.info("%s", detail)
    return result


def _link_images(txn: Transaction, step: performed.PerformedStep, scheduled: performed.LinkableStep,
                 order_ref: int) -> int:
    """The MPPS's images take the order's accession (and its patient when another); how many changed."""
    procedure_ref = indexed.procedure_by_procedure_id(txn, scheduled.requested_procedure_id,
                                                      scheduled.accession_number)
    order = order_store.by_ref(txn, order_ref)
    patient = patients.by_ref(txn, order.patient_ref) if order is not None else None
    changed = 0
    for instance in indexed.of_study_or_series(txn, step.study_instance_uid, _performed_series(step)):
        wanted: dict[str, object] = {"AccessionNumber": scheduled.accession_number}
        if patient is not None and instance.patient_id != patient.patient_id:
            wanted.update(patient_keys(patient))
        if correct(txn, instance, wanted, procedure_ref):
            changed += 1
    return changed
