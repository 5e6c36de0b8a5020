"""SQL of the HL7 message journal: every received frame is a row before its effects run (SWF.md 8.2),
finished with its status and ACK in the same transaction.

The duplicate check is the database's, not a read-then-write: each processed (MSH-3, MSH-4, MSH-10) is
claimed in ``journal_keys`` (its primary key), so two instances on one PostgreSQL receiving the same
message at the same moment cannot both apply it: the second INSERT waits for the first transaction and,
once it has committed, finds the key taken and answers with the first copy's ACK."""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction


@dataclass(frozen=True, slots=True)
class ProcessedEntry:
    """An earlier message with the same key, as the duplicate check compares it."""

    id: int
    payload_hash: str
    ack: bytes | None        # the ACK it was answered with, resent for a duplicate
    ack_code: str
    status: str


def insert(txn: Transaction, *, received_at: str, peer: str, sending_application: str, sending_facility: str,
           control_id: str, message_code: str, hl7_version: str, payload_hash: str, raw: bytes) -> int:
    """A new entry in status 'processing'; returns its id."""
    return txn.insert(
        "INSERT INTO journal (received_at, peer, sending_application, sending_facility, control_id, message_code,"
        " hl7_version, payload_hash, raw, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing')",
        (received_at, peer, sending_application, sending_facility, control_id, message_code, hl7_version,
         payload_hash, raw))


def finish(txn: Transaction, journal_id: int, status: str, ack_code: str, ack: bytes | None, reason: str,
           rule: str) -> None:
    txn.execute("UPDATE journal SET status = ?, ack_code = ?, ack = ?, reason = ?, rule = ? WHERE id = ?",
                (status, ack_code, ack, reason, rule, journal_id))


def claim(txn: Transaction, sending_application: str, sending_facility: str, control_id: str,
          journal_id: int, received_at: str, window_start: str) -> ProcessedEntry | None:
    """Claim the key for ``journal_id``: None when claimed (new, or its holder is older than ``window_start``),
    else the holder, the entry whose ACK a duplicate gets (committed: a concurrent claim waits for it)."""
    key = (sending_application, sending_facility, control_id)
    claimed = txn.execute(
        "INSERT INTO journal_keys (sending_application, sending_facility, control_id, journal_ref, received_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (sending_application, sending_facility, control_id) DO NOTHING",
        (*key, journal_id, received_at))
    if claimed.rowcount == 1:
        return None
    renewed = txn.execute(
        "UPDATE journal_keys SET journal_ref = ?, received_at = ? WHERE sending_application = ?"
        " AND sending_facility = ? AND control_id = ? AND received_at < ?", (journal_id, received_at, *key, window_start))
    if renewed.rowcount == 1:
        return None
    row = txn.row(
        "SELECT j.id, j.payload_hash, j.ack, j.ack_code, j.status FROM journal_keys k JOIN journal j"
        " ON j.id = k.journal_ref WHERE k.sending_application = ? AND k.sending_facility = ? AND k.control_id = ?",
        key)
    return None if row is None else ProcessedEntry(*row)


def release(txn: Transaction, sending_application: str, sending_facility: str, control_id: str,
            journal_id: int) -> None:
    """Give the key up again: a message that failed (an engine fault) is applied when it is resent."""
    txn.execute("DELETE FROM journal_keys WHERE sending_application = ? AND sending_facility = ? AND control_id = ?"
                " AND journal_ref = ?", (sending_application, sending_facility, control_id, journal_id))
