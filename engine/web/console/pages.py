"""What each console page shows, read in one transaction off the reactor thread (store functions only),
and the operator actions, each written with its audit row in one transaction."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from ...cluster import liveness
from ...config import ClusterConfig
from ...domain.principal import Principal
from ...store import audit, cluster, dashboard, health, journal_effects, listings, reports
from ...store.database import Transaction
from ...workflow.orders import operator_cancel, operator_change
from ..api import operations
from ..api.common import hl7_text
from ..api.context import EngineContext
from ..api.declaration import Call
from ..api.journal import message_profile, segment_table
from ..api.resource import request_hash, run_once

CHART_MINUTES = 60
PAGE_ROWS = 50
QUEUE_OPERATIONS = {(queue, action): f"{action}{one}" for queue, one in (("outbox", "OutboxMessage"),
                                                                          ("forwards", "Forward"))
                    for action in ("resend", "discard")}
OPERATIONS = {operation.operation_id: operation for operation in operations()}
_HANDLERS = {operation_id: operation.handler for operation_id, operation in OPERATIONS.items()}


@dataclass(frozen=True)
class Bar:
    """One minute of the messages chart, laid out for the inline SVG."""

    x: int
    height: int
    minute: str
    messages: int


def _since(minutes: int) -> str:
    return (datetime.now().astimezone() - timedelta(minutes=minutes)).isoformat(timespec="milliseconds")


def chart_bars(counts: list[dashboard.MinuteCount], now: datetime, height: int = 100) -> list[Bar]:
    """The last ``CHART_MINUTES`` minutes, one bar each (empty minutes too), scaled to the busiest one."""
    by_minute = {count.minute: count.messages for count in counts}
    peak = max(by_minute.values(), default=0) or 1
    bars = []
    for index in range(CHART_MINUTES):
        minute = (now - timedelta(minutes=CHART_MINUTES - 1 - index)).strftime("%Y-%m-%dT%H:%M")
        messages = by_minute.get(minute, 0)
        bars.append(Bar(index * 10, round(messages * height / peak), minute, messages))
    return bars


def dashboard_page(txn: Transaction) -> dict[str, Any]:
    since = _since(CHART_MINUTES)
    return {"figures": health.health_figures(txn),
            "bars": chart_bars(dashboard.messages_per_minute(txn, since), datetime.now()),
            "ack_codes": dashboard.ack_codes(txn, since), "errors": dashboard.recent_errors(txn, 10)}


def worklist_page(txn: Transaction, query: dict[str, str]) -> dict[str, Any]:
    today = datetime.now().strftime("%Y%m%d")
    scheduled_from = query.get("from") or (None if query.get("all") else today)
    filters = listings.OrderFilter(
        status=query.get("status") or None, modality=query.get("modality") or None,
        station_ae_title=query.get("station") or None, patient_id=query.get("patient_id") or None,
        accession_number=query.get("accession") or None, placer_order_number=None, filler_order_number=None,
        scheduled_from=scheduled_from, scheduled_to=query.get("to") or (None if query.get("all") else today))
    return {"orders": listings.order_page(txn, filters, PAGE_ROWS, None).items, "today": today}


def order_page(txn: Transaction, accession: str) -> dict[str, Any] | None:
    detail = reports.order_detail(txn, accession)
    if detail is None:
        return None
    return {"order": detail, "dicom": listings.order_dicom_side(txn, detail.id)}


def messages_page(txn: Transaction, query: dict[str, str]) -> dict[str, Any]:
    filters = listings.JournalFilter(**{name: query.get(name) or None for name in (
        "control_id", "accession_number", "patient_id", "message_code", "status", "reason")})
    cursor = query.get("cursor", "")
    page = listings.journal_page(txn, filters, PAGE_ROWS, int(cursor) if cursor.isdigit() else None)
    return {"messages": page.items, "next_cursor": page.next_cursor}


def message_page(txn: Transaction, journal_id: int, engine: EngineContext | None) -> dict[str, Any] | None:
    """The message, its fields named as GET /journal/{id} names them, what it changed, where it may go."""
    record = listings.journal_record(txn, journal_id)
    if record is None:
        return None
    profile = message_profile(record.raw, engine)
    destinations = sorted(name for name, destination in engine.rules().destinations.items()
                          if destination.enabled) if engine is not None else []
    return {"message": record, "profile": profile.name if profile else None, "raw_text": hl7_text(record.raw),
            "ack_text": hl7_text(record.ack),
            "fields": segment_table(record.raw, record.hl7_version, profile),
            "changes": journal_effects.journal_effects(txn, journal_id), "destinations": destinations}


def queues_page(txn: Transaction, status: str) -> dict[str, Any]:
    chosen = None if status == "all" else status
    return {"outbox": listings.outbox_page(txn, chosen, PAGE_ROWS, None).items,
            "forwards": listings.forward_page(txn, chosen, PAGE_ROWS, None).items, "status": status}


def cluster_page(txn: Transaction, settings: ClusterConfig) -> dict[str, Any]:
    """The instances on this database with their heartbeat's age and what that says (alive, stale, dead),
    and each lease's holder (issue 15)."""
    view = cluster.overview(txn, time.time())
    ages = [(instance, view.now - instance.heartbeat_at) for instance in view.instances]
    return {"instances": [(instance, age, liveness(age, settings.heartbeat_seconds, settings.lease_seconds))
                          for instance, age in ages],
            "leases": [(lease, lease.expires_at - view.now) for lease in view.leases]}


