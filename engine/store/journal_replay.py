"""SQL of reading the journal back in pages: the received messages of a time range, oldest first, for a rules
dry-run (engine/rules/dry_run.py) that must not hold a million raw messages, nor one long read transaction.

Pages are keyed by journal id (``after_id``), not by offset, so each page costs the same however deep into the
journal it is; the time range is looked up once on the ``received_at`` index as an id range.  ``received_at``
is local time with its offset (``2026-12-07T13:05:01.123+01:00``): the bounds are compared as text, so they
must be written the same way (``engine.rules.dry_run.journal_time`` does).
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .reports import JournalHead
from .where import Where


@dataclass(frozen=True)
class JournalRange:
    """The journal ids of the messages received in a time range (both ends included), and how many."""

    first_id: int
    last_id: int
    messages: int


@dataclass(frozen=True)
class ReplayedMessage(JournalHead):
    """A journaled message as received, with what the engine did with it then."""

    rule: str              # names of the rules that matched when it was received
    raw: bytes


def journal_range(txn: Transaction, since: str, until: str) -> JournalRange | None:
    """The messages received from ``since`` up to (not including) ``until``; "" = no bound. None: none."""
    where = _time_bounds(since, until)
    first, last, count = txn.rows(f"SELECT MIN(id), MAX(id), COUNT(*) FROM journal{where.clause}", where.params)[0]
    return None if not count else JournalRange(first, last, count)


def journal_page(txn: Transaction, span: JournalRange, since: str, until: str, after_id: int,
                 limit: int) -> list[ReplayedMessage]:
    """Up to ``limit`` messages of the range with an id above ``after_id``, in id order."""
    where = _time_bounds(since, until)
    where.add("id > ? AND id <= ?", max(after_id, span.first_id - 1), span.last_id)
    return [ReplayedMessage(id, received_at, peer, control_id, message_code, status, rule, bytes(raw))
            for id, received_at, peer, control_id, message_code, status, rule, raw in txn.rows(
                "SELECT id, received_at, peer, control_id, message_code, status, rule, raw FROM journal"
                f"{where.clause} ORDER BY id LIMIT ?", [*where.params, limit])]


def _time_bounds(since: str, until: str) -> Where:
    where = Where()
    where.when("received_at >= ?", since)
    where.when("received_at < ?", until)
    return where
