"""SQL of storage commitment (RAD-10, SWF.md section 7): the requests, the instances and orders they
reference, their results and the queue of N-EVENT-REPORTs.

The workflow (engine/workflow/commitment.py) decides; this module only reads and writes the
``commitments`` table (and reads ``instances``), inside the transaction it is given, and returns frozen
records.  The ``request`` and ``result`` JSON columns are encoded and decoded here only.

``next_attempt_at`` is UTC ISO-8601 text (``utc_iso``), compared as text on both databases: the time a
pending request is evaluated, the time a report is due, or the lease of a report being delivered.

The report queue follows engine/store/queues.py: ``reports_due`` lists what is due (to group it per
requester), ``claim_reports`` is the one claim, and a claimed report ends in ``report_delivered``,
``reschedule_report`` (failed, retried later) or ``report_dead``, each handed the record the claim
returned.  With several engines on one database (issue 15) a requester's reports are delivered by the
one instance holding its lease ``commitment:<AE title>`` (``report_lease``, engine/store/cluster.py), so
they go out in request order; the claim and every completion are fenced by that lease's generation
(``StaleLease`` when another instance took it over; the fence renews the lease, which is returned).  The
claim also moves a report's ``next_attempt_at`` to the claim's end only if it is still the value listed,
and every completion checks that value too: a sender whose claim ran out and whose report was claimed
again cannot record its outcome over the new claim's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable

from . import cluster
from .cluster import Lease
from .database import Transaction
from .json_columns import dumps, loads

PENDING, REPORTING, DELIVERED, DEAD = "pending", "reporting", "delivered", "dead"
ACTIVE = (PENDING, REPORTING)
_IN_CHUNK = 500   # UIDs per IN (...) list


def utc_iso(moment: datetime) -> str:
    """How ``next_attempt_at`` is stored: UTC, ms precision (sorts as text)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(text: str) -> datetime:
    """A stored timestamp (``requested_at``: local with offset; ``next_attempt_at``: UTC) as an aware datetime."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class CommitmentReference:
    """One Referenced SOP Sequence item of an N-ACTION."""

    sop_class_uid: str
    sop_instance_uid: str

    def as_dict(self) -> dict[str, str]:
        return {"sop_class_uid": self.sop_class_uid, "sop_instance_uid": self.sop_instance_uid}


@dataclass(frozen=True)
class PendingRequest:
    """A stored request still waiting for its evaluation (status ``pending``)."""

    id: int
    transaction_uid: str
    calling_ae_title: str
    requested_at: str
    references: tuple[CommitmentReference, ...]
    unreadable: str = ""    # why the stored references cannot be read ("" when they can): fails every one


@dataclass(frozen=True)
class IndexedInstance:
    """What a commitment check needs of an ``instances`` row."""

    sop_instance_uid: str
    sop_class_uid: str
    path: str               # relative to the storage directory (absolute in old rows)
    requested_procedure_ref: int | None


@dataclass(frozen=True)
class LinkedOrder:
    """A requested procedure a referenced instance is linked to."""

    accession_number: str
    order_ref: int


@dataclass(frozen=True)
class PendingReport:
    """An evaluated request whose N-EVENT-REPORT is due or being delivered (status ``reporting``)."""

    id: int
    transaction_uid: str
    calling_ae_title: str
    requested_at: str
    attempts: int
    next_attempt_at: str    # UTC ISO-8601; after a claim, the end of its lease
    result: dict[str, Any]  # event_type, evaluated_at, committed [...], failed [...] (with failure_reason, why)
    received_by: str = ""   # the instance whose listener took the N-ACTION ("" before migration 17)


@dataclass(frozen=True)
class ReportAttempts:
    """A report's delivery count as it stands, read when an attempt failed."""

    requested_at: str
    attempts: int


@dataclass(frozen=True)
class GivenUpReport:
    """A report just parked as dead."""

    transaction_uid: str
    calling_ae_title: str


# -- requests ------------------------------------------------------------------------------------
def active_request(txn: Transaction, transaction_uid: str) -> int | None:
    """The id of the oldest request with this Transaction UID not yet closed (pending or reporting)."""
    row = txn.row("SELECT id FROM commitments WHERE transaction_uid = ? AND status IN (?, ?) ORDER BY id LIMIT 1",
                  (transaction_uid, *ACTIVE))
    return None if row is None else row[0]


