"""Domain events -> outbox rows, inside the transaction that recorded the events.

Registered as a store before-commit hook: every event not yet dispatched becomes one outbox message per
destination that wants it, so an event and its messages commit together or not at all.  A message that
cannot be built is parked as dead with the reason; it never blocks the batch.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from ..domain.status import StepStatus, order_status
from ..hl7.ack import Identity
from ..hl7.mapping import Profile
from ..store import json_columns, orders, patients, performed_steps, queues
from ..store.database import Transaction
from ..store.queues import DomainEvent
from ..store.timestamps import now_iso
from . import messages
from .destinations import Destination

log = logging.getLogger(__name__)


def envelope_for(destination: Destination, profile: Profile | None, identity: Identity) -> messages.Envelope:
    options = (profile.options.get("outbound") if profile is not None else None) or {}
    return messages.Envelope(
        sending_application=identity.application, sending_facility=identity.facility,
        receiving_application=destination.receiving_application, receiving_facility=destination.receiving_facility,
        version=str(options.get("version", "2.3.1")), charset=str(options.get("charset", "8859/1")),
        status_message=str(options.get("status_message", "OMG")))


def _performed(txn: Transaction, order_ref: int) -> dict[str, Any]:
    """Start/end, discontinuation reason and comments of the order's latest MPPS (empty without one)."""
    latest = performed_steps.latest_of_order(txn, order_ref)
    if latest is None:
        return {}
    try:
        dataset = performed_steps.decode_dataset(latest.dataset)
    except Exception:  # noqa: BLE001 - a status message without times is better than none
        log.warning("MPPS dataset of order #%d unreadable for the status message", order_ref)
        return {}
    reason = dataset.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
    return {
        "start": f"{dataset.get('PerformedProcedureStepStartDate', '')}{str(dataset.get('PerformedProcedureStepStartTime', '')).split('.')[0]}",
        "end": f"{dataset.get('PerformedProcedureStepEndDate', '')}{str(dataset.get('PerformedProcedureStepEndTime', '')).split('.')[0]}",
        "reason": {key: str(reason[0].get(key, "")) for key in ("CodeValue", "CodeMeaning", "CodingSchemeDesignator")}
        if reason else {},
        "comments": str(dataset.get("CommentsOnThePerformedProcedureStep", "")),
    }


def order_view(txn: Transaction, order_ref: int) -> messages.OrderView | None:
    order = orders.by_ref(txn, order_ref)
    if order is None:
        return None
    patient = patients.by_ref(txn, order.patient_ref)
    assert patient is not None  # orders.patient_ref references patients
    procedures = []
    statuses = []
    for procedure in orders.procedures_of(txn, order_ref):
        steps = []
        for step in orders.steps_of_procedure(txn, procedure.id):
            attributes = step.attributes
            statuses.append(StepStatus(step.status))
            steps.append(messages.StepView(step.sps_id, step.modality, step.status, step.station_ae_title,
                                           attributes.get("ScheduledProcedureStepStartDate", ""),
                                           attributes.get("ScheduledProcedureStepStartTime", ""),
                                           attributes.get("ScheduledProtocolCodeSequence") or []))
        procedures.append(messages.ProcedureView(procedure.accession_number, procedure.requested_procedure_id,
                                                 procedure.study_instance_uid, procedure.attributes, steps))
    performed = _performed(txn, order_ref)
    return messages.OrderView(
        patient_id=patient.patient_id, issuer=patient.issuer, patient=patient.attributes,
        placer_order_number=order.placer_order_number, filler_order_number=order.filler_order_number,
        order_status=order_status(statuses), procedures=procedures, performed_start=performed.get("start", ""),
        performed_end=performed.get("end", ""), discontinuation_reason=performed.get("reason", {}),
        performed_comments=performed.get("comments", ""))


class EventDispatcher:
    """The before-commit hook: new events -> outbox rows for the destinations that want them."""

    def __init__(self, destinations: Callable[[], Mapping[str, Destination]], profiles: dict[str, Profile],
                 identity: Identity):
        self.destinations = destinations   # the destinations by name as the rules now stand (they reload)
        self.profiles = profiles
        self.identity = identity
        self.queued = False  # set when a message was queued; the engine wakes the delivery after the commit

    def __call__(self, txn: Transaction) -> None:
        # The order's destinations come with each event: one statement per batch, not one per event.
        events = queues.undispatched_events(txn)
        if not events:
            return
        destinations = self.destinations()
        for event in events:
            for name in event.destinations or event.order_outbound:
                destination = destinations.get(name)
                if destination is None or not destination.enabled or not destination.wants(event.kind):
                    continue
                self._enqueue(txn, event, destination)
        queues.mark_dispatched(txn, events)

    def _build(self, txn: Transaction, event: DomainEvent, destination: Destination) -> tuple[str, bytes] | None:
        envelope = envelope_for(destination, self.profiles.get(destination.profile), self.identity)
        kind = event.kind
        if kind.startswith("patient."):
            patient_id, _, issuer = event.subject.partition("^")
            patient = patients.find(txn, patient_id, issuer)
            if patient is None:
                return None
            return messages.patient_message(patient_id, issuer, patient.attributes, kind, event.detail, envelope)
        view = order_view(txn, event.order_ref) if event.order_ref is not None else None
        if view is None:
            return None
        if kind == "commitment.succeeded" and not destination.notify_commitment:
            return None
        if kind == "order.aged_out" and not destination.notify_aged_out:
            return None
        if kind == "mpps.completed" and view.order_status != "CM" and not destination.emit_partial:
            return None  # the order stays in progress (SWF.md 4.3 'order stays IP')
        if kind == "mpps.discontinued" and view.order_status not in ("DC", "CM", "IP"):
            return None  # 110514: the step went back to SCHEDULED, nothing to report
        if destination.sends == "availability":
            detail = json_columns.loads(event.detail)
            study = messages.StudyCounts(str(detail.get("study_instance_uid", "")),
                                         str(detail.get("accession_number", "")), int(detail.get("series", 0)),
                                         int(detail.get("instances", 0)))
            return messages.availability_message(view, study, envelope, destination.availability_message,
                                                 destination.availability_status)
        if destination.sends == "status":
            return messages.status_message(view, kind, envelope)
        return messages.procedure_message(view, kind, envelope)

    def _enqueue(self, txn: Transaction, event: DomainEvent, destination: Destination) -> None:
        try:
            built = self._build(txn, event, destination)
        except Exception as exc:  # noqa: BLE001 - parked with the reason, never blocks the commit
            log.exception("cannot build %s message for %s (event #%d)", event.kind, destination.name, event.id)
            queues.park_unbuildable(txn, destination=destination.name, at=now_iso(), event_ref=event.id,
                                    kind=event.kind, accession_number=event.subject,
                                    reason=f"cannot build message: {exc}")
            return
        if built is None:
            return
        control_id, message = built
        queues.enqueue_outbox(txn, destination=destination.name, at=now_iso(), event_ref=event.id, kind=event.kind,
                              control_id=control_id, accession_number=event.subject, message=message)
        self.queued = True
        log.info("%s for accession %s queued to %s as %s", event.kind, event.subject, destination.name, control_id)
