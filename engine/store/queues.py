"""SQL of the engine's delivery queues: domain events, the outbox (HL7 to destinations, SWF.md 8.6) and
the DICOM forwards (instances and MPPS to downstream AEs).

Every function takes the transaction and returns frozen records.  Each queue has one function that
claims work (``claim_outbox``, ``claim_forwards``) and one per way a piece of work ends
(``outbox_delivered`` / ``outbox_failed``, ``forward_delivered`` / ``forward_failed``), and a completion
is handed the record its claim returned.  Several engines may share one PostgreSQL database (issue 15):
a destination's queue is delivered by the one instance holding its lease (engine/store/cluster.py), so
the claim reads the pending head in order in a read transaction (no write per message), and every
completion is fenced: it runs only while the deliverer still holds the lease generation it claimed
under (``StaleLease`` otherwise) and renews that lease in the same transaction, returning it.  Events
are taken for dispatch with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two instances' writers never
turn one event into two outbox messages.
"""
from __future__ import annotations

from dataclasses import dataclass

import time

from . import cluster
from .cluster import Lease
from .database import POSTGRES, Transaction
from .timestamps import now_iso


# -- domain events ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DomainEvent:
    """An event (order.scheduled, mpps.completed ...) not yet turned into outbox messages."""

    id: int
    kind: str
    subject: str                       # accession number, or "patient_id^issuer" for patient.* events
    detail: str
    order_ref: int | None
    destinations: tuple[str, ...]      # named by the rules for the message that caused it
    order_outbound: tuple[str, ...]    # where its order reports to (orders.outbound)


def record_event(txn: Transaction, kind: str, subject: str, detail: str, order_ref: int | None = None,
                 journal_ref: int | None = None, destinations: tuple[str, ...] | list[str] = ()) -> None:
    """Keep a domain event (order.scheduled, mpps.completed ...) for the outbound side to turn into messages.

    ``destinations`` are those the rules named for the message that caused it; without them the event
    goes where its order reports to (``orders.outbound``).  The outbox is filled before the same commit.
    """
    txn.execute("INSERT INTO events (at, kind, subject, detail, order_ref, journal_ref, destinations)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now_iso(), kind, subject, detail, order_ref, journal_ref, " ".join(destinations)))


def undispatched_events(txn: Transaction) -> list[DomainEvent]:
    """Every event not yet dispatched, oldest first, with its order's destinations (one statement).

    On PostgreSQL the events are locked until the commit that marks them dispatched, and those another
    instance's writer holds are skipped (it dispatches them)."""
    locking = " FOR UPDATE OF e SKIP LOCKED" if txn.dialect is POSTGRES else ""
    return [DomainEvent(id, kind, subject, detail, order_ref, tuple(destinations.split()),
                        tuple((order_outbound or "").split()))
            for id, kind, subject, detail, order_ref, destinations, order_outbound in txn.rows(
                "SELECT e.id, e.kind, e.subject, e.detail, e.order_ref, e.destinations, o.outbound FROM events e"
                f" LEFT JOIN orders o ON o.id = e.order_ref WHERE e.dispatched = 0 ORDER BY e.id{locking}")]


def undispatched_event_waiting(txn: Transaction) -> bool:
    """Whether some event (e.g. recorded by ``swf cancel`` in another process) waits for dispatch."""
    return txn.row("SELECT id FROM events WHERE dispatched = 0 LIMIT 1") is not None


def mark_dispatched(txn: Transaction, events: list[DomainEvent]) -> None:
    if events:
        txn.execute(f"UPDATE events SET dispatched = 1 WHERE id IN ({', '.join('?' for _ in events)})",
                    [event.id for event in events])


# -- outbox ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxMessage:
    id: int
    destination: str
    kind: str
    control_id: str
    accession_number: str
    message: bytes
    attempts: int
    rejections: int                    # AE/CE answers so far
    next_attempt_at: float             # epoch seconds
    created_at: str


def enqueue_outbox(txn: Transaction, *, destination: str, at: str, event_ref: int | None, kind: str, control_id: str,
                   accession_number: str, message: bytes) -> None:
    txn.execute(
        "INSERT INTO outbox (destination, created_at, event_ref, kind, control_id, accession_number, message,"
        " status) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
        (destination, at, event_ref, kind, control_id, accession_number, message))


def park_unbuildable(txn: Transaction, *, destination: str, at: str, event_ref: int, kind: str,
                     accession_number: str, reason: str) -> None:
    """A message that could not be built: kept as dead with the reason, for the operator to see."""
    txn.execute(
        "INSERT INTO outbox (destination, created_at, event_ref, kind, control_id, accession_number, message,"
        " status, last_error) VALUES (?, ?, ?, ?, '', ?, ?, 'dead', ?)",
        (destination, at, event_ref, kind, accession_number, b"", reason))


def claim_outbox(txn: Transaction, destination: str) -> OutboxMessage | None:
    """The destination's oldest pending message (delivery is in order, one in flight); due or not."""
    row = txn.row("SELECT id, destination, kind, control_id, accession_number, message, attempts, rejections,"
                  " next_attempt_at, created_at FROM outbox WHERE destination = ? AND status = 'pending'"
                  " ORDER BY id LIMIT 1", (destination,))
    if row is None:
        return None
    id, destination, kind, control_id, accession, message, attempts, rejections, next_attempt_at, created_at = row
    return OutboxMessage(id, destination, kind, control_id, accession, bytes(message), attempts, rejections,
                         next_attempt_at, created_at)


def outbox_lease(destination: str) -> str:
    """The name of the lease whose holder delivers ``destination``'s outbox."""
    return f"outbox:{destination}"


def outbox_delivered(txn: Transaction, message: OutboxMessage, ack: bytes, at: str, lease: Lease,
                     lease_seconds: float) -> Lease:
    """Delivered (fenced by ``lease``, which is renewed and returned)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE outbox SET status = 'delivered', attempts = attempts + 1, ack = ?, delivered_at = ?,"
                " last_error = '' WHERE id = ?", (ack, at, message.id))
    return renewed


def outbox_failed(txn: Transaction, message: OutboxMessage, *, attempts: int, rejections: int, dead: bool,
                  next_attempt_at: float, reason: str, ack: bytes | None, lease: Lease, lease_seconds: float) -> Lease:
    """Not delivered: pending again from ``next_attempt_at``, or parked as dead (fenced by ``lease``)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE outbox SET status = ?, attempts = ?, rejections = ?, next_attempt_at = ?, last_error = ?,"
                " ack = ? WHERE id = ?",
                ("dead" if dead else "pending", attempts, rejections, next_attempt_at, reason, ack, message.id))
    return renewed


