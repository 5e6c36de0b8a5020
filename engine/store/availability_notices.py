"""SQL of the DICOM Instance Availability Notifications (RAD-49, issue 16): what a notice about a study
references, the notices themselves, and which ``study.available`` events have had theirs.

A notice is built in the transaction that saw its study's stable point (engine/workflow/instance_availability.py)
and kept with its encoded data set; each receiving AE gets a ``dicom_forwards`` row of kind ``ian`` naming it,
so the forwarding sender delivers it in order with the forwards' retries (engine/store/queues.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import json_columns
from .database import Transaction

_WATERMARK = "notify:availability"     # counters row: the newest event already turned into a notice


@dataclass(frozen=True)
class StudyInstance:
    """One stored instance of the study as a notice references it."""

    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    hidden: bool                       # withdrawn by an MPPS discontinued with 110514


@dataclass(frozen=True)
class StablePoint:
    """A ``study.available`` (or ``study.withdrawn``) event not yet turned into a notice."""

    event_ref: int
    study_instance_uid: str
    reason: str                        # "quiet time", "storage commitment" or "withdrawn (110514)"


@dataclass(frozen=True)
class Notice:
    id: int
    study_instance_uid: str
    sop_instance_uid: str
    dataset: bytes                     # the IAN data set as a Part 10 file (Explicit VR Little Endian)


def study_instances(txn: Transaction, study_instance_uid: str) -> list[StudyInstance]:
    """Every stored instance of the study, hidden ones too, in the order they were indexed."""
    return [StudyInstance(series, sop_class, sop_instance, bool(hidden)) for series, sop_class, sop_instance, hidden
            in txn.rows("SELECT series_instance_uid, sop_class_uid, sop_instance_uid, hidden FROM instances"
                        " WHERE study_instance_uid = ? ORDER BY id", (study_instance_uid,))]


def performed_step_of_study(txn: Transaction, study_instance_uid: str) -> str | None:
    """The SOP Instance UID of the study's newest MPPS (linked to one of its scheduled steps, or naming the
    study itself), a discontinued one only when there is no other; None without any."""
    row = txn.row(
        "SELECT p.sop_instance_uid FROM performed_steps p WHERE p.study_instance_uid = ? OR p.id IN"
        " (SELECT l.performed_step_ref FROM performed_step_links l JOIN scheduled_steps s ON s.id = l.step_ref"
        "  JOIN requested_procedures r ON r.id = s.requested_procedure_ref WHERE r.study_instance_uid = ?)"
        " ORDER BY CASE WHEN p.status = 'DISCONTINUED' THEN 1 ELSE 0 END, p.id DESC LIMIT 1",
        (study_instance_uid, study_instance_uid))
    return None if row is None else str(row[0])


def add_notice(txn: Transaction, *, study_instance_uid: str, sop_instance_uid: str, reason: str, dataset: bytes,
               at: str) -> int:
    """Keep a notice; its id (the ``source_ref`` of its forwards)."""
    return txn.insert("INSERT INTO availability_notices (study_instance_uid, sop_instance_uid, reason, created_at,"
                      " dataset) VALUES (?, ?, ?, ?, ?)", (study_instance_uid, sop_instance_uid, reason, at, dataset))


def notice(txn: Transaction, notice_id: int) -> Notice | None:
    """The notice an ``ian`` forward sends; None when it is gone."""
    row = txn.row("SELECT id, study_instance_uid, sop_instance_uid, dataset FROM availability_notices WHERE id = ?",
                  (notice_id,))
    return None if row is None else Notice(row[0], row[1], row[2], bytes(row[3]))


# -- which stable points have their notice ----------------------------------------------------------------
def start_watermark(txn: Transaction) -> None:
    """Notify from now on, not about the archive's history: without a watermark, start at the newest event."""
    if watermark(txn) is None:
        latest = txn.row("SELECT MAX(id) FROM events")
        txn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (_WATERMARK, (latest or (None,))[0] or 0))


def watermark(txn: Transaction) -> int | None:
    """The newest event already turned into a notice; None before notifying was started."""
    row = txn.row("SELECT value FROM counters WHERE name = ?", (_WATERMARK,))
    return None if row is None else int(row[0])


def stable_points_after(txn: Transaction, kinds: tuple[str, ...], event_ref: int) -> list[StablePoint]:
    """The events of these kinds (study.available, study.withdrawn) after ``event_ref``, oldest first."""
    points = []
    marks = ", ".join("?" for _ in kinds)
    for event_id, detail in txn.rows(f"SELECT id, detail FROM events WHERE kind IN ({marks}) AND id > ? ORDER BY id",
                                     (*kinds, event_ref)):
        values = json_columns.loads(detail)
        points.append(StablePoint(event_id, str(values.get("study_instance_uid", "")), str(values.get("reason", ""))))
    return points


def advance_watermark(txn: Transaction, event_ref: int) -> None:
    txn.execute("UPDATE counters SET value = ? WHERE name = ?", (event_ref, _WATERMARK))
