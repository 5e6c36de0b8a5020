"""RAD-2 / RAD-4 / RAD-13: new, changed, cancelled and discontinued orders (SWF.md RAD-13 table).

Every step status change goes through ``domain.status.transition``; a refused transition rejects the
whole message (its savepoint is rolled back) with the reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ..config import OrdersConfig
from ..domain.model import DomainEvent, OrderRequest, Problem, ProcedureRequest, Rejection, StepRequest
from ..domain.status import StepEvent, StepStatus, TransitionRefused, order_status, transition
from ..domain.matching_keys import normalise_name, sortable_datetime
from ..store import orders as order_store
from ..store import queues
from ..store.database import Transaction
from ..store.orders import Order, RequestedProcedure, ScheduledStep, StepSchedule
from . import identifiers, storage

log = logging.getLogger(__name__)

# (ORC-1, ORC-5) -> action.  RAD-2 placer orders leave ORC-5 empty.
ACTIONS = {
    ("NW", "SC"): "create", ("NW", ""): "create", ("NW", "IP"): "create_started",
    ("XO", "SC"): "update", ("XO", ""): "update", ("XO", "CM"): "complete",
    ("CA", "CA"): "cancel", ("CA", ""): "cancel",
    ("DC", "CA"): "discontinue", ("DC", ""): "discontinue", ("DC", "DC"): "discontinue",
}
# Changes to these are refused once a step has started (SWF.md RAD-13).
LOCKED_WHEN_STARTED = ("modality", "station_ae_title")


@dataclass
class OrderContext:
    patient_ref: int
    sending_application: str
    mode: str
    visit_number: str
    journal_ref: int | None
    config: OrdersConfig
    outbound: tuple[str, ...] = ()  # destinations the matching rules named; kept with a new order


def apply_order(txn: Transaction, request: OrderRequest, ctx: OrderContext) -> list[DomainEvent]:
    action = ACTIONS.get((request.control, request.status))
    if action is None:
        raise Rejection(Problem.BAD_CODE, f"ORC-1/ORC-5 combination {request.control}/{request.status or '(empty)'}"
                        " is not supported", "ORC-1")
    order = order_store.find(txn, request.placer_order_number, request.filler_order_number)
    if order is None and action in ("create", "create_started"):
        order = _order_of_known_study(txn, request)
    if action in ("create", "create_started"):
        if order is None:
            return _create(txn, request, ctx, StepStatus.STARTED if action == "create_started" else StepStatus.SCHEDULED)
        if ctx.config.nw_for_existing == "reject":
            raise Rejection(Problem.DUPLICATE_KEY, f"order {_order_label(order)} already exists (NW)", "ORC-2")
        order_store.add_history(txn, order.id, "NW used as update", "order already known", ctx.journal_ref)
        log.info("NW for existing order %s applied as an update", _order_label(order))
        return _update(txn, order, request, ctx)
    if order is None:
        key = request.placer_order_number or request.filler_order_number
        raise Rejection(Problem.UNKNOWN_KEY, f"Unknown order {key} for ORC-1={request.control}", "ORC-2")
    if order.patient_ref != ctx.patient_ref:
        log.warning("order %s belongs to another patient row than the message's PID", _order_label(order))
    if action == "update":
        return _update(txn, order, request, ctx)
    event = {"complete": StepEvent.COMPLETE, "cancel": StepEvent.CANCEL, "discontinue": StepEvent.DISCONTINUE}[action]
    return _change_all_steps(txn, order, event, request.control, ctx)


def _order_label(order: Order) -> str:
    return order.placer_order_number or order.filler_order_number or f"#{order.id}"


def _order_of_known_study(txn: Transaction, request: OrderRequest) -> Order | None:
    for procedure in request.procedures:
        if procedure.study_instance_uid:
            known = order_store.procedure_by_study(txn, procedure.study_instance_uid)
            if known:
                return order_store.by_ref(txn, known.order_ref)
    return None


def _step_values(step: StepRequest, status: StepStatus, default_start: tuple[str, str]) -> StepSchedule:
    date, time = (step.start_date, step.start_time) if step.start_date else default_start
    attributes = dict(step.attributes)
    attributes["ScheduledProcedureStepStartDate"] = date
    attributes["ScheduledProcedureStepStartTime"] = time
    attributes["ScheduledProcedureStepID"] = step.sps_id
    return StepSchedule(
        sps_id=step.sps_id,
        status=status.value,
        station_ae_title=attributes.get("ScheduledStationAETitle", ""),
        station_name=attributes.get("ScheduledStationName", ""),
        location=attributes.get("ScheduledProcedureStepLocation", ""),
        modality=attributes.get("Modality", ""),
        start_datetime=sortable_datetime(date, time),
        performing_physician_norm=normalise_name(attributes.get("ScheduledPerformingPhysicianName", "")),
        attributes=attributes,
    )


def _fill_identifiers(txn: Transaction, procedure: ProcedureRequest, index: int, accession: str,
                      config: OrdersConfig) -> None:
    procedure.accession_number = procedure.accession_number or accession
    procedure.requested_procedure_id = procedure.requested_procedure_id or identifiers.derived_id(
        txn, procedure.accession_number, str(index), "rp")
    procedure.study_instance_uid = procedure.study_instance_uid or identifiers.study_instance_uid(txn, config)
    for number, step in enumerate(procedure.steps, 1):
        step.sps_id = step.sps_id or identifiers.derived_id(txn, procedure.requested_procedure_id, str(number), "sps")


def _insert_procedure(txn: Transaction, order_ref: int, procedure: ProcedureRequest, status: StepStatus,
                      request: OrderRequest, ctx: OrderContext, unused_uids: set[str] | None = None) -> None:
    """``unused_uids``: Study Instance UIDs just found unused (not looked up again unless reused here)."""
    if unused_uids is not None and procedure.study_instance_uid in unused_uids:
        unused_uids.discard(procedure.study_instance_uid)
        clash = None
    else:
        clash = order_store.procedure_by_study(txn, procedure.study_instance_uid)
    if clash is not None:
        raise Rejection(Problem.DUPLICATE_KEY, f"Study Instance UID {procedure.study_instance_uid} already belongs"
                        f" to accession {clash.accession_number}", "ZDS-1")
    procedure_ref = order_store.insert_procedure(txn, order_ref, procedure.accession_number,
                                                 procedure.requested_procedure_id, procedure.study_instance_uid,
                                                 procedure.attributes)
    linked = storage.link_waiting_instances(txn, procedure_ref, procedure.study_instance_uid,
                                            procedure.accession_number)
    if linked:  # images that arrived before their order (unscheduled acquisition, late RIS)
        order_store.add_history(txn, order_ref, "images linked", f"{linked} instance(s) stored before the order",
                                ctx.journal_ref)
    for step in procedure.steps:
        values = _step_values(step, status, request.default_start)
        order_store.insert_step(txn, procedure_ref, values)
        order_store.add_history(
            txn, order_ref, f"SPS {status.value}",
            f"accession {procedure.accession_number} SPS {step.sps_id} {values.modality} on"
            f" {values.station_ae_title or '(no station)'} at {values.attributes['ScheduledProcedureStepStartDate']}"
            f" {values.attributes['ScheduledProcedureStepStartTime']}".rstrip(), ctx.journal_ref)
        _note_missing_station(txn, order_ref, procedure.accession_number, values, ctx)


def _note_missing_station(txn: Transaction, order_ref: int, accession: str, values: StepSchedule,
                          ctx: OrderContext) -> None:
    """A step accepted without a station AE title is invisible to a modality asking for its own (they all do):
    say so at ingest, in the log and the order history, never silently."""
    if values.station_ae_title:
        return
    modality = values.modality or "(empty)"
    reason = f"no routing rule gave modality {modality} a station and the message names none"
    default = ctx.config.default_station_ae
    effect = (f"offered to modality worklist queries as {default} (orders.default_station_ae)" if default else
              "modality worklist queries for a station AE title will not find it; add a rule in routes/ or set"
              " orders.default_station_ae")
    detail = f"SPS {values.sps_id} of accession {accession}: {reason}; {effect}"
    order_store.add_history(txn, order_ref, "no station", detail, ctx.journal_ref)
    log.warning("accession %s SPS %s has no station AE: %s; %s", accession, values.sps_id, reason, effect)


def _create(txn: Transaction, request: OrderRequest, ctx: OrderContext, status: StepStatus) -> list[DomainEvent]:
    """A new order; ``apply_order`` has found none of the request's Study Instance UIDs in use."""
    unused_uids = {procedure.study_instance_uid for procedure in request.procedures if procedure.study_instance_uid}
    filler = request.filler_order_number
    if not filler and ctx.mode == "filler":
        filler = identifiers.filler_order_number(txn, ctx.config)
    order_ref = order_store.insert(txn, ctx.patient_ref, request.placer_order_number, filler,
                                   ctx.sending_application, ctx.mode, ctx.visit_number, ctx.outbound)
    order_store.add_history(txn, order_ref, f"order {request.control}",
                            f"placer {request.placer_order_number or '-'} filler {filler or '-'} ({ctx.mode} mode)",
                            ctx.journal_ref)
    events = []
    accession = ""
    for index, procedure in enumerate(request.procedures, 1):
        if not procedure.accession_number and not accession:
            accession = identifiers.accession_number(txn, ctx.config)
        _fill_identifiers(txn, procedure, index, accession, ctx.config)
        _insert_procedure(txn, order_ref, procedure, status, request, ctx, unused_uids)
        events.append(DomainEvent("order.scheduled", procedure.accession_number, procedure.study_instance_uid,
                                   order_ref))
    return events


