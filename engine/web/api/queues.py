"""The delivery queues (HL7 outbox, DICOM forwards): list, one, resend, discard; and the audit trail.

Resend and discard are operator actions: the change and its audit row are written in one transaction."""
from __future__ import annotations

import logging
from typing import Any, Callable

from ...store import audit, listings, queues, reports
from ...store.database import Transaction
from .common import CURSOR, ID, LIMIT, hl7_text, page_json, text_parameter
from .declaration import Call, Conflict, NotFound, Operation
from .schema import STRING, nullable, obj, page, record_json, record_schema

log = logging.getLogger(__name__)

STATUS = text_parameter("status", "pending (default), dead, delivered, discarded, or all",
                        enum=("pending", "dead", "delivered", "discarded", "all"))
ACTION_BODY = obj({"reason": {**STRING, "maxLength": 500}}, optional=("reason",))
ACTION_ANSWER = obj({"id": {"type": "integer"}, "status": STRING, "previous_status": STRING})
# action: (statuses it may be applied in, the status it leaves)
ACTIONS = {"resend": (("dead", "discarded", "pending"), "pending", "resent"),
           "discard": (("pending", "dead"), "discarded", "discarded")}


def _status(call: Call) -> str | None:
    status = call.params["status"] or "pending"
    return None if status == "all" else status


def list_outbox(txn: Transaction, call: Call) -> dict[str, Any]:
    return page_json(listings.outbox_page(txn, _status(call), call.params["limit"], call.params["cursor"]))


def list_forwards(txn: Transaction, call: Call) -> dict[str, Any]:
    return page_json(listings.forward_page(txn, _status(call), call.params["limit"], call.params["cursor"]))


def show_outbox(txn: Transaction, call: Call) -> dict[str, Any]:
    message = listings.outbox_record(txn, call.params["id"])
    if message is None:
        raise NotFound(f"no outbox message {call.params['id']}")
    return {**record_json(message, omit=("message", "ack")), "message": hl7_text(message.message),
            "ack": hl7_text(message.ack)}


def show_forward(txn: Transaction, call: Call) -> dict[str, Any]:
    forward = listings.forward_record(txn, call.params["id"])
    if forward is None:
        raise NotFound(f"no DICOM forward {call.params['id']}")
    return record_json(forward)


def _action(queue: str, what: str, action: str, read: Callable[[Transaction, int], Any],
            change: Callable[[Transaction, int], bool]) -> Callable[[Transaction, Call], dict[str, Any]]:
    allowed, result, done = ACTIONS[action]

    def act(txn: Transaction, call: Call) -> dict[str, Any]:
        row_id = call.params["id"]
        found = read(txn, row_id)
        if found is None:
            raise NotFound(f"no {what} {row_id}")
        if found.status not in allowed or not change(txn, row_id):
            raise Conflict(f"{what} {row_id} is {found.status}: only {', '.join(allowed)} ones can be {done}",
                           status=found.status)
        audit.record_action(txn, actor=call.principal.name, client=call.client, action=f"{queue}.{action}",
                            subject=str(row_id), before={"status": found.status},
                            after={"status": result, **({"reason": call.body["reason"]}
                                                        if call.body.get("reason") else {})})
        log.info("%s %s %s (was %s) by %s from %s", what, row_id, done, found.status, call.principal.name, call.client)
        return {"id": row_id, "status": result, "previous_status": found.status}
    return act


def list_audit(txn: Transaction, call: Call) -> dict[str, Any]:
    limit = call.params["limit"]
    entries = audit.audit_entries(txn, limit=limit + 1, before_id=call.params["cursor"], actor=call.params["actor"],
                                  action=call.params["action"])
    return page_json(listings.Page(tuple(entries[:limit]), entries[limit - 1].id if len(entries) > limit else None))


def _queue_operations(queue: str, what: str, tag: str, one: str, record: type, omit: tuple[str, ...],
                      extra: dict[str, Any], entry: type, lister: Any, shower: Any, read: Any,
                      resend: Any, discard: Any) -> list[Operation]:
    return [
        Operation("GET", f"/{queue}", f"list{tag}", f"The {what}s with a status (pending by default), oldest first.",
                  "viewer", page(record_schema(entry)), lister, parameters=(STATUS, LIMIT, CURSOR)),
        Operation("GET", f"/{queue}/{{id}}", f"get{one}",
                  f"One {what} with its attempts and last error.", "viewer",
                  record_schema(record, omit=omit, extra=extra), shower, parameters=(ID,), errors=(404,)),
        Operation("POST", f"/{queue}/{{id}}/resend", f"resend{one}",
                  f"Queue a dead, discarded or pending {what} again from scratch (recorded in the audit trail).",
                  "operator", ACTION_ANSWER, _action(queue, what, "resend", read, resend), parameters=(ID,),
                  body=ACTION_BODY, writes=True, errors=(404, 409)),
        Operation("POST", f"/{queue}/{{id}}/discard", f"discard{one}",
                  f"Give up a pending or dead {what} (recorded in the audit trail).", "operator", ACTION_ANSWER,
                  _action(queue, what, "discard", read, discard), parameters=(ID,), body=ACTION_BODY, writes=True,
                  errors=(404, 409)),
    ]


OPERATIONS = [
    *_queue_operations("outbox", "outbox message", "Outbox", "OutboxMessage", listings.OutboxRecord, ("message", "ack"),
                       {"message": STRING, "ack": nullable(STRING)}, reports.OutboxEntry, list_outbox,
                       show_outbox, listings.outbox_record, queues.resend_outbox, queues.discard_outbox),
    *_queue_operations("forwards", "DICOM forward", "Forwards", "Forward", listings.ForwardRecord, (), {},
                       reports.ForwardEntry, list_forwards, show_forward, listings.forward_record,
                       queues.resend_forward, queues.discard_forward),
    Operation("GET", "/audit", "listAudit", "Every operator action (API, console, CLI), newest first.", "viewer",
              page(record_schema(audit.AuditEntry)), list_audit,
              parameters=(text_parameter("actor", "the user (or cli:<os user>) who acted"),
                          text_parameter("action", "e.g. outbox.resend"), LIMIT, CURSOR)),
]
