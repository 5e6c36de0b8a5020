"""What the health page counts in the database: journal rows by status, steps no modality is offered."""
from __future__ import annotations

from typing import Any

from ..domain.status import StepStatus
from .database import Transaction


def health_counts(txn: Transaction) -> dict[str, Any]:
    """One snapshot for /health (a scan of the journal: run it off the reactor thread)."""
    journal = {row["status"]: row["n"] for row in
               txn.query("SELECT status, COUNT(*) AS n FROM journal GROUP BY status")}
    without_station = txn.one("SELECT COUNT(*) AS n FROM scheduled_steps WHERE status = ? AND station_ae_title = ''",
                              (StepStatus.SCHEDULED.value,))
    return {"journal": journal, "steps_without_station": without_station["n"] if without_station else 0}


def database_reachable(txn: Transaction) -> bool:
    """A read the database must answer, of a table (for /ready): raises the store's error when it cannot."""
    return txn.row("SELECT MAX(version) FROM schema_version") is not None