def _find_procedure(existing: list[RequestedProcedure], procedure: ProcedureRequest) -> RequestedProcedure | None:
    for known in existing:
        if procedure.study_instance_uid and known.study_instance_uid == procedure.study_instance_uid:
            return known
        if (procedure.accession_number and known.accession_number == procedure.accession_number
                and (not procedure.requested_procedure_id
                     or known.requested_procedure_id == procedure.requested_procedure_id)):
            return known
    if len(existing) == 1 and not (procedure.study_instance_uid or procedure.accession_number):
        return existing[0]
    return None


def _update(txn: Transaction, order: Order, request: OrderRequest, ctx: OrderContext) -> list[DomainEvent]:
    existing = order_store.procedures_of(txn, order.id)
    events = []
    for index, procedure in enumerate(request.procedures, len(existing) + 1):
        known = _find_procedure(existing, procedure)
        if known is None:
            accession = procedure.accession_number or identifiers.accession_number(txn, ctx.config)
            _fill_identifiers(txn, procedure, index, accession, ctx.config)
            _insert_procedure(txn, order.id, procedure, StepStatus.SCHEDULED, request, ctx)
            events.append(DomainEvent("order.scheduled", procedure.accession_number, procedure.study_instance_uid,
                                      order.id))
            continue
        order_store.update_procedure(txn, known.id, {**known.attributes, **procedure.attributes})
        steps = order_store.steps_of_procedure(txn, known.id)
        for number, step in enumerate(procedure.steps, len(steps) + 1):
            _update_step(txn, order.id, known, steps, step, number, request, ctx)
        events.append(DomainEvent("order.changed", known.accession_number, request.control, order.id))
    order_store.touch(txn, order.id)
    return events


