"""SQL of the HTTP API's filtered, paged listings and of the detail the CLI views do not show.

Every listing has one stable order (by row id) and pages with a cursor: the id of the last row of the
previous page.  ``limit + 1`` rows are read so a page knows whether another follows without a count.
The records are the operator views' own (store/reports.py) where one fits; the rest are defined here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from ..domain.matching_keys import normalise_name
from ..domain.status import FINAL_STATUSES, OPEN_STATUSES, StepStatus
from .database import Transaction
from .reports import (ForwardEntry, JournalEntry, OrderOverview, OutboxEntry, PatientKey, PerformedStepOverview,
                      order_overviews, performed_step_overviews)
from .json_columns import loads
from .where import Where

Record = TypeVar("Record")


@dataclass(frozen=True)
class Page(Generic[Record]):
    """One page of a listing and the cursor of the next (None on the last page)."""

    items: tuple[Record, ...]
    next_cursor: int | None


def _page(rows: list[Record], limit: int) -> Page[Record]:
    more = len(rows) > limit
    items = tuple(rows[:limit])
    return Page(items, getattr(items[-1], "id") if more and items else None)


def up_to(prefix: str) -> str:
    """The bound B of ``column < B`` that holds for every ASCII value up to ``prefix``, those beginning with
    it included (2026-06-02 takes in that whole day), as the text order of stamps and dates is their time
    order.  A plain comparison, unlike substr(), lets the column's index bound the range."""
    return prefix + "\uffff"


def _literal(text: str) -> str:
    """``text`` inside a LIKE pattern, its own %, _ and \\ taken literally (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere."""
    return f"%{_literal(text)}%"


# -- orders ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderFilter:
    """What ``GET /api/v1/orders`` narrows by; None (or "") leaves a criterion out."""

    status: str | None = None              # the derived order status: SC, IP, CM, DC, CA
    modality: str | None = None
    station_ae_title: str | None = None
    scheduled_from: str | None = None      # YYYYMMDD[HHMM[SS]]: a step starting at or after it
    scheduled_to: str | None = None        # YYYYMMDD[HHMM[SS]]: a step starting up to it (its prefix included)
    patient_id: str | None = None
    accession_number: str | None = None
    placer_order_number: str | None = None
    filler_order_number: str | None = None


def _in(statuses: frozenset[StepStatus]) -> str:
    return "(" + ", ".join(f"'{status.value}'" for status in sorted(statuses)) + ")"


def _a_step(condition: str) -> str:
    return ("EXISTS (SELECT 1 FROM scheduled_steps s JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
            f" WHERE r.order_ref = o.id AND {condition})")


def _orders_with_a_step(condition: str) -> str:
    """The orders having a step that meets ``condition``, read from the steps' indexes: a rare value then
    costs its few rows, not a look at every order."""
    return ("o.id IN (SELECT r.order_ref FROM scheduled_steps s JOIN requested_procedures r"
            f" ON r.id = s.requested_procedure_ref WHERE {condition})")


# The order status of domain/status.order_status as conditions on the order's steps (each an indexed
# lookup per order, so a filtered page costs what it reads, not a pass over every order's steps).
_NOT_OPEN, _NOT_FINAL = f"s.status NOT IN {_in(OPEN_STATUSES)}", f"s.status NOT IN {_in(FINAL_STATUSES)}"
_ALL_FINAL = f"{_a_step('1 = 1')} AND NOT {_a_step(_NOT_FINAL)}"
_COMPLETED = f"s.status IN {_in(frozenset({StepStatus.COMPLETED}))}"
_DISCONTINUED = f"s.status IN {_in(frozenset({StepStatus.DISCONTINUED}))}"
_CANCELED = f"s.status IN {_in(frozenset({StepStatus.CANCELED}))}"
_STATUS_CONDITION = {
    "SC": f"NOT {_a_step(_NOT_OPEN)}",
    "CM": f"{_orders_with_a_step(_COMPLETED)} AND {_ALL_FINAL}",
    "DC": f"{_orders_with_a_step(_DISCONTINUED)} AND {_ALL_FINAL} AND NOT {_a_step(_COMPLETED)}",
    "CA": f"{_orders_with_a_step(_CANCELED)} AND {_ALL_FINAL} AND NOT {_a_step(_COMPLETED)}"
          f" AND NOT {_a_step(_DISCONTINUED)}",
    "IP": f"{_a_step(_NOT_OPEN)} AND {_a_step(_NOT_FINAL)}",
}
ORDER_STATUSES = tuple(_STATUS_CONDITION)
_RARE = 2000   # steps: fewer match a step filter, and the orders are read from the steps' index


