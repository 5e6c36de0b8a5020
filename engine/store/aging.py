"""SQL of the worklist age-out (issue 16): the steps still SCHEDULED long after their scheduled start, and
the mark that takes a step out of the worklist without changing its status (``age_out.mode: remove``)."""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .timestamps import now_iso


@dataclass(frozen=True, slots=True)
class DueStep:
    """A scheduled step past the age-out limit, with what the history and the log name."""

    id: int
    sps_id: str
    status: str
    start_datetime: str        # sortable "YYYYMMDDHHMMSS.ffffff", the scheduled start
    order_ref: int
    accession_number: str


def due_steps(txn: Transaction, scheduled_before: str, limit: int) -> list[DueStep]:
    """Steps still SCHEDULED, not yet aged out, whose scheduled start is before ``scheduled_before``
    (sortable form); steps without a start are never due.  Oldest first, at most ``limit``."""
    return [DueStep(*row) for row in txn.rows(
        "SELECT s.id, s.sps_id, s.status, s.start_datetime, r.order_ref, r.accession_number FROM scheduled_steps s"
        " JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
        " WHERE s.start_datetime <> '' AND s.start_datetime < ? AND s.status = 'SCHEDULED' AND s.aged_out_at = ''"
        " ORDER BY s.start_datetime, s.id LIMIT ?", (scheduled_before, limit))]


def mark_aged_out(txn: Transaction, step_ref: int) -> None:
    """Take the step out of the worklist (every MWL query filters on ``aged_out_at``); its status stays."""
    stamp = now_iso()
    txn.execute("UPDATE scheduled_steps SET aged_out_at = ?, updated_at = ? WHERE id = ?", (stamp, stamp, step_ref))
