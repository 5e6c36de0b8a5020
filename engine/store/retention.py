"""SQL of retention (issue 16): rows older than their configured age are deleted, one bounded batch per
call, so that each batch is one short write transaction and the writer is never held for long.

What each purge keeps, and what happens to the rows referencing a purged journal entry:

- journal: kept while it is still ``processing``, while its key in ``journal_keys`` is inside the
  duplicate-detection window (a resend must still be answered with its first ACK), and while an outbox
  message that is not delivered yet (pending, dead) was resent from it.  When it goes, its expired key
  goes too (a later resend of that control ID is new), and ``journal_ref`` of the order and patient
  history, the domain events and the delivered outbox rows is set to NULL: those rows stay, they only
  lose the link to the raw message.
- outbox: delivered messages (by ``delivered_at``) and discarded ones (by ``created_at``); pending and
  dead messages are never purged (they wait for delivery or for an operator).
- order and patient history: by ``at``; nothing references them.
- operator audit (the operator actions, ``operator_audit``): by ``at``, and once the ATNA recorder has
  read them (``audit_cursors``), never past its cursor.  The ATNA queue deletes its rows when sent.
"""
from __future__ import annotations

from .database import Transaction

JOURNAL, OUTBOX, ORDER_HISTORY, PATIENT_HISTORY, OPERATOR_AUDIT = (
    "journal", "outbox", "order_history", "patient_history", "operator_audit")
_REFERENCING_JOURNAL = ("order_history", "patient_history", "events", "outbox")


def _marks(ids: list[int]) -> str:
    return ", ".join("?" for _ in ids)


def purge_journal(txn: Transaction, received_before: str, window_start: str, limit: int) -> int:
    """Delete at most ``limit`` journal entries received before ``received_before`` (and not kept, see the
    module's docstring; ``window_start``: the start of the duplicate-detection window).  How many."""
    ids = [id for id, in txn.rows(
        "SELECT j.id FROM journal j WHERE j.received_at < ? AND j.status <> 'processing'"
        " AND NOT EXISTS (SELECT 1 FROM journal_keys k WHERE k.journal_ref = j.id AND k.received_at >= ?)"
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.journal_ref = j.id AND o.status IN ('pending', 'dead'))"
        " ORDER BY j.received_at, j.id LIMIT ?", (received_before, window_start, limit))]
    if not ids:
        return 0
    txn.execute(f"DELETE FROM journal_keys WHERE journal_ref IN ({_marks(ids)})", ids)
    for table in _REFERENCING_JOURNAL:
        txn.execute(f"UPDATE {table} SET journal_ref = NULL WHERE journal_ref IN ({_marks(ids)})", ids)
    return txn.execute(f"DELETE FROM journal WHERE id IN ({_marks(ids)})", ids).rowcount


def purge_outbox(txn: Transaction, finished_before: str, limit: int) -> int:
    """Delete at most ``limit`` outbox messages delivered (or discarded) before ``finished_before``."""
    ids = [id for id, in txn.rows(
        "SELECT id FROM outbox WHERE status = 'delivered' AND delivered_at < ? ORDER BY delivered_at LIMIT ?",
        (finished_before, limit))]
    if len(ids) < limit:
        ids += [id for id, in txn.rows(
            "SELECT id FROM outbox WHERE status = 'discarded' AND created_at < ? ORDER BY id LIMIT ?",
            (finished_before, limit - len(ids)))]
    if not ids:
        return 0
    return txn.execute(f"DELETE FROM outbox WHERE id IN ({_marks(ids)})", ids).rowcount


def purge_history(txn: Transaction, table: str, before: str, limit: int) -> int:
    """Delete at most ``limit`` rows of ``table`` (order_history or patient_history) written before ``before``."""
    if table not in (ORDER_HISTORY, PATIENT_HISTORY):
        raise ValueError(f"not a history table: {table}")
    ids = [id for id, in txn.rows(f"SELECT id FROM {table} WHERE at < ? ORDER BY at LIMIT ?", (before, limit))]
    if not ids:
        return 0
    return txn.execute(f"DELETE FROM {table} WHERE id IN ({_marks(ids)})", ids).rowcount


def purge_operator_audit(txn: Transaction, before: str, limit: int) -> int:
    """Delete at most ``limit`` operator actions written before ``before`` that the ATNA recorder has read
    (all of them when it never ran)."""
    cursor = txn.row("SELECT last_id FROM audit_cursors WHERE source = 'operator_audit'")
    if cursor is None:
        rows = txn.rows("SELECT id FROM operator_audit WHERE at < ? ORDER BY at LIMIT ?", (before, limit))
    else:
        rows = txn.rows("SELECT id FROM operator_audit WHERE at < ? AND id <= ? ORDER BY at LIMIT ?",
                        (before, int(cursor[0]), limit))
    ids = [id for id, in rows]
    if not ids:
        return 0
    return txn.execute(f"DELETE FROM operator_audit WHERE id IN ({_marks(ids)})", ids).rowcount