def order_page(txn: Transaction, filters: OrderFilter, limit: int, before_id: int | None) -> Page[OrderOverview]:
    """Orders matching every given criterion, newest first (by id); the step criteria (modality, station,
    scheduled range) must hold for one and the same step."""
    where = Where()
    if filters.status:
        where.add(_STATUS_CONDITION[filters.status])
    where.equal(("p.patient_id", filters.patient_id), ("o.placer_order_number", filters.placer_order_number),
                ("o.filler_order_number", filters.filler_order_number))
    where.when("o.id IN (SELECT r.order_ref FROM requested_procedures r WHERE r.accession_number = ?)",
               filters.accession_number)
    step = Where()
    step.equal(("s.modality", filters.modality), ("s.station_ae_title", filters.station_ae_title))
    step.when("s.start_datetime >= ?", filters.scheduled_from)
    if filters.scheduled_to:
        step.add("s.start_datetime <> '' AND s.start_datetime < ?", up_to(filters.scheduled_to))
    if step.conditions:
        # A common value (CT) is found soonest walking the orders newest first; a rare one (NM) from the
        # steps' index.  Which it is, a count of at most _RARE steps says.
        condition = step.joined
        common = txn.row(f"SELECT COUNT(*) FROM (SELECT 1 FROM scheduled_steps s WHERE {condition} LIMIT ?) c",
                         [*step.params, _RARE])[0] >= _RARE
        where.add(_a_step(condition) if common else _orders_with_a_step(condition), *step.params)
    where.when("o.id < ?", before_id)
    rows = txn.rows(
        "SELECT o.id, o.placer_order_number, o.filler_order_number, o.updated_at, p.patient_id, p.attributes"
        f" FROM orders o JOIN patients p ON p.id = o.patient_ref{where.clause}"
        " ORDER BY o.id DESC LIMIT ?", [*where.params, limit + 1])
    return _page(order_overviews(txn, rows), limit)


@dataclass(frozen=True)
class OrderPerformedStep:
    """An MPPS linked to one of the order's steps."""

    sop_instance_uid: str
    status: str
    pps_id: str
    performed_station_ae_title: str
    updated_at: str


@dataclass(frozen=True)
class StoredSeries:
    """A series of instances stored for one of the order's requested procedures."""

    study_instance_uid: str
    series_instance_uid: str
    modality: str
    instances: int
    size_bytes: int
    last_received_at: str


@dataclass(frozen=True)
class OrderCommitment:
    """A storage commitment request naming instances of the order, and how many of those it committed."""

    transaction_uid: str
    calling_ae_title: str
    requested_at: str
    status: str
    references: int                # instances of this order the request named
    committed: int
    failed: int


@dataclass(frozen=True)
class OrderDicomSide:
    performed_steps: tuple[OrderPerformedStep, ...]
    series: tuple[StoredSeries, ...]
    commitments: tuple[OrderCommitment, ...]