def _update_step(txn: Transaction, order_ref: int, procedure: RequestedProcedure, steps: list[ScheduledStep],
                 step: StepRequest, number: int, request: OrderRequest, ctx: OrderContext) -> None:
    current = next((s for s in steps if step.sps_id and s.sps_id == step.sps_id), None)
    if current is None and not step.sps_id and len(steps) == 1:
        current = steps[0]
    if current is None:
        step.sps_id = step.sps_id or identifiers.derived_id(txn, procedure.requested_procedure_id, str(number), "sps")
        values = _step_values(step, StepStatus.SCHEDULED, request.default_start)
        order_store.insert_step(txn, procedure.id, values)
        order_store.add_history(txn, order_ref, "SPS SCHEDULED", f"SPS {step.sps_id} added by {request.control}",
                                ctx.journal_ref)
        _note_missing_station(txn, order_ref, procedure.accession_number, values, ctx)
        return
    step.sps_id = current.sps_id
    status = StepStatus(current.status)
    values = _step_values(step, status, request.default_start)
    if not step.start_date:  # a change without a start time keeps the scheduled one
        values = replace(values, start_datetime=current.start_datetime, attributes={
            **values.attributes, **{key: current.attributes.get(key, "") for key in
                                    ("ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime")}})
    changed = [column for column in ("station_ae_title", "station_name", "location", "modality", "start_datetime",
                                     "performing_physician_norm")
               if getattr(values, column) != getattr(current, column)]
    if status == StepStatus.STARTED and any(column in LOCKED_WHEN_STARTED for column in changed):
        raise Rejection(Problem.REFUSED, f"SPS {current.sps_id}: step in progress; cannot change"
                        f" {', '.join(c for c in changed if c in LOCKED_WHEN_STARTED)}", "ORC-1")
    if status.is_final:
        raise Rejection(Problem.REFUSED, f"SPS {current.sps_id} is {status.value} (final state)", "ORC-1")
    if status.is_open:
        transition(status, StepEvent.RESCHEDULE)
    order_store.update_step(txn, current.id, values)
    kind = "rescheduled" if "start_datetime" in changed or "station_ae_title" in changed else "changed"
    order_store.add_history(txn, order_ref, f"SPS {kind}", f"SPS {current.sps_id}: {', '.join(changed) or 'attributes'}",
                            ctx.journal_ref)
    _note_missing_station(txn, order_ref, procedure.accession_number, values, ctx)


