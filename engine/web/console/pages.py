"""What each console page shows, read in one transaction off the reactor thread (store functions only),
and the operator actions, each written with its audit row in one transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from ...domain.principal import Principal
from ...store import audit, dashboard, health, listings, reports
from ...store.database import Transaction
from ...workflow.orders import operator_cancel, operator_change
from ..api import operations
from ..api.declaration import Call
from ..api.journal import segment_table

CHART_MINUTES = 60
PAGE_ROWS = 50
QUEUE_OPERATIONS = {(queue, action): f"{action}{one}" for queue, one in (("outbox", "OutboxMessage"),
                                                                          ("forwards", "Forward"))
                    for action in ("resend", "discard")}
_HANDLERS = {operation.operation_id: operation.handler for operation in operations()}


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
    return {"messages": listings.journal_page(txn, filters, PAGE_ROWS, None).items}


def message_page(txn: Transaction, journal_id: int) -> dict[str, Any] | None:
    record = listings.journal_record(txn, journal_id)
    return None if record is None else {"message": record, "fields": segment_table(record.raw, record.hl7_version)}


def queues_page(txn: Transaction, status: str) -> dict[str, Any]:
    chosen = None if status == "all" else status
    return {"outbox": listings.outbox_page(txn, chosen, PAGE_ROWS, None).items,
            "forwards": listings.forward_page(txn, chosen, PAGE_ROWS, None).items, "status": status}


def audit_page(txn: Transaction) -> dict[str, Any]:
    return {"entries": audit.audit_entries(txn, limit=PAGE_ROWS * 2)}


# -- operator actions (write transactions) ---------------------------------------------------------------
def queue_action(queue: str, action: str, row_id: int, principal: Principal, client: str,
                 reason: str) -> Callable[[Transaction], Any]:
    """The API's own resend/discard handler (its checks, its audit row), called with the console's user."""
    handler = _HANDLERS[QUEUE_OPERATIONS[(queue, action)]]
    body = {"reason": reason} if reason else {}
    return lambda txn: handler(txn, Call({"id": row_id}, body, principal, client))


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
