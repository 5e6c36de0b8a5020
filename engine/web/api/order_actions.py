"""Operator changes to orders: create (an ORM^O01 NW through the HL7 path), edit (XO through the same
path), cancel and reschedule (the functions ``swf cancel`` / ``swf reschedule`` call).  Each is audited
with the order's state before and after, in the transaction of the change; the outbound status messages
follow from the recorded events as for any RIS order."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ...domain.model import Problem, Rejection
from ...store import audit, orders as order_store, reports
from ...store.database import Transaction
from ...workflow import order_entry
from ...workflow.ingest import Received
from ...workflow.orders import operator_cancel, operator_change
from .common import ACCESSION
from .declaration import BadRequest, Call, Conflict, NotFound, Operation
from .orders import ORDER, order_json
from .schema import STRING, array, obj, record_json

log = logging.getLogger(__name__)


def _text(max_length: int = 64, min_length: int = 0) -> dict[str, Any]:
    """HL7-safe text: no control characters (the HL7 message is built from it, escaped)."""
    return {"type": "string", "minLength": min_length, "maxLength": max_length, "pattern": r"^[^\x00-\x1f\x7f]*$"}


_DATE = r"(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
START = {"type": "string", "pattern": rf"^{_DATE}([01][0-9]|2[0-3])[0-5][0-9]([0-5][0-9])?$",
         "description": "YYYYMMDDHHMM[SS], local time"}
REASON = {"reason": _text(200)}
PATIENT = obj({"patient_id": _text(64, 1), "issuer": _text(64), "name": {**_text(200, 1), "description": "FAMILY^GIVEN (PID-5; required by the mapping)"},
               "birth_date": {"type": "string", "pattern": rf"^({_DATE})?$"},
               "sex": {"type": "string", "enum": ["", "M", "F", "O", "U"]}},
              optional=("issuer", "birth_date", "sex"))
PROCEDURE = obj({"code": _text(64, 1), "description": _text(200), "coding_scheme": _text(20)},
                optional=("description", "coding_scheme"))
MODALITY = {"type": "string", "pattern": r"^[A-Z0-9]{1,16}$"}
CREATE_BODY = obj({"patient": PATIENT, "placer_order_number": _text(64, 1), "filler_order_number": _text(64),
                   "accession_number": _text(16), "requested_procedure_id": _text(16), "sps_id": _text(16),
                   "procedure": PROCEDURE, "modality": MODALITY, "start": START},
                  optional=("filler_order_number", "accession_number", "requested_procedure_id", "sps_id"))
EDIT_BODY = obj({"procedure": PROCEDURE, "modality": MODALITY, "start": START},
                optional=("procedure", "modality", "start"))
RESCHEDULE_BODY = obj({"start": START, "station_ae_title": {"type": "string", "pattern": r"^[ -~]{1,16}$"}, **REASON},
                      optional=("start", "station_ae_title", "reason"))
CANCEL_BODY = obj(REASON, optional=("reason",))
ENTERED = obj({"control_id": STRING, "journal_id": {"type": "integer"}, "accession_numbers": array(STRING),
               "order": ORDER})
CHANGED = obj({"accession_number": STRING, "status": STRING, "previous_status": STRING, "order": ORDER})


def _state(detail: reports.OrderDetail) -> dict[str, Any]:
    """An order's state as the audit trail keeps it before and after a change."""
    return {"status": detail.status, "steps": [record_json(step) for step in detail.steps]}