def order_dicom_side(txn: Transaction, order_ref: int) -> OrderDicomSide:
    """The MPPS, stored series and storage commitment outcome of one order.

    Commitment requests are found among those made since the order's first instance was received
    (a request names instances, not orders: its references are matched here, in the request's JSON)."""
    performed = tuple(OrderPerformedStep(*row) for row in txn.rows(
        "SELECT p.sop_instance_uid, p.status, p.pps_id, p.performed_station_ae_title, p.updated_at"
        " FROM performed_steps p WHERE p.id IN (SELECT l.performed_step_ref FROM performed_step_links l"
        " JOIN scheduled_steps s ON s.id = l.step_ref JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
        " WHERE r.order_ref = ?) ORDER BY p.id", (order_ref,)))
    series = tuple(StoredSeries(study, series_uid, modality, count, int(size or 0), last)
                   for study, series_uid, modality, count, size, last in txn.rows(
                       "SELECT i.study_instance_uid, i.series_instance_uid, MIN(i.modality), COUNT(*),"
                       " SUM(i.size_bytes), MAX(i.received_at) FROM instances i JOIN requested_procedures r"
                       " ON r.id = i.requested_procedure_ref WHERE r.order_ref = ?"
                       " GROUP BY i.study_instance_uid, i.series_instance_uid ORDER BY MIN(i.id)", (order_ref,)))
    instances = {uid for (uid,) in txn.rows(
        "SELECT i.sop_instance_uid FROM instances i JOIN requested_procedures r ON r.id = i.requested_procedure_ref"
        " WHERE r.order_ref = ?", (order_ref,))}
    commitments = []
    if instances:
        first = min(item.last_received_at for item in series)[:10]   # the day, so clock offsets do not matter
        for uid, calling, requested_at, status, request, result in txn.rows(
                "SELECT transaction_uid, calling_ae_title, requested_at, status, request, result FROM commitments"
                " WHERE requested_at >= ? ORDER BY id", (first,)):
            named = {ref["sop_instance_uid"] for ref in loads(request).get("references", [])} & instances
            if named:
                outcome = loads(result)
                commitments.append(OrderCommitment(
                    uid, calling, requested_at, status, len(named),
                    sum(1 for entry in outcome.get("committed", []) if entry["sop_instance_uid"] in named),
                    sum(1 for entry in outcome.get("failed", []) if entry["sop_instance_uid"] in named)))
    return OrderDicomSide(performed, series, tuple(commitments))


# -- patients ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientFilter:
    patient_id: str | None = None          # the patient's ID, or one of its other identifiers
    issuer: str | None = None
    name: str | None = None                # a PN with * and ? wildcards, matched upper-cased and accent-folded
    birth_date: str | None = None          # YYYYMMDD


@dataclass(frozen=True)
class PatientOverview:
    id: int
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    merged_into: PatientKey | None
    updated_at: str


def name_pattern(name: str) -> str:
    """A LIKE pattern of a PN with DICOM wildcards (* any run, ? one character), normalised as stored."""
    return _literal(normalise_name(name)).replace("*", "%").replace("?", "_")


def patient_page(txn: Transaction, filters: PatientFilter, limit: int, before_id: int | None) -> \
        Page[PatientOverview]:
    """Patients matching every given criterion, newest first (by id)."""
    where = Where()
    if filters.patient_id:
        where.add("(p.patient_id = ? OR p.id IN (SELECT patient_ref FROM patient_identifiers WHERE patient_id = ?))",
                  filters.patient_id, filters.patient_id)
    where.equal(("p.issuer", filters.issuer), ("p.birth_date", filters.birth_date))
    if filters.name:
        where.add("p.name_norm LIKE ? ESCAPE '\\'", name_pattern(filters.name))
    where.when("p.id < ?", before_id)
    return _page([PatientOverview(id, patient_id, issuer, loads(attributes).get("PatientName", ""), birth_date, sex,
                                  None if merged_id is None else PatientKey(merged_id, merged_issuer), updated_at)
                  for id, patient_id, issuer, attributes, birth_date, sex, merged_id, merged_issuer, updated_at
                  in txn.rows("SELECT p.id, p.patient_id, p.issuer, p.attributes, p.birth_date, p.sex, m.patient_id,"
                              " m.issuer, p.updated_at FROM patients p LEFT JOIN patients m ON m.id = p.merged_into"
                              f"{where.clause} ORDER BY p.id DESC LIMIT ?", [*where.params, limit + 1])], limit)


