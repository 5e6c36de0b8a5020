"""SQL of the HL7 message journal: every received frame is a row before its effects run (SWF.md 8.2),
finished with its status and ACK in the same transaction; the duplicate check reads it back."""
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


def processed(txn: Transaction, sending_application: str, sending_facility: str, control_id: str,
              since: str) -> ProcessedEntry | None:
    """The first processed entry with this key received after ``since`` (failed and duplicate ones do not count)."""
    row = txn.row(
        "SELECT id, payload_hash, ack, ack_code, status FROM journal WHERE sending_application = ?"
        " AND sending_facility = ? AND control_id = ? AND status NOT IN ('failed', 'duplicate', 'processing')"
        " AND received_at >= ? ORDER BY id LIMIT 1", (sending_application, sending_facility, control_id, since))
    return None if row is None else ProcessedEntry(*row)