def resend_outbox(txn: Transaction, message_id: int) -> bool:
    """Queue a dead, discarded or pending message again from scratch; False when there is no such message."""
    return txn.execute("UPDATE outbox SET status = 'pending', attempts = 0, rejections = 0, next_attempt_at = 0,"
                       " last_error = '' WHERE id = ? AND status IN ('dead', 'discarded', 'pending')",
                       (message_id,)).rowcount > 0


def discard_outbox(txn: Transaction, message_id: int) -> bool:
    """Give up a pending or dead message; False when there is no such message."""
    return txn.execute("UPDATE outbox SET status = 'discarded' WHERE id = ? AND status IN ('pending', 'dead')",
                       (message_id,)).rowcount > 0


# -- DICOM forwards --------------------------------------------------------------------------------
# kind: (source table, its SOP Instance UID, the watermark counter: the newest source id already queued)
_FORWARD_SOURCES = {
    "store": ("instances", "sop_instance_uid", "forward:instances"),
    "mpps": ("performed_step_versions", "(SELECT sop_instance_uid FROM performed_steps p"
                                        " WHERE p.id = performed_step_ref)", "forward:mpps"),
}
FORWARD_KINDS = tuple(_FORWARD_SOURCES)


@dataclass(frozen=True)
class ForwardSource:
    """A received instance ("store") or MPPS version ("mpps") committed after the kind's watermark."""

    source_ref: int
    sop_instance_uid: str


@dataclass(frozen=True)
class ForwardTask:
    id: int
    destination: str
    kind: str                          # "store" (C-STORE of an instance) or "mpps" (N-CREATE / N-SET)
    source_ref: int                    # instances.id or performed_step_versions.id
    sop_instance_uid: str
    created_at: str
    attempts: int
    next_attempt_at: float             # epoch seconds