def _entered(txn: Transaction, call: Call, order: order_entry.EnteredOrder, control: str) -> dict[str, Any]:
    """Take the entered order's HL7 message through the listener's path; 409 with the reason if refused."""
    engine = call.engine
    assert engine is not None, "order entry needs the running engine"
    hl7 = engine.config.hl7
    control_id, raw = order_entry.order_message(order, control, hl7.facility, (hl7.application, hl7.facility))
    result = engine.ingest(txn, Received(raw, f"api:{call.principal.name}@{call.client}"))
    if result.status != "applied":
        raise Conflict(f"order {order.placer_order_number} not taken ({result.status}): {result.reason}",
                       status=result.status)
    accessions = sorted({event.subject for event in result.events if event.kind.startswith("order.")})
    detail = reports.order_detail(txn, accessions[0] if accessions else order.placer_order_number)
    assert detail is not None
    log.info("order %s (accession %s) entered as %s message %s by %s from %s", order.placer_order_number,
             ", ".join(accessions), control, control_id, call.principal.name, call.client)
    return {"control_id": control_id, "journal_id": result.journal_id, "accession_numbers": accessions,
            "order": order_json(txn, detail)}


def _check_dates(body: dict[str, Any]) -> None:
    """Dates the schema's pattern lets through but the calendar has not (20250230): 400 naming the field."""
    for where, value in (("body.start", body.get("start", "")),
                         ("body.patient.birth_date", body.get("patient", {}).get("birth_date", ""))):
        try:
            if value:
                datetime.strptime(value[:8], "%Y%m%d")
        except ValueError:
            raise BadRequest(f"{where}: {value!r} is not a calendar date", field=where) from None


def create_order(txn: Transaction, call: Call) -> dict[str, Any]:
    body = call.body
    _check_dates(body)
    patient, procedure = body["patient"], body["procedure"]
    order = order_entry.EnteredOrder(
        patient=order_entry.EnteredPatient(patient["patient_id"], patient.get("issuer", ""), patient.get("name", ""),
                                           patient.get("birth_date", ""), patient.get("sex", "")),
        placer_order_number=body["placer_order_number"], procedure_code=procedure["code"],
        procedure_description=procedure.get("description", ""), modality=body["modality"], start=body["start"],
        accession_number=body.get("accession_number", ""), filler_order_number=body.get("filler_order_number", ""),
        requested_procedure_id=body.get("requested_procedure_id", ""), sps_id=body.get("sps_id", ""),
        coding_scheme=procedure.get("coding_scheme") or "LOCAL")
    answer = _entered(txn, call, order, "NW")
    audit.record_action(txn, actor=call.principal.name, client=call.client, action="order.create",
                        subject=",".join(answer["accession_numbers"]), before=None,
                        after={**_state(reports.order_detail(txn, answer["accession_numbers"][0])),  # type: ignore[arg-type]
                               "placer_order_number": order.placer_order_number}
                        if answer["accession_numbers"] else {"placer_order_number": order.placer_order_number})
    return answer


def _detail(txn: Transaction, accession: str) -> reports.OrderDetail:
    detail = reports.order_detail(txn, accession)
    if detail is None or order_store.newest_of_accession(txn, accession) is None:
        raise NotFound(f"no order with accession number {accession!r}")
    return detail


def edit_order(txn: Transaction, call: Call) -> dict[str, Any]:
    """An XO of the order's first procedure and step with the edited fields, the others as stored."""
    accession, body = call.params["accession"], call.body
    if not body:
        raise BadRequest("give at least one of procedure, modality, start", field="body")
    _check_dates(body)
    before = _detail(txn, accession)
    order_row = order_store.newest_of_accession(txn, accession)
    assert order_row is not None
    procedure = next(p for p in order_store.procedures_of(txn, order_row.id) if p.accession_number == accession)
    step = next(s for s in order_store.steps_of_procedure(txn, procedure.id))
    codes = (procedure.attributes.get("RequestedProcedureCodeSequence") or [{}])[0]
    edited = body.get("procedure", {})
    attributes = step.attributes
    order = order_entry.EnteredOrder(
        patient=order_entry.EnteredPatient(before.patient_id, before.issuer, before.patient_name),
        placer_order_number=before.placer_order_number, filler_order_number=before.filler_order_number,
        accession_number=accession, requested_procedure_id=procedure.requested_procedure_id, sps_id=step.sps_id,
        procedure_code=edited.get("code") or codes.get("CodeValue", ""),
        procedure_description=edited.get("description", procedure.attributes.get("RequestedProcedureDescription", "")),
        coding_scheme=edited.get("coding_scheme") or codes.get("CodingSchemeDesignator", "") or "LOCAL",
        modality=body.get("modality") or step.modality,
        start=body.get("start") or (attributes.get("ScheduledProcedureStepStartDate", "")
                                    + attributes.get("ScheduledProcedureStepStartTime", "")))
    answer = _entered(txn, call, order, "XO")
    after = _detail(txn, accession)
    audit.record_action(txn, actor=call.principal.name, client=call.client, action="order.edit", subject=accession,
                        before=_state(before), after={**_state(after), "edited": body})
    return {"accession_number": accession, "status": after.status, "previous_status": before.status,
            "order": answer["order"]}


