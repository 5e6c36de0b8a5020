"""SQL of the ATNA audit trail: the durable queue of audit messages (sent in ``id`` order, deleted once
sent) and the reads of the rows the recorder audits after the fact (domain events, operator actions),
with the cursor of each in ``audit_cursors`` so that every row is audited once, by whichever process
commits next.
"""
from __future__ import annotations

from dataclasses import dataclass

import time

from . import cluster
from .cluster import Lease
from .database import POSTGRES, Transaction
from .timestamps import now_iso

EVENTS, OPERATOR_ACTIONS = "events", "operator_audit"
_TABLES = {EVENTS: "events", OPERATOR_ACTIONS: "operator_audit"}


@dataclass(frozen=True)
class QueuedAudit:
    id: int
    created_at: str
    event: str                 # the event class, for the log ("Query", "Patient Record" ...)
    message: bytes             # the AuditMessage XML


def enqueue(txn: Transaction, event: str, message: bytes) -> None:
    txn.execute("INSERT INTO audit_queue (created_at, event, message) VALUES (?, ?, ?)", (now_iso(), event, message))


def oldest(txn: Transaction, limit: int) -> list[QueuedAudit]:
    """The next messages to send, oldest first."""
    return [QueuedAudit(id, created_at, event, bytes(message)) for id, created_at, event, message in txn.rows(
        "SELECT id, created_at, event, message FROM audit_queue ORDER BY id LIMIT ?", (limit,))]


LEASE = "audit"   # its holder sends the queue (one sender at a time keeps the order, engine/store/cluster.py)


def sent(txn: Transaction, ids: list[int], lease: Lease, lease_seconds: float) -> Lease:
    """Sent: deleted (fenced by ``lease``, which is renewed and returned)."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    if ids:
        txn.execute(f"DELETE FROM audit_queue WHERE id IN ({', '.join('?' for _ in ids)})", ids)
    return renewed


def not_sent(txn: Transaction, first_id: int, error: str, lease: Lease, lease_seconds: float) -> Lease:
    """The head of the queue could not be sent (the repository is unreachable): counted, with why."""
    renewed = cluster.fence(txn, lease, time.time(), lease_seconds)
    txn.execute("UPDATE audit_queue SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error[:500], first_id))
    return renewed


def depth(txn: Transaction) -> tuple[int, str]:
    """Messages waiting and the creation time of the oldest ('' when none wait)."""
    count, first = txn.row("SELECT COUNT(*), MIN(created_at) FROM audit_queue") or (0, None)
    return int(count or 0), first or ""


# -- what the recorder reads after the fact ------------------------------------------------------
def cursor(txn: Transaction, source: str) -> int:
    """The last row of ``source`` audited; a source never read starts at its newest row (the past before
    the audit trail was configured is not sent)."""
    # On PostgreSQL the cursor row is locked until the commit: two instances' writers audit each row once.
    locking = " FOR UPDATE" if txn.dialect is POSTGRES else ""
    row = txn.row(f"SELECT last_id FROM audit_cursors WHERE source = ?{locking}", (source,))
    if row is not None:
        return int(row[0])
    newest = txn.row(f"SELECT COALESCE(MAX(id), 0) FROM {_TABLES[source]}")
    last = int(newest[0]) if newest else 0
    txn.execute("INSERT INTO audit_cursors (source, last_id) VALUES (?, ?)", (source, last))
    return last


def advance(txn: Transaction, source: str, last_id: int) -> None:
    txn.execute("UPDATE audit_cursors SET last_id = ? WHERE source = ?", (last_id, source))


def rows_waiting(txn: Transaction) -> bool:
    """Whether a domain event or operator action past its cursor waits (e.g. written by ``swf``)."""
    for source, table in _TABLES.items():
        row = txn.row("SELECT last_id FROM audit_cursors WHERE source = ?", (source,))
        if row is not None and txn.row(f"SELECT id FROM {table} WHERE id > ? LIMIT 1", (row[0],)) is not None:
            return True
    return False


@dataclass(frozen=True)
class EventFacts:
    """A domain event with what its audit message names: the message that caused it, the patient, the
    order's studies, and for MPPS events the performed step."""

    id: int
    at: str
    kind: str
    subject: str
    detail: str
    peer: str
    sending_application: str
    sending_facility: str
    control_id: str
    patient_id: str
    issuer: str
    studies: tuple[tuple[str, str], ...]       # (Study Instance UID, accession number) of the order
    mpps_uid: str = ""
    mpps_calling_ae: str = ""