@dataclass(frozen=True)
class ForwardedInstance:
    sop_class_uid: str
    path: str                          # relative to the storage directory


def start_forward_watermark(txn: Transaction, kind: str) -> None:
    """Forward from now on, not the archive's history: a kind without a watermark gets its newest source."""
    table, _uid, counter = _FORWARD_SOURCES[kind]
    if forward_watermark(txn, kind) is None:
        latest = txn.row(f"SELECT MAX(id) FROM {table}")
        txn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (counter, (latest or (None,))[0] or 0))


def forward_watermark(txn: Transaction, kind: str) -> int | None:
    """The newest source id of ``kind`` already queued; None before forwarding of it was started."""
    row = txn.row("SELECT value FROM counters WHERE name = ?", (_FORWARD_SOURCES[kind][2],))
    return None if row is None else row[0]


def forward_sources_after(txn: Transaction, kind: str, watermark: int) -> list[ForwardSource]:
    table, uid, _counter = _FORWARD_SOURCES[kind]
    return [ForwardSource(*row) for row in txn.rows(f"SELECT id, {uid} FROM {table} WHERE id > ? ORDER BY id",
                                                    (watermark,))]


def advance_forward_watermark(txn: Transaction, kind: str, source_ref: int) -> None:
    txn.execute("UPDATE counters SET value = ? WHERE name = ?", (source_ref, _FORWARD_SOURCES[kind][2]))


def enqueue_forward(txn: Transaction, *, destination: str, kind: str, source: ForwardSource, at: str) -> None:
    txn.execute("INSERT INTO dicom_forwards (destination, kind, source_ref, sop_instance_uid, created_at, status)"
                " VALUES (?, ?, ?, ?, ?, 'pending')", (destination, kind, source.source_ref, source.sop_instance_uid, at))


def claim_forwards(txn: Transaction, destination: str, limit: int = 50) -> list[ForwardTask]:
    """The destination's oldest pending forwards, in order (the head decides when the round is due)."""
    return [ForwardTask(*row) for row in txn.rows(
        "SELECT id, destination, kind, source_ref, sop_instance_uid, created_at, attempts, next_attempt_at"
        " FROM dicom_forwards WHERE destination = ? AND status = 'pending' ORDER BY id LIMIT ?", (destination, limit))]


def forwarded_instance(txn: Transaction, instance_ref: int) -> ForwardedInstance | None:
    """The stored file a "store" forward sends; None when the instance is gone."""
    row = txn.row("SELECT sop_class_uid, path FROM instances WHERE id = ?", (instance_ref,))
    return None if row is None else ForwardedInstance(*row)


def forward_lease(destination: str) -> str:
    """The name of the lease whose holder forwards to ``destination``."""
    return f"forward:{destination}"


def forward_delivered(txn: Transaction, task: ForwardTask, lease: Lease, lease_seconds: float) -> Lease:
    """Forwarded (fenced by ``lease``, which is renewed and returned)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE dicom_forwards SET status = 'delivered', attempts = attempts + 1, last_error = '' WHERE id = ?",
                (task.id,))
    return renewed


def forward_failed(txn: Transaction, task: ForwardTask, *, attempts: int, dead: bool, next_attempt_at: float,
                   reason: str, lease: Lease, lease_seconds: float) -> Lease:
    """Not delivered: pending again from ``next_attempt_at``, or parked as dead (fenced by ``lease``)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE dicom_forwards SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                ("dead" if dead else "pending", attempts, next_attempt_at, reason, task.id))
    return renewed


def resend_forward(txn: Transaction, forward_id: int) -> bool:
    """Queue a dead, discarded or pending forward again from scratch; False when there is no such forward."""
    return txn.execute("UPDATE dicom_forwards SET status = 'pending', attempts = 0, next_attempt_at = 0,"
                       " last_error = '' WHERE id = ? AND status IN ('dead', 'discarded', 'pending')",
                       (forward_id,)).rowcount > 0


def discard_forward(txn: Transaction, forward_id: int) -> bool:
    """Give up a pending or dead forward; False when there is no such forward."""
    return txn.execute("UPDATE dicom_forwards SET status = 'discarded' WHERE id = ? AND status IN ('pending', 'dead')",
                       (forward_id,)).rowcount > 0
