"""What /health and /metrics count in the database: journal rows by status, steps no modality is offered,
and the depth and oldest item of every delivery queue per destination."""
from __future__ import annotations

from dataclasses import dataclass

from ..domain.status import StepStatus
from .database import Transaction


@dataclass(frozen=True)
class QueueFigure:
    """Waiting or given-up work of one queue for one destination."""

    queue: str                 # outbox, forwards, commitment_reports
    destination: str           # outbox destination name, forward AE, or the AE a commitment report goes to
    status: str                # pending, dead
    count: int
    oldest_at: str             # ISO time the oldest of them was queued


@dataclass(frozen=True)
class HealthFigures:
    journal: dict[str, int]                    # status -> rows
    steps_without_station: int
    queues: tuple[QueueFigure, ...]


# (queue name, table, destination column, queued-at column, status column value -> reported status)
_QUEUES = (
    ("outbox", "outbox", "destination", "created_at", {"pending": "pending", "dead": "dead"}),
    ("forwards", "dicom_forwards", "destination", "created_at", {"pending": "pending", "dead": "dead"}),
    ("commitment_reports", "commitments", "calling_ae_title", "requested_at", {"reporting": "pending", "dead": "dead"}),
)


def health_figures(txn: Transaction) -> HealthFigures:
    """One snapshot for /health and /metrics (a scan of the journal: run it off the reactor thread)."""
    journal = {status: count for status, count in txn.rows("SELECT status, COUNT(*) FROM journal GROUP BY status")}
    without_station = txn.row("SELECT COUNT(*) FROM scheduled_steps WHERE status = ? AND station_ae_title = ''",
                              (StepStatus.SCHEDULED.value,))
    queues: list[QueueFigure] = []
    for queue, table, destination, queued_at, statuses in _QUEUES:
        marks = ", ".join("?" for _ in statuses)
        for name, status, count, oldest in txn.rows(
                f"SELECT {destination}, status, COUNT(*), MIN({queued_at}) FROM {table}"
                f" WHERE status IN ({marks}) GROUP BY {destination}, status ORDER BY {destination}, status",
                list(statuses)):
            queues.append(QueueFigure(queue, name, statuses[status], count, oldest))
    return HealthFigures(journal, without_station[0] if without_station else 0, tuple(queues))


def database_reachable(txn: Transaction) -> bool:
    """A read the database must answer, of a table (for /ready): raises the store's error when it cannot."""
    return txn.row("SELECT MAX(version) FROM schema_version") is not None
