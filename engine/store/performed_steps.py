"""SQL of the performed procedure steps (MPPS, RAD-6 / RAD-7): the steps, their versions, their links to
scheduled steps, and the one decoder of a stored MPPS dataset.

The workflow (engine/workflow/mpps.py) decides; this module only reads and writes, inside the
transaction it is given, and returns frozen records.  A stored dataset is the Part 10 file the MPPS
adapter encoded (Explicit VR Little Endian); ``decode_dataset`` reads it back for every user (the N-SET
merge, the outbound status message, DICOM forwarding, the operator's report).
"""
from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

from .database import Transaction

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class LinkableStep:
    """A scheduled step as MPPS linking sees it (SWF.md 4.2): its keys, status and order (the stored step
    itself, with its schedule, is store/orders.ScheduledStep)."""

    step_ref: int
    sps_id: str
    status: str
    station_ae_title: str
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    order_ref: int


@dataclass(frozen=True)
class PerformedStep:
    id: int
    sop_instance_uid: str
    status: str
    pps_id: str
    performed_station_ae_title: str
    calling_ae_title: str
    study_instance_uid: str
    unscheduled: bool
    dataset: bytes          # the encoded dataset as it stands after the latest N-CREATE / N-SET
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PerformedStepVersion:
    """One N-CREATE or N-SET as it was received (merged into the dataset of that moment)."""

    id: int
    performed_step_ref: int
    operation: str          # "N-CREATE" or "N-SET"
    status: str
    dataset: bytes


def decode_dataset(data: bytes) -> "Dataset":
    """A stored MPPS dataset as a pydicom Dataset (pydicom is imported only when one is read)."""
    from pydicom import dcmread

    return dcmread(BytesIO(bytes(data)), force=True)


# -- scheduled steps an MPPS names ---------------------------------------------------------------
_STEP_SELECT = ("SELECT s.id, s.sps_id, s.status, s.station_ae_title, r.accession_number, r.requested_procedure_id,"
                " r.study_instance_uid, r.order_ref FROM scheduled_steps s"
                " JOIN requested_procedures r ON r.id = s.requested_procedure_ref")


def _steps(txn: Transaction, where: str, params: tuple) -> list[LinkableStep]:
    return [LinkableStep(*row) for row in txn.rows(f"{_STEP_SELECT} {where} ORDER BY s.id", params)]


def steps_by_sps_id(txn: Transaction, sps_id: str, requested_procedure_id: str,
                    accession_number: str) -> list[LinkableStep]:
    return _steps(txn, "WHERE s.sps_id = ? AND r.requested_procedure_id = ? AND r.accession_number = ?",
                  (sps_id, requested_procedure_id, accession_number))


def steps_by_study(txn: Transaction, study_instance_uid: str, requested_procedure_id: str) -> list[LinkableStep]:
    return _steps(txn, "WHERE r.study_instance_uid = ? AND r.requested_procedure_id = ?",
                  (study_instance_uid, requested_procedure_id))


def steps_by_accession(txn: Transaction, accession_number: str) -> list[LinkableStep]:
    return _steps(txn, "WHERE r.accession_number = ?", (accession_number,))


def linked_steps(txn: Transaction, performed_ref: int) -> list[LinkableStep]:
    """The scheduled steps a performed step is linked to, with their current status."""
    return _steps(txn, "JOIN performed_step_links l ON l.step_ref = s.id WHERE l.performed_step_ref = ?",
                  (performed_ref,))


# -- performed steps -----------------------------------------------------------------------------
_PERFORMED_COLUMNS = ("id, sop_instance_uid, status, pps_id, performed_station_ae_title, calling_ae_title,"
                      " study_instance_uid, unscheduled, dataset, created_at, updated_at")


def _performed(row: tuple[Any, ...] | None) -> PerformedStep | None:
    if row is None:
        return None
    *head, unscheduled, dataset, created_at, updated_at = row
    return PerformedStep(*head, bool(unscheduled), bytes(dataset), created_at, updated_at)


def exists(txn: Transaction, sop_instance_uid: str) -> bool:
    return txn.one("SELECT id FROM performed_steps WHERE sop_instance_uid = ?", (sop_instance_uid,)) is not None


