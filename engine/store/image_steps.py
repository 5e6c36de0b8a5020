"""SQL of steps moved by images instead of MPPS (issue 16, engine/workflow/images_without_mpps.py).

``image_completions`` holds one row per step that its images will complete: the due time is the last
linked instance's arrival + the station's quiet time, pushed by every new instance; the row goes when the
step is completed (or found final).  ``scheduled_steps.off_worklist`` holds why a step left the worklist
without MPPS ('' = offered as its status says).
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .performed_steps import LinkableStep


@dataclass(frozen=True, slots=True)
class ImageStep:
    """A step of a requested procedure with what the station policy looks at."""

    step: LinkableStep
    modality: str
    off_worklist: str


@dataclass(frozen=True, slots=True)
class DueCompletion:
    step_ref: int
    study_instance_uid: str
    quiet_text: str
    due_at: float


_SELECT = ("SELECT s.id, s.sps_id, s.status, s.station_ae_title, r.accession_number, r.requested_procedure_id,"
           " r.study_instance_uid, r.order_ref, s.modality, s.off_worklist FROM scheduled_steps s"
           " JOIN requested_procedures r ON r.id = s.requested_procedure_ref")


def _image_steps(txn: Transaction, where: str, params: tuple) -> list[ImageStep]:
    return [ImageStep(LinkableStep(*row[:8]), row[8], row[9])
            for row in txn.rows(f"{_SELECT} {where} ORDER BY s.id", params)]


def steps_of_procedure(txn: Transaction, procedure_ref: int) -> list[ImageStep]:
    return _image_steps(txn, "WHERE s.requested_procedure_ref = ?", (procedure_ref,))


def step(txn: Transaction, step_ref: int) -> ImageStep | None:
    found = _image_steps(txn, "WHERE s.id = ?", (step_ref,))
    return found[0] if found else None


def linked_instances(txn: Transaction, step_ref: int) -> int:
    """Instances linked to the step's requested procedure and offered to Q/R (hidden ones left out)."""
    row = txn.row("SELECT COUNT(*) FROM instances i JOIN scheduled_steps s"
                  " ON s.requested_procedure_ref = i.requested_procedure_ref WHERE s.id = ? AND i.hidden = 0",
                  (step_ref,))
    return int(row[0]) if row else 0


def push_completion(txn: Transaction, step_ref: int, study_instance_uid: str, quiet_seconds: float,
                    quiet_text: str, at: float) -> None:
    """A new instance for the step: it is due ``quiet_seconds`` after this arrival."""
    changed = txn.execute("UPDATE image_completions SET due_at = ?, quiet_seconds = ?, quiet_text = ?,"
                          " study_instance_uid = ? WHERE step_ref = ?",
                          (at + quiet_seconds, quiet_seconds, quiet_text, study_instance_uid, step_ref))
    if not changed.rowcount:
        txn.execute("INSERT INTO image_completions (step_ref, study_instance_uid, quiet_seconds, quiet_text, due_at)"
                    " VALUES (?, ?, ?, ?, ?)", (step_ref, study_instance_uid, quiet_seconds, quiet_text,
                                                at + quiet_seconds))


def due_completions(txn: Transaction, now: float, limit: int) -> list[DueCompletion]:
    """Steps whose quiet time has passed, oldest first, at most ``limit``."""
    return [DueCompletion(*row) for row in txn.rows(
        "SELECT step_ref, study_instance_uid, quiet_text, due_at FROM image_completions WHERE due_at <= ?"
        " ORDER BY due_at LIMIT ?", (now, limit))]


def drop_completion(txn: Transaction, step_ref: int) -> None:
    txn.execute("DELETE FROM image_completions WHERE step_ref = ?", (step_ref,))


def take_off_worklist(txn: Transaction, step_ref: int, reason: str) -> None:
    txn.execute("UPDATE scheduled_steps SET off_worklist = ? WHERE id = ?", (reason, step_ref))
