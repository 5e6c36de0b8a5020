"""SQL of what one journaled HL7 message changed: the order and patient history rows it wrote (each
names the message in ``journal_ref``), the domain events it recorded, the outbox messages those events
queued, and the copies of it an operator resent (``outbox.journal_ref``).  Every lookup is by an
indexed journal_ref / event_ref (migration 8), so it stays quick on a journal of millions of rows.

And the one write of a resend: the copy queued behind the destination's pending messages."""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction


@dataclass(frozen=True)
class OrderChange:
    """An order history row the message wrote (created, changed, cancelled, no station ...)."""

    at: str
    kind: str
    detail: str
    placer_order_number: str
    filler_order_number: str
    accession_numbers: tuple[str, ...]


@dataclass(frozen=True)
class PatientChange:
    """A patient history row the message wrote (created, updated, merge ...)."""

    at: str
    kind: str
    detail: str
    patient_id: str
    issuer: str


@dataclass(frozen=True)
class RecordedEvent:
    """A domain event the message recorded; ``dispatched`` once turned into outbox messages."""

    id: int
    kind: str
    subject: str
    detail: str
    dispatched: bool


@dataclass(frozen=True)
class QueuedMessage:
    """An outbox message queued because of the message: by one of its events, or as a resent copy."""

    id: int
    destination: str
    kind: str
    control_id: str
    accession_number: str
    status: str
    event_ref: int | None          # the event that queued it; None for a resent copy


@dataclass(frozen=True)
class JournalEffects:
    orders: tuple[OrderChange, ...]
    patients: tuple[PatientChange, ...]
    events: tuple[RecordedEvent, ...]
    outbox: tuple[QueuedMessage, ...]


def journal_effects(txn: Transaction, journal_id: int) -> JournalEffects:
    """Everything the message with this journal id wrote, oldest first."""
    rows = txn.rows("SELECT h.at, h.kind, h.detail, o.placer_order_number, o.filler_order_number, o.id"
                    " FROM order_history h JOIN orders o ON o.id = h.order_ref WHERE h.journal_ref = ? ORDER BY h.id",
                    (journal_id,))
    accessions: dict[int, list[str]] = {}
    order_refs = sorted({row[5] for row in rows})
    if order_refs:
        for order_ref, accession in txn.rows(
                "SELECT order_ref, accession_number FROM requested_procedures WHERE order_ref IN"
                f" ({', '.join('?' for _ in order_refs)}) ORDER BY id", order_refs):
            accessions.setdefault(order_ref, []).append(accession)
    orders = [OrderChange(at, kind, detail, placer, filler, tuple(accessions.get(order_ref, ())))
              for at, kind, detail, placer, filler, order_ref in rows]
    patients = [PatientChange(*row) for row in txn.rows(
        "SELECT h.at, h.kind, h.detail, p.patient_id, p.issuer FROM patient_history h"
        " JOIN patients p ON p.id = h.patient_ref WHERE h.journal_ref = ? ORDER BY h.id", (journal_id,))]
    events = [RecordedEvent(id, kind, subject, detail, bool(dispatched)) for id, kind, subject, detail, dispatched
              in txn.rows("SELECT id, kind, subject, detail, dispatched FROM events WHERE journal_ref = ?"
                          " ORDER BY id", (journal_id,))]
    columns = "id, destination, kind, control_id, accession_number, status, event_ref"
    queued = {row[0]: row for row in txn.rows(   # two reads, not an OR (or a sorted UNION): each uses its index
        f"SELECT {columns} FROM outbox WHERE event_ref IN (SELECT id FROM events WHERE journal_ref = ?)",
        (journal_id,))}
    queued.update((row[0], row) for row in txn.rows(f"SELECT {columns} FROM outbox WHERE journal_ref = ?",
                                                    (journal_id,)))
    outbox = [QueuedMessage(*queued[id]) for id in sorted(queued)]
    return JournalEffects(tuple(orders), tuple(patients), tuple(events), tuple(outbox))


def enqueue_resent(txn: Transaction, *, destination: str, at: str, journal_ref: int, control_id: str,
                   accession_number: str, message: bytes) -> int:
    """A journal message queued again for ``destination``: behind its pending messages (delivery is in id
    order), kind ``journal.resend``; returns the outbox id."""
    return txn.insert(
        "INSERT INTO outbox (destination, created_at, event_ref, journal_ref, kind, control_id, accession_number,"
        " message, status) VALUES (?, ?, NULL, ?, 'journal.resend', ?, ?, ?, 'pending')",
        (destination, at, journal_ref, control_id, accession_number, message))