def _change_all_steps(txn: Transaction, order: Order, event: StepEvent, control: str,
                      ctx: OrderContext) -> list[DomainEvent]:
    steps = order_store.steps_of_order(txn, order.id)
    changed = 0
    for step in steps:
        status = StepStatus(step.status)
        if status.is_final and event != StepEvent.CANCEL:
            continue
        if status == StepStatus.CANCELED and event == StepEvent.CANCEL:
            continue  # a repeated cancel is harmless
        try:
            new_status = transition(status, event)
        except TransitionRefused as refused:
            raise Rejection(Problem.REFUSED, f"SPS {step.sps_id}: {refused.reason}", "ORC-1") from None
        order_store.set_step_status(txn, step.id, new_status.value)
        order_store.add_history(txn, order.id, f"SPS {new_status.value}", f"SPS {step.sps_id} by ORC-1={control}",
                                ctx.journal_ref)
        changed += 1
    order_store.touch(txn, order.id)
    final = order_status([StepStatus(status) for status in order_store.step_statuses_of_order(txn, order.id)])
    kind = {StepEvent.CANCEL: "order.cancelled", StepEvent.DISCONTINUE: "order.discontinued",
            StepEvent.COMPLETE: "order.completed"}[event]
    accessions = sorted({s.accession_number for s in steps})
    return [DomainEvent(kind, accession, f"{changed} step(s); order status {final}", order.id)
            for accession in accessions]


def _order_by_accession(txn: Transaction, accession_number: str) -> Order:
    """The newest order with a requested procedure of this accession number (operator actions)."""
    order = order_store.newest_of_accession(txn, accession_number)
    if order is None:
        raise Rejection(Problem.UNKNOWN_KEY, f"no order with accession number {accession_number}")
    return order


def operator_cancel(txn: Transaction, accession_number: str, reason: str) -> list[DomainEvent]:
    """The engine's operator cancels every open step of an order (``swf cancel``); refused once started."""
    order = _order_by_accession(txn, accession_number)
    for step in order_store.steps_of_order(txn, order.id):
        status = StepStatus(step.status)
        if status == StepStatus.CANCELED:
            continue
        try:
            new_status = transition(status, StepEvent.CANCEL)
        except TransitionRefused as refused:
            raise Rejection(Problem.REFUSED, f"SPS {step.sps_id}: {refused.reason}") from None
        order_store.set_step_status(txn, step.id, new_status.value)
        order_store.add_history(txn, order.id, "SPS CANCELED", f"SPS {step.sps_id} by the operator: {reason}", None)
    order_store.touch(txn, order.id)
    queues.record_event(txn, "order.cancelled_by_operator", accession_number, reason, order.id)
    return [DomainEvent("order.cancelled_by_operator", accession_number, reason, order.id)]


def operator_change(txn: Transaction, accession_number: str, start: str | None, station_ae_title: str | None,
                    reason: str) -> list[DomainEvent]:
    """The operator reschedules the open steps of an order (``swf reschedule``): new start and/or station."""
    order_ref = _order_by_accession(txn, accession_number).id
    changed = 0
    for step in order_store.steps_of_order(txn, order_ref):
        status = StepStatus(step.status)
        if status.is_final:
            continue
        try:
            transition(status, StepEvent.RESCHEDULE)
        except TransitionRefused as refused:
            raise Rejection(Problem.REFUSED, f"SPS {step.sps_id}: {refused.reason}") from None
        attributes = dict(step.attributes)
        start_datetime, station = step.start_datetime, step.station_ae_title
        if start:
            date, time = start[:8], start[8:]
            attributes["ScheduledProcedureStepStartDate"], attributes["ScheduledProcedureStepStartTime"] = date, time
            start_datetime = sortable_datetime(date, time)
        if station_ae_title:
            attributes["ScheduledStationAETitle"] = station = station_ae_title
        order_store.reschedule_step(txn, step.id, start_datetime=start_datetime, station_ae_title=station,
                                    attributes=attributes)
        order_store.add_history(txn, order_ref, "SPS rescheduled", f"SPS {step.sps_id} by the operator: {reason}", None)
        changed += 1
    if not changed:
        raise Rejection(Problem.REFUSED, f"order {accession_number} has no open step to change")
    order_store.touch(txn, order_ref)
    queues.record_event(txn, "order.changed_by_operator", accession_number, reason, order_ref)
    return [DomainEvent("order.changed_by_operator", accession_number, reason, order_ref)]