def events_after(txn: Transaction, after_id: int, limit: int = 1000) -> list[EventFacts]:
    rows = txn.rows(
        "SELECT e.id, e.at, e.kind, e.subject, e.detail, e.order_ref, COALESCE(j.peer, ''),"
        " COALESCE(j.sending_application, ''), COALESCE(j.sending_facility, ''), COALESCE(j.control_id, ''),"
        " COALESCE(p.patient_id, ''), COALESCE(p.issuer, '') FROM events e"
        " LEFT JOIN journal j ON j.id = e.journal_ref LEFT JOIN orders o ON o.id = e.order_ref"
        " LEFT JOIN patients p ON p.id = o.patient_ref WHERE e.id > ? ORDER BY e.id LIMIT ?", (after_id, limit))
    orders = sorted({row[5] for row in rows if row[5] is not None})
    studies: dict[int, list[tuple[str, str]]] = {}
    if orders:
        for order_ref, uid, accession in txn.rows(
                "SELECT order_ref, study_instance_uid, accession_number FROM requested_procedures"
                f" WHERE order_ref IN ({', '.join('?' for _ in orders)}) ORDER BY id", orders):
            studies.setdefault(order_ref, []).append((uid, accession))
    found = []
    for id, at, kind, subject, detail, order_ref, peer, application, facility, control_id, patient_id, issuer in rows:
        mpps_uid = mpps_calling = ""
        if kind.startswith("mpps.") and order_ref is not None:
            step = txn.row(
                "SELECT p.sop_instance_uid, p.calling_ae_title FROM performed_steps p"
                " JOIN performed_step_links l ON l.performed_step_ref = p.id JOIN scheduled_steps s ON s.id = l.step_ref"
                " JOIN requested_procedures r ON r.id = s.requested_procedure_ref WHERE r.order_ref = ?"
                " ORDER BY p.updated_at DESC, p.id DESC LIMIT 1", (order_ref,))
            if step is not None:
                mpps_uid, mpps_calling = step
        found.append(EventFacts(id, at, kind, subject, detail, peer, application, facility, control_id, patient_id,
                                issuer, tuple(studies.get(order_ref, ())), mpps_uid, mpps_calling))
    return found


@dataclass(frozen=True)
class ActionFacts:
    """An operator action (``operator_audit``) with the patient and studies of the accession it names."""

    id: int
    at: str
    actor: str
    client: str
    action: str
    subject: str
    patient_id: str = ""
    issuer: str = ""
    studies: tuple[tuple[str, str], ...] = ()


def actions_after(txn: Transaction, after_id: int, limit: int = 1000) -> list[ActionFacts]:
    found = []
    for id, at, actor, client, action, subject in txn.rows(
            "SELECT id, at, actor, client, action, subject FROM operator_audit WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit)):
        found.append(ActionFacts(id, at, actor, client, action, subject))
    return found


def outbox_subject(txn: Transaction, outbox_id: str) -> tuple[str, str, str, str, tuple[tuple[str, str], ...]]:
    """(destination, accession, patient ID, issuer, studies) of an outbox message, for an Export message."""
    row = txn.row("SELECT o.destination, o.accession_number FROM outbox o WHERE o.id = ?",
                  (int(outbox_id) if outbox_id.isdigit() else -1,))
    if row is None:
        return "", "", "", "", ()
    destination, accession = row
    found = txn.rows(
        "SELECT r.study_instance_uid, r.accession_number, p.patient_id, p.issuer FROM requested_procedures r"
        " JOIN orders o ON o.id = r.order_ref JOIN patients p ON p.id = o.patient_ref WHERE r.accession_number = ?",
        (accession,))
    if not found:
        return destination, accession, "", "", ()
    return destination, accession, found[0][2], found[0][3], tuple((uid, number) for uid, number, _, _ in found)


def forward_subject(txn: Transaction, forward_id: str) -> tuple[str, str, str, str]:
    """(destination, SOP Class UID, Study Instance UID, patient ID) of a DICOM forward, for an Export message."""
    row = txn.row("SELECT f.destination, COALESCE(i.sop_class_uid, ''), COALESCE(i.study_instance_uid, ''),"
                  " COALESCE(i.patient_id, '') FROM dicom_forwards f LEFT JOIN instances i"
                  " ON i.sop_instance_uid = f.sop_instance_uid WHERE f.id = ?",
                  (int(forward_id) if forward_id.isdigit() else -1,))
    return tuple(row) if row is not None else ("", "", "", "")   # type: ignore[return-value]
