"""SQL of study stability (issue 16): the last new instance of each study and its pending stable point.

A study is *pending* from its first new instance until the stability scan handles it; every new instance
pushes ``stable_due_at`` to its arrival + the quiet time and makes a handled study pending again.
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .timestamps import now_iso


@dataclass(frozen=True, slots=True)
class DueStudy:
    study_instance_uid: str
    arrivals: int          # the arrival count seen; the mark is refused when another came meanwhile
    stable_points: int


def record_arrival(txn: Transaction, study_instance_uid: str, at: float, quiet_seconds: float) -> bool:
    """Note a new instance of the study; True when it is the study's first (no row before)."""
    changed = txn.execute(
        "UPDATE study_arrivals SET last_arrival_at = ?, stable_due_at = ?, arrivals = arrivals + 1, pending = 1"
        " WHERE study_instance_uid = ?", (at, at + quiet_seconds, study_instance_uid))
    if changed.rowcount:
        return False
    txn.execute("INSERT INTO study_arrivals (study_instance_uid, last_arrival_at, stable_due_at, arrivals)"
                " VALUES (?, ?, ?, 1)", (study_instance_uid, at, at + quiet_seconds))
    return True


def due(txn: Transaction, now: float, limit: int) -> list[DueStudy]:
    """Pending studies whose quiet time has passed, oldest first, at most ``limit``."""
    return [DueStudy(*row) for row in txn.rows(
        "SELECT study_instance_uid, arrivals, stable_points FROM study_arrivals WHERE pending = 1"
        " AND stable_due_at <= ? ORDER BY stable_due_at LIMIT ?", (now, limit))]


def mark_stable(txn: Transaction, study: DueStudy) -> bool:
    """Record the stable point as handled; False when a new instance arrived since ``due`` read it."""
    changed = txn.execute(
        "UPDATE study_arrivals SET pending = 0, stable_points = stable_points + 1, stable_at = ?"
        " WHERE study_instance_uid = ? AND pending = 1 AND arrivals = ?",
        (now_iso(), study.study_instance_uid, study.arrivals))
    return bool(changed.rowcount)


def mark_committed(txn: Transaction, study_instance_uid: str) -> bool:
    """Record a pending study's stable point as reached by a storage commitment; False when the study has no
    new instance since its last stable point (or none indexed at all)."""
    changed = txn.execute(
        "UPDATE study_arrivals SET pending = 0, stable_points = stable_points + 1, stable_at = ?"
        " WHERE study_instance_uid = ? AND pending = 1", (now_iso(), study_instance_uid))
    return bool(changed.rowcount)


def announced(txn: Transaction, study_instance_uid: str) -> bool:
    """Whether the study had a stable point and no new instance since (no further one is coming)."""
    return txn.row("SELECT 1 FROM study_arrivals WHERE study_instance_uid = ? AND pending = 0 AND stable_points > 0",
                   (study_instance_uid,)) is not None


def counts(txn: Transaction, study_instance_uid: str) -> tuple[int, int]:
    """(series, instances) of the study offered to Q/R (hidden instances left out)."""
    row = txn.row("SELECT COUNT(DISTINCT series_instance_uid), COUNT(*) FROM instances"
                  " WHERE study_instance_uid = ? AND hidden = 0", (study_instance_uid,))
    return (int(row[0]), int(row[1])) if row else (0, 0)


def linked_procedure_ref(txn: Transaction, study_instance_uid: str) -> int | None:
    """The requested procedure the study's instances are linked to (by storage.link_procedure), or None."""
    row = txn.row("SELECT requested_procedure_ref FROM instances WHERE study_instance_uid = ?"
                  " AND requested_procedure_ref IS NOT NULL LIMIT 1", (study_instance_uid,))
    return int(row[0]) if row else None