def audit_page(txn: Transaction) -> dict[str, Any]:
    return {"entries": audit.audit_entries(txn, limit=PAGE_ROWS * 2)}


# -- operator actions (write transactions) ---------------------------------------------------------------
def queue_action(queue: str, action: str, row_id: int, principal: Principal, client: str,
                 reason: str) -> Callable[[Transaction], Any]:
    """The API's own resend/discard handler (its checks, its audit row), called with the console's user."""
    handler = _HANDLERS[QUEUE_OPERATIONS[(queue, action)]]
    body = {"reason": reason} if reason else {}
    return lambda txn: handler(txn, Call({"id": row_id}, body, principal, client))


def api_action(operation_id: str, params: dict[str, Any], body: dict[str, Any], principal: Principal, client: str,
               engine: EngineContext | None, key: str = "") -> Callable[[Transaction], Any]:
    """An API operation's own handler (its checks, its audit row) run as the console's user; with ``key``
    (the form's one-time key) a form posted twice does it once, as an API Idempotency-Key does."""
    operation = OPERATIONS[operation_id]
    call = Call(params, body, principal, client, engine)
    if key:
        hashed = request_hash("POST", f"console/{operation_id}", operation, call)
        return lambda txn: run_once(txn, f"console:{key}", hashed, operation, call)
    return lambda txn: operation.handler(txn, call)


def reschedule(accession: str, start: str | None, station: str | None, reason: str, principal: Principal,
               client: str) -> Callable[[Transaction], Any]:
    """``swf reschedule`` as the console's user: the XO reaches the RIS through the outbox."""
    def work(txn: Transaction) -> None:
        operator_change(txn, accession, start, station, reason)
        audit.record_action(txn, actor=principal.name, client=client, action="order.reschedule", subject=accession,
                            before=None, after={"start": start, "station": station, "reason": reason})
    return work


def cancel(accession: str, reason: str, principal: Principal, client: str) -> Callable[[Transaction], Any]:
    """``swf cancel`` as the console's user: the CA reaches the RIS through the outbox."""
    def work(txn: Transaction) -> None:
        operator_cancel(txn, accession, reason)
        audit.record_action(txn, actor=principal.name, client=client, action="order.cancel", subject=accession,
                            before=None, after={"reason": reason})
    return work


# -- forms -> API bodies (the operation's schema checks them) -------------------------------------------
# form field -> where the API body holds it (the path a 400 names)
CREATE_FORM = {"patient_id": "patient.patient_id", "issuer": "patient.issuer", "patient_name": "patient.name",
               "birth_date": "patient.birth_date", "sex": "patient.sex",
               "placer_order_number": "placer_order_number", "accession_number": "accession_number",
               "procedure_code": "procedure.code", "procedure_description": "procedure.description",
               "coding_scheme": "procedure.coding_scheme", "modality": "modality", "start": "start"}
EDIT_FORM = {name: CREATE_FORM[name] for name in ("procedure_code", "procedure_description", "coding_scheme",
                                                  "modality", "start")}
_REQUIRED = {"patient_id", "patient_name", "placer_order_number", "procedure_code", "modality", "start"}
FORM_LABELS = {"patient_id": "patient ID", "issuer": "issuer", "patient_name": "patient name",
               "birth_date": "birth date", "sex": "sex", "placer_order_number": "placer order number",
               "accession_number": "accession number", "procedure_code": "procedure code",
               "procedure_description": "procedure description", "coding_scheme": "coding scheme",
               "modality": "modality", "start": "start", "destination": "destination"}


def _body(form: dict[str, str], fields: dict[str, str], keep_empty: set[str]) -> dict[str, Any]:
    """The nested API body of the form's non-empty fields (and the required ones, so that the schema
    names a missing one)."""
    body: dict[str, Any] = {}
    for name, path in fields.items():
        value = form.get(name, "")
        if not value and name not in keep_empty:
            continue
        *parents, leaf = path.split(".")
        target = body
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return body


def create_body(form: dict[str, str]) -> dict[str, Any]:
    return _body(form, CREATE_FORM, _REQUIRED)


def edit_body(form: dict[str, str]) -> dict[str, Any]:
    """Only what the operator filled in (a new description or scheme needs the procedure code with it)."""
    return _body(form, EDIT_FORM, set())


def form_label(api_field: str) -> str:
    """The form's label of the body path a 400 names (``body.patient.birth_date`` -> "birth date")."""
    path = api_field.removeprefix("body.")
    for name, where in CREATE_FORM.items():
        if where == path:
            return f"{FORM_LABELS[name]} ({api_field})"
    if path == "procedure":
        return f"procedure code ({api_field}: give the code with a new description or scheme)"
    return FORM_LABELS.get(path, api_field or "form")