def add_request(txn: Transaction, *, transaction_uid: str, calling_ae_title: str,
                references: Iterable[CommitmentReference], peer: str, duplicate_of: int | None, at: str,
                due: datetime, received_by: str = "") -> int:
    """A new pending request, to be evaluated from ``due``; its id (``received_by``: the instance that
    holds its N-ACTION's association)."""
    body: dict[str, Any] = {"references": [r.as_dict() for r in references], "peer": peer}
    if duplicate_of is not None:
        body["duplicate_of"] = duplicate_of
    return txn.insert(
        "INSERT INTO commitments (transaction_uid, calling_ae_title, requested_at, status, request, next_attempt_at,"
        " updated_at, received_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (transaction_uid, calling_ae_title, at, PENDING, dumps(body), utc_iso(due), at, received_by))


def _request(id: int, transaction_uid: str, calling_ae_title: str, requested_at: str,
             request: str | None) -> PendingRequest:
    try:
        references = tuple(CommitmentReference(r["sop_class_uid"], r["sop_instance_uid"])
                           for r in loads(request)["references"])
    except (ValueError, KeyError, TypeError) as exc:
        return PendingRequest(id, transaction_uid, calling_ae_title, requested_at, (),
                                 unreadable=f"stored request unreadable: {exc!r}")
    return PendingRequest(id, transaction_uid, calling_ae_title, requested_at, references)


def pending_due(txn: Transaction, now: datetime, limit: int = 100) -> list[PendingRequest]:
    """The pending requests whose evaluation is due, oldest first."""
    return [_request(*row) for row in txn.rows(
        "SELECT id, transaction_uid, calling_ae_title, requested_at, request FROM commitments"
        " WHERE status = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?", (PENDING, utc_iso(now), limit))]


def reschedule_pending(txn: Transaction, commitment_id: int, at: datetime) -> None:
    """Look at a pending request again at ``at`` (a referenced instance is still on its way)."""
    txn.execute("UPDATE commitments SET next_attempt_at = ? WHERE id = ? AND status = ?",
                (utc_iso(at), commitment_id, PENDING))


# -- what the references point at ----------------------------------------------------------------
def _chunks(sop_instance_uids: Iterable[str]) -> Iterable[tuple[list[str], str]]:
    unique = list(dict.fromkeys(sop_instance_uids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start:start + _IN_CHUNK]
        yield chunk, ", ".join("?" for _ in chunk)


def studies_of(txn: Transaction, sop_instance_uids: Iterable[str]) -> list[str]:
    """The Study Instance UIDs of the indexed instances among these SOP Instance UIDs, sorted."""
    studies: set[str] = set()
    for chunk, marks in _chunks(sop_instance_uids):
        studies.update(row[0] for row in txn.rows(
            f"SELECT DISTINCT study_instance_uid FROM instances WHERE sop_instance_uid IN ({marks})", chunk))
    return sorted(studies)


def indexed_instances(txn: Transaction, sop_instance_uids: Iterable[str]) -> dict[str, IndexedInstance]:
    """The indexed instances of these SOP Instance UIDs, by UID (those not stored are absent)."""
    found: dict[str, IndexedInstance] = {}
    for chunk, marks in _chunks(sop_instance_uids):
        for row in txn.rows("SELECT sop_instance_uid, sop_class_uid, path, requested_procedure_ref FROM instances"
                            f" WHERE sop_instance_uid IN ({marks})", chunk):
            found[row[0]] = IndexedInstance(*row)
    return found


def linked_orders(txn: Transaction, sop_instance_uids: Iterable[str]) -> list[LinkedOrder]:
    """The requested procedures the instances are linked to, by accession number and order."""
    linked: set[LinkedOrder] = set()
    for chunk, marks in _chunks(sop_instance_uids):
        linked.update(LinkedOrder(*row) for row in txn.rows(
            "SELECT DISTINCT r.accession_number, r.order_ref FROM instances i"
            " JOIN requested_procedures r ON r.id = i.requested_procedure_ref"
            f" WHERE i.sop_instance_uid IN ({marks})", chunk))
    return sorted(linked, key=lambda link: (link.accession_number, link.order_ref))


# -- results: the report queue -------------------------------------------------------------------
def enqueue_report(txn: Transaction, commitment_id: int, result: dict[str, Any], due: datetime,
                   at: str) -> str | None:
    """Store the result of a pending request and make its report due at ``due`` (status ``reporting``);
    the requester's AE title, or None when the request was no longer pending (another evaluator got
    there first)."""
    changed = txn.execute(
        "UPDATE commitments SET status = ?, result = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = ?",
        (REPORTING, dumps(result), utc_iso(due), at, commitment_id, PENDING)).rowcount
    if changed != 1:
        return None
    return txn.row("SELECT calling_ae_title FROM commitments WHERE id = ?", (commitment_id,))[0]


def reports_due(txn: Transaction, now: datetime, limit: int = 100) -> list[PendingReport]:
    """The reports due at ``now``, oldest first (not yet claimed)."""
    return [PendingReport(id, transaction_uid, calling, requested_at, attempts, next_attempt_at,
                          loads(result), received_by)
            for id, transaction_uid, calling, requested_at, attempts, next_attempt_at, result, received_by
            in txn.rows(
                "SELECT id, transaction_uid, calling_ae_title, requested_at, attempts, next_attempt_at, result,"
                " received_by FROM commitments WHERE status = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (REPORTING, utc_iso(now), limit))]


def report_lease(calling_ae_title: str) -> str:
    """The name of the lease whose holder delivers the reports to requester ``calling_ae_title``."""
    return f"commitment:{calling_ae_title}"


def claim_reports(txn: Transaction, reports: Iterable[PendingReport], claim_until: datetime, lease: Lease,
                  lease_seconds: float) -> tuple[list[PendingReport], Lease]:
    """Take listed reports of one requester for one delivery attempt, under its lease (fenced, renewed and
    returned): each one's next attempt moves to ``claim_until`` so that no other sender picks it up
    meanwhile; those still as listed are returned, with their claim."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    until = utc_iso(claim_until)
    return [replace(report, next_attempt_at=until) for report in reports if txn.execute(
        "UPDATE commitments SET next_attempt_at = ? WHERE id = ? AND status = ? AND next_attempt_at = ?",
        (until, report.id, REPORTING, report.next_attempt_at)).rowcount == 1], renewed


def report_delivered(txn: Transaction, report: PendingReport, at: str, lease: Lease, lease_seconds: float) -> Lease:
    """The requester acknowledged the report: the transaction is closed (fenced by ``lease``)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE commitments SET status = ?, attempts = attempts + 1, last_error = '', next_attempt_at = '',"
                " updated_at = ? WHERE id = ? AND status = ? AND next_attempt_at = ?",
                (DELIVERED, at, report.id, REPORTING, report.next_attempt_at))
    return renewed


def report_attempts(txn: Transaction, report: PendingReport) -> ReportAttempts | None:
    """When the report's request came and how often delivery was tried; None when it is no longer reporting."""
    row = txn.row("SELECT requested_at, attempts FROM commitments WHERE id = ? AND status = ? AND next_attempt_at = ?",
                  (report.id, REPORTING, report.next_attempt_at))
    return None if row is None else ReportAttempts(*row)


def reschedule_report(txn: Transaction, report: PendingReport, *, attempts: int, error: str, next_attempt: datetime,
                      at: str, lease: Lease, lease_seconds: float) -> Lease:
    """A failed delivery attempt: counted, with its error, and the next one due at ``next_attempt`` (fenced
    by ``lease``)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE commitments SET attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ?"
                " WHERE id = ?", (attempts, error, utc_iso(next_attempt), at, report.id))
    return renewed


def report_dead(txn: Transaction, report: PendingReport, reason: str, *, attempted: bool, at: str, lease: Lease,
                lease_seconds: float) -> GivenUpReport | None:
    """Park a report that will not be delivered, with the reason (``attempted``: this attempt counts; fenced
    by ``lease``); None when it was no longer reporting."""
    cluster.fence(txn, lease, time.time(), lease_seconds)
    row = txn.row("SELECT transaction_uid, calling_ae_title FROM commitments WHERE id = ?", (report.id,))
    changed = txn.execute(
        "UPDATE commitments SET status = ?, attempts = attempts + ?, last_error = ?, next_attempt_at = '',"
        " updated_at = ? WHERE id = ? AND status = ? AND next_attempt_at = ?",
        (DEAD, 1 if attempted else 0, reason, at, report.id, REPORTING, report.next_attempt_at)).rowcount
    return GivenUpReport(*row) if changed and row else None


def next_due(txn: Transaction) -> datetime | None:
    """When the earliest pending evaluation or report is due (None: nothing to do)."""
    row = txn.row("SELECT MIN(next_attempt_at) FROM commitments WHERE status IN (?, ?)", ACTIVE)
    return parse_time(row[0]) if row and row[0] else None