def _operator(action: str, done: str, work: Any) -> Any:
    def act(txn: Transaction, call: Call) -> dict[str, Any]:
        accession = call.params["accession"]
        before = _detail(txn, accession)
        try:
            work(txn, accession, call.body)
        except Rejection as refusal:
            if refusal.problem == Problem.UNKNOWN_KEY:
                raise NotFound(refusal.reason) from None
            raise Conflict(f"order {accession} not {done}: {refusal.reason}", status=before.status) from None
        after = _detail(txn, accession)
        audit.record_action(txn, actor=call.principal.name, client=call.client, action=f"order.{action}",
                            subject=accession,
                            before=_state(before), after={**_state(after), **call.body})
        log.info("order %s %s by %s from %s: %s", accession, done, call.principal.name, call.client,
                 call.body.get("reason", ""))
        return {"accession_number": accession, "status": after.status, "previous_status": before.status,
                "order": order_json(txn, after)}
    return act


def _cancel(txn: Transaction, accession: str, body: dict[str, Any]) -> None:
    operator_cancel(txn, accession, body.get("reason") or "cancelled by the operator")


def _reschedule(txn: Transaction, accession: str, body: dict[str, Any]) -> None:
    if not body.get("start") and not body.get("station_ae_title"):
        raise BadRequest("reschedule needs start and/or station_ae_title", field="body.start")
    _check_dates(body)
    operator_change(txn, accession, body.get("start"), body.get("station_ae_title"),
                    body.get("reason") or "rescheduled by the operator")


OPERATIONS = [
    Operation("POST", "/orders", "createOrder",
              "Create a scheduled order (sites without an HL7 feed, RIS downtime): it is made into the ORM^O01 NW a "
              "RIS would send (MSH-3 SWF_API) and takes the HL7 path: journaled, routed by the rules (station, "
              "mode, destinations), mapped, on the worklist. Send an Idempotency-Key header so that a retry "
              "creates nothing.", "operator", ENTERED, create_order, body=CREATE_BODY, writes=True, errors=(409,)),
    Operation("PATCH", "/orders/{accession}", "editOrder",
              "Change the procedure, modality or start of an order's first step: an ORM^O01 XO through the HL7 "
              "path (refused once the step has started).", "operator", CHANGED, edit_order, parameters=(ACCESSION,),
              body=EDIT_BODY, writes=True, errors=(404, 409)),
    Operation("POST", "/orders/{accession}/cancel", "cancelOrder",
              "Cancel every open step (what `swf cancel` does): reported to the status destinations (ORC-1 OC) "
              "and procedure destinations (CA); 409 once a step has started or completed.", "operator", CHANGED,
              _operator("cancel", "cancelled", _cancel), parameters=(ACCESSION,), body=CANCEL_BODY, writes=True,
              errors=(404, 409)),
    Operation("POST", "/orders/{accession}/reschedule", "rescheduleOrder",
              "Give the open steps a new start and/or station (what `swf reschedule` does): reported as XO; 409 "
              "once a step has started.", "operator", CHANGED, _operator("reschedule", "rescheduled", _reschedule),
              parameters=(ACCESSION,), body=RESCHEDULE_BODY, writes=True, errors=(404, 409)),
]