def insert(txn: Transaction, *, sop_instance_uid: str, status: str, pps_id: str, performed_station_ae_title: str,
           calling_ae_title: str, study_instance_uid: str, unscheduled: bool, dataset: bytes, at: str) -> int:
    """A new performed step (N-CREATE); a taken SOP Instance UID raises ``DuplicateKey``."""
    return txn.insert(
        "INSERT INTO performed_steps (sop_instance_uid, status, pps_id, performed_station_ae_title, calling_ae_title,"
        " study_instance_uid, unscheduled, dataset, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (sop_instance_uid, status, pps_id, performed_station_ae_title, calling_ae_title, study_instance_uid,
         1 if unscheduled else 0, dataset, at, at))


def link(txn: Transaction, performed_ref: int, step_ref: int) -> None:
    txn.execute("INSERT INTO performed_step_links (performed_step_ref, step_ref) VALUES (?, ?)",
                (performed_ref, step_ref))


def performed_of_step(txn: Transaction, step_ref: int) -> list[str]:
    """The SOP Instance UIDs of the performed steps linked to this scheduled step."""
    return [uid for uid, in txn.rows("SELECT p.sop_instance_uid FROM performed_steps p JOIN performed_step_links l"
                                     " ON l.performed_step_ref = p.id WHERE l.step_ref = ? ORDER BY p.id", (step_ref,))]


def mark_linked(txn: Transaction, performed_ref: int) -> None:
    """An unscheduled performed step the operator linked to an order (``swf link``) is scheduled now."""
    txn.execute("UPDATE performed_steps SET unscheduled = 0 WHERE id = ?", (performed_ref,))


def add_version(txn: Transaction, performed_ref: int, operation: str, status: str, dataset: bytes, at: str) -> None:
    txn.execute("INSERT INTO performed_step_versions (performed_step_ref, at, operation, status, dataset)"
                " VALUES (?, ?, ?, ?, ?)", (performed_ref, at, operation, status, dataset))


def by_uid_or_pps_id(txn: Transaction, uid_or_pps_id: str) -> PerformedStep | None:
    """The performed step with this SOP Instance UID, else the latest with this PPS ID (``swf mpps UID``)."""
    return (_performed(txn.row(f"SELECT {_PERFORMED_COLUMNS} FROM performed_steps WHERE sop_instance_uid = ?",
                               (uid_or_pps_id,)))
            or _performed(txn.row(f"SELECT {_PERFORMED_COLUMNS} FROM performed_steps WHERE pps_id = ?"
                                  " ORDER BY id DESC LIMIT 1", (uid_or_pps_id,))))


def for_update(txn: Transaction, sop_instance_uid: str) -> PerformedStep | None:
    """The performed step an N-SET changes, its row locked first: on PostgreSQL the UPDATE takes the row
    lock, so N-SETs of several processes on one instance queue here instead of interleaving."""
    txn.execute("UPDATE performed_steps SET updated_at = updated_at WHERE sop_instance_uid = ?", (sop_instance_uid,))
    return _performed(txn.row(f"SELECT {_PERFORMED_COLUMNS} FROM performed_steps WHERE sop_instance_uid = ?",
                              (sop_instance_uid,)))


def update(txn: Transaction, performed_ref: int, status: str, dataset: bytes, at: str) -> None:
    txn.execute("UPDATE performed_steps SET status = ?, dataset = ?, updated_at = ? WHERE id = ?",
                (status, dataset, at, performed_ref))


def latest_of_order(txn: Transaction, order_ref: int) -> PerformedStep | None:
    """The performed step last changed among those linked to the order's scheduled steps."""
    return _performed(txn.row(
        "SELECT p.id, p.sop_instance_uid, p.status, p.pps_id, p.performed_station_ae_title, p.calling_ae_title,"
        " p.study_instance_uid, p.unscheduled, p.dataset, p.created_at, p.updated_at FROM performed_steps p"
        " JOIN performed_step_links l ON l.performed_step_ref = p.id"
        " JOIN scheduled_steps s ON s.id = l.step_ref JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
        " WHERE r.order_ref = ? ORDER BY p.updated_at DESC, p.id DESC LIMIT 1", (order_ref,)))


def version(txn: Transaction, version_ref: int) -> PerformedStepVersion | None:
    row = txn.row("SELECT id, performed_step_ref, operation, status, dataset FROM performed_step_versions"
                  " WHERE id = ?", (version_ref,))
    if row is None:
        return None
    *head, dataset = row
    return PerformedStepVersion(*head, bytes(dataset))