# -- performed procedure steps (MPPS) ----------------------------------------------------------------
def mpps_page(txn: Transaction, status: str | None, station: str | None, unscheduled: bool | None, limit: int,
              before_id: int | None) -> Page[PerformedStepOverview]:
    """Performed steps with the given status, performed station and (un)scheduled state, newest first."""
    where = Where()
    where.equal(("status", status), ("performed_station_ae_title", station))
    if unscheduled is not None:
        where.add("unscheduled = ?", 1 if unscheduled else 0)
    where.when("id < ?", before_id)
    return _page(performed_step_overviews(txn, txn.rows(
        "SELECT id, sop_instance_uid, status, pps_id, performed_station_ae_title, unscheduled, updated_at"
        f" FROM performed_steps{where.clause} ORDER BY id DESC LIMIT ?", [*where.params, limit + 1])), limit)


# -- journal -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JournalFilter:
    control_id: str | None = None
    accession_number: str | None = None    # messages recorded in the history of an order with it
    patient_id: str | None = None          # messages recorded in the patient's history or in one of its orders'
    sending_application: str | None = None  # MSH-3
    sending_facility: str | None = None    # MSH-4
    message_code: str | None = None        # e.g. ORM^O01
    status: str | None = None
    received_from: str | None = None       # ISO date or date-time: received at or after it
    received_to: str | None = None         # ISO date or date-time: received up to it (its prefix included)
    reason: str | None = None              # text anywhere in the reason


@dataclass(frozen=True)
class JournalSearchEntry(JournalEntry):
    sending_application: str
    sending_facility: str


_JOURNAL_COLUMNS = ("j.id, j.received_at, j.peer, j.control_id, j.message_code, j.status, j.ack_code, j.reason,"
                    " j.sending_application, j.sending_facility")


REASON_SCAN_ROWS = 200_000   # journal rows one page of a free-text reason search reads at most


def journal_page(txn: Transaction, filters: JournalFilter, limit: int, before_id: int | None) -> \
        Page[JournalSearchEntry]:
    """Journal entries matching every given criterion, newest first (by id).

    A reason search is a LIKE no index can serve, so one page reads at most REASON_SCAN_ROWS rows below
    the cursor: when they hold fewer matches than ``limit``, the page ends there and its next_cursor goes on
    below them (a page may then hold no item and still have a next_cursor)."""
    where = Where()
    where.equal(("j.control_id", filters.control_id), ("j.sending_application", filters.sending_application),
                ("j.sending_facility", filters.sending_facility), ("j.message_code", filters.message_code),
                ("j.status", filters.status))
    where.when("j.received_at >= ?", filters.received_from)
    if filters.received_to:
        where.add("j.received_at < ?", up_to(filters.received_to))
    scan_floor = None
    if filters.reason:
        where.add("j.reason LIKE ? ESCAPE '\\'", _like(filters.reason))
        top = before_id if before_id is not None else (txn.row("SELECT MAX(id) FROM journal")[0] or 0) + 1
        if top - REASON_SCAN_ROWS > 1:
            scan_floor = top - REASON_SCAN_ROWS
            where.add("j.id >= ?", scan_floor)
    where.when("j.id IN (SELECT h.journal_ref FROM order_history h JOIN requested_procedures r"
               " ON r.order_ref = h.order_ref WHERE r.accession_number = ?)", filters.accession_number)
    if filters.patient_id:
        where.add("(j.id IN (SELECT h.journal_ref FROM patient_history h JOIN patients p ON p.id = h.patient_ref"
                  " WHERE p.patient_id = ?) OR j.id IN (SELECT h.journal_ref FROM order_history h JOIN orders o"
                  " ON o.id = h.order_ref JOIN patients p ON p.id = o.patient_ref WHERE p.patient_id = ?))",
                  filters.patient_id, filters.patient_id)
    where.when("j.id < ?", before_id)
    page = _page([JournalSearchEntry(*row) for row in txn.rows(
        f"SELECT {_JOURNAL_COLUMNS} FROM journal j{where.clause} ORDER BY j.id DESC LIMIT ?",
        [*where.params, limit + 1])], limit)
    if page.next_cursor is None and scan_floor is not None:
        return Page(page.items, scan_floor)   # older rows not read yet
    return page


