"""The console dashboard's journal figures: messages per minute, ACK codes, the last errors (queue depths
and steps without a station come from store/health.py)."""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .reports import JournalEntry


@dataclass(frozen=True)
class MinuteCount:
    minute: str          # "YYYY-MM-DDTHH:MM" (the journal's local time)
    messages: int


def messages_per_minute(txn: Transaction, since: str) -> list[MinuteCount]:
    """Messages received per minute from ``since`` (an ISO stamp) on, oldest first; empty minutes absent."""
    return [MinuteCount(minute, count) for minute, count in txn.rows(
        "SELECT substr(received_at, 1, 16) AS minute, COUNT(*) FROM journal WHERE received_at >= ?"
        " GROUP BY substr(received_at, 1, 16) ORDER BY minute", [since])]


def ack_codes(txn: Transaction, since: str) -> dict[str, int]:
    """ACK code -> messages answered with it from ``since`` on."""
    return {code or "-": count for code, count in txn.rows(
        "SELECT ack_code, COUNT(*) FROM journal WHERE received_at >= ? GROUP BY ack_code ORDER BY ack_code", [since])}


def recent_errors(txn: Transaction, limit: int) -> list[JournalEntry]:
    """The newest journal entries not answered AA, newest first."""
    return [JournalEntry(*row) for row in txn.rows(
        "SELECT id, received_at, peer, control_id, message_code, status, ack_code, reason FROM journal"
        " WHERE ack_code <> 'AA' ORDER BY id DESC LIMIT ?", [limit])]