@dataclass(frozen=True)
class JournalRecord(JournalSearchEntry):
    """One journal entry with the bytes received and answered and what the message named."""

    hl7_version: str
    raw: bytes
    ack: bytes | None
    rule: str


def journal_record(txn: Transaction, journal_id: int) -> JournalRecord | None:
    row = txn.row(f"SELECT {_JOURNAL_COLUMNS}, j.hl7_version, j.raw, j.ack, j.rule FROM journal j WHERE j.id = ?",
                  (journal_id,))
    if row is None:
        return None
    *head, version, raw, ack, rule = row
    return JournalRecord(*head, version, bytes(raw), None if ack is None else bytes(ack), rule)


# -- delivery queues ---------------------------------------------------------------------------------
QUEUE_STATUSES = {"outbox": ("pending", "dead", "delivered", "discarded"),
                  "forwards": ("pending", "dead", "delivered", "discarded")}


def outbox_page(txn: Transaction, status: str | None, limit: int, after_id: int | None) -> Page[OutboxEntry]:
    """Outbox messages with ``status`` (every one when None), oldest first (by id)."""
    where = _queue_where(status, after_id)
    return _page([OutboxEntry(*row) for row in txn.rows(
        "SELECT id, destination, kind, control_id, accession_number, status, attempts, last_error"
        f" FROM outbox{where.clause} ORDER BY id LIMIT ?", [*where.params, limit + 1])], limit)


def forward_page(txn: Transaction, status: str | None, limit: int, after_id: int | None) -> Page[ForwardEntry]:
    """DICOM forwards with ``status`` (every one when None), oldest first (by id)."""
    where = _queue_where(status, after_id)
    return _page([ForwardEntry(*row) for row in txn.rows(
        "SELECT id, destination, kind, sop_instance_uid, status, attempts, last_error"
        f" FROM dicom_forwards{where.clause} ORDER BY id LIMIT ?", [*where.params, limit + 1])], limit)


def _queue_where(status: str | None, after_id: int | None) -> Where:
    where = Where()
    where.when("status = ?", status)
    where.when("id > ?", after_id)
    return where


@dataclass(frozen=True)
class OutboxRecord(OutboxEntry):
    """One outbox message with its bytes, the last answer and its timing."""

    created_at: str
    next_attempt_at: float           # epoch seconds; 0 = at once
    delivered_at: str
    rejections: int
    message: bytes
    ack: bytes | None


def outbox_record(txn: Transaction, message_id: int) -> OutboxRecord | None:
    row = txn.row("SELECT id, destination, kind, control_id, accession_number, status, attempts, last_error,"
                  " created_at, next_attempt_at, delivered_at, rejections, message, ack FROM outbox WHERE id = ?",
                  (message_id,))
    if row is None:
        return None
    *head, message, ack = row
    return OutboxRecord(*head, bytes(message), None if ack is None else bytes(ack))


@dataclass(frozen=True)
class ForwardRecord(ForwardEntry):
    created_at: str
    next_attempt_at: float


def forward_record(txn: Transaction, forward_id: int) -> ForwardRecord | None:
    row = txn.row("SELECT id, destination, kind, sop_instance_uid, status, attempts, last_error, created_at,"
                  " next_attempt_at FROM dicom_forwards WHERE id = ?", (forward_id,))
    return None if row is None else ForwardRecord(*row)
