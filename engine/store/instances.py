"""SQL of the stored instances (RAD-8 / RAD-9): the index rows, their Referenced Series references, the
requested procedures they link to and the UIDs withdrawn from Q/R (MPPS discontinued 110514).

The workflow (engine/workflow/storage.py) decides (duplicate policy, linking rules, the file
sequence); this module only reads and writes, inside the transaction it is given, and returns frozen
records.  The ``attributes`` JSON column is encoded here only (Q/R decodes it in ``qr_query.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .database import Transaction
from .json_columns import dumps, loads


@dataclass(frozen=True)
class StoredInstance:
    """An indexed instance as the duplicate policy needs it (the first copy's file and link)."""

    id: int
    requested_procedure_ref: int | None
    hidden: bool
    path: str                       # below storage_dir
    size_bytes: int


@dataclass(frozen=True)
class InstanceEntry:
    """The index row of one received instance as the workflow made it (matching keys normalised)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    patient_name_norm: str
    accession_number: str
    modality: str
    study_date: str
    study_time: str
    study_id: str
    referring_physician_norm: str
    series_number: str
    instance_number: str
    transfer_syntax_uid: str
    size_bytes: int
    path: str
    received_from: str
    attributes: Mapping[str, Any]           # every other header attribute (the JSON column)
    requested_procedure_ref: int | None
    hidden: bool
    received_at: str
    referenced_series: tuple[str, ...] = ()  # Referenced Series Sequence (RAD-9): instance_references


@dataclass(frozen=True)
class LinkedProcedure:
    """The order and accession number of the requested procedure an instance is linked to."""

    order_ref: int
    accession_number: str


# The columns an (re)indexed instance writes, in the order of ``_values``; both statements are built
# once from this list.
_ENTRY_COLUMNS = ("sop_class_uid", "study_instance_uid", "series_instance_uid", "patient_id", "patient_name_norm",
                  "accession_number", "modality", "study_date", "study_time", "study_id", "referring_physician_norm",
                  "series_number", "instance_number", "transfer_syntax_uid", "size_bytes", "path", "received_from",
                  "attributes", "requested_procedure_ref", "hidden", "received_at")
_INSERT = (f"INSERT INTO instances (sop_instance_uid, {', '.join(_ENTRY_COLUMNS)})"
           f" VALUES (?{', ?' * len(_ENTRY_COLUMNS)})")
_UPDATE = f"UPDATE instances SET {', '.join(f'{name} = ?' for name in _ENTRY_COLUMNS)} WHERE id = ?"
_INSERT_REFERENCE = "INSERT INTO instance_references (instance_ref, series_instance_uid) VALUES (?, ?)"
_DELETE_REFERENCES = "DELETE FROM instance_references WHERE instance_ref = ?"


def _values(entry: InstanceEntry) -> tuple[Any, ...]:
    return (entry.sop_class_uid, entry.study_instance_uid, entry.series_instance_uid, entry.patient_id,
            entry.patient_name_norm, entry.accession_number, entry.modality, entry.study_date, entry.study_time,
            entry.study_id, entry.referring_physician_norm, entry.series_number, entry.instance_number,
            entry.transfer_syntax_uid, entry.size_bytes, entry.path, entry.received_from, dumps(entry.attributes),
            entry.requested_procedure_ref, 1 if entry.hidden else 0, entry.received_at)


# -- the index -------------------------------------------------------------------------------------
def by_sop_instance_uid(txn: Transaction, sop_instance_uid: str) -> StoredInstance | None:
    row = txn.row("SELECT id, requested_procedure_ref, hidden, path, size_bytes FROM instances"
                  " WHERE sop_instance_uid = ?", (sop_instance_uid,))
    if row is None:
        return None
    instance_ref, procedure_ref, hidden, path, size_bytes = row
    return StoredInstance(instance_ref, procedure_ref, bool(hidden), path, size_bytes)


def series_indexed(txn: Transaction, series_instance_uid: str) -> bool:
    """Whether some instance of this series is indexed already."""
    return txn.row("SELECT 1 FROM instances WHERE series_instance_uid = ? LIMIT 1",
                   (series_instance_uid,)) is not None


def add(txn: Transaction, entry: InstanceEntry) -> int:
    """Index a new instance (and its references); its id.  A taken SOP Instance UID raises ``DuplicateKey``."""
    instance_ref = txn.insert(_INSERT, (entry.sop_instance_uid, *_values(entry)))
    _add_references(txn, instance_ref, entry.referenced_series)
    return instance_ref


def replace(txn: Transaction, instance_ref: int, entry: InstanceEntry) -> None:
    """Overwrite an indexed instance's row and references with those of a new copy."""
    txn.execute(_UPDATE, (*_values(entry), instance_ref))
    txn.execute(_DELETE_REFERENCES, (instance_ref,))
    _add_references(txn, instance_ref, entry.referenced_series)


def _add_references(txn: Transaction, instance_ref: int, series_instance_uids: Iterable[str]) -> None:
    for series_uid in series_instance_uids:
        txn.execute(_INSERT_REFERENCE, (instance_ref, series_uid))


def remove(txn: Transaction, instance_ref: int) -> None:
    """Take an index row (and its references) back."""
    txn.execute(_DELETE_REFERENCES, (instance_ref,))
    txn.execute("DELETE FROM instances WHERE id = ?", (instance_ref,))


# -- the requested procedure an instance links to (SWF.md RAD-8) --------------------------------------
_LATEST = " ORDER BY r.id DESC LIMIT 1"
_WITH_ACCESSION = " AND r.accession_number = ?"


def procedure_by_study(txn: Transaction, study_instance_uid: str) -> int | None:
    row = txn.row("SELECT id FROM requested_procedures WHERE study_instance_uid = ?", (study_instance_uid,))
    return row[0] if row else None


def procedure_by_step(txn: Transaction, requested_procedure_id: str, sps_id: str,
                      accession_number: str = "") -> int | None:
    """The latest requested procedure of this RP ID with a scheduled step of this SPS ID (and of this
    accession number unless it is empty)."""
    sql = ("SELECT r.id FROM requested_procedures r JOIN scheduled_steps s ON s.requested_procedure_ref = r.id"
           " WHERE r.requested_procedure_id = ? AND s.sps_id = ?")
    if accession_number:
        row = txn.row(sql + _WITH_ACCESSION + _LATEST, (requested_procedure_id, sps_id, accession_number))
    else:
        row = txn.row(sql + _LATEST, (requested_procedure_id, sps_id))
    return row[0] if row else None


def procedure_by_procedure_id(txn: Transaction, requested_procedure_id: str, accession_number: str = "") -> int | None:
    """The latest requested procedure of this RP ID (and of this accession number unless it is empty)."""
    sql = "SELECT r.id FROM requested_procedures r WHERE r.requested_procedure_id = ?"
    if accession_number:
        row = txn.row(sql + _WITH_ACCESSION + _LATEST, (requested_procedure_id, accession_number))
    else:
        row = txn.row(sql + _LATEST, (requested_procedure_id,))
    return row[0] if row else None


def procedures_by_accession(txn: Transaction, accession_number: str) -> list[int]:
    """The newest two requested procedures of this accession number at most: enough to tell one from several."""
    return [row[0] for row in txn.rows("SELECT id FROM requested_procedures WHERE accession_number = ?"
                                       " ORDER BY id DESC LIMIT 2", (accession_number,))]


def linked_procedure(txn: Transaction, procedure_ref: int) -> LinkedProcedure | None:
    row = txn.row("SELECT order_ref, accession_number FROM requested_procedures WHERE id = ?", (procedure_ref,))
    return LinkedProcedure(*row) if row else None


def link_waiting(txn: Transaction, procedure_ref: int, study_instance_uid: str, accession_number: str = "") -> int:
    """Link the unlinked instances of this Study Instance UID, then those of this accession number (unless
    empty), to the requested procedure; how many."""
    moved = txn.execute("UPDATE instances SET requested_procedure_ref = ? WHERE requested_procedure_ref IS NULL"
                        " AND study_instance_uid = ?", (procedure_ref, study_instance_uid)).rowcount
    if accession_number:
        moved += txn.execute("UPDATE instances SET requested_procedure_ref = ? WHERE requested_procedure_ref IS NULL"
                             " AND accession_number = ?", (procedure_ref, accession_number)).rowcount
    return moved


# -- withdrawn from Q/R (MPPS discontinued 110514) ------------------------------------------------------
def withdraw(txn: Transaction, sop_instance_uids: Iterable[str], series_instance_uids: Iterable[str], reason: str,
             performed_step_ref: int | None, at: str) -> int:
    """Keep each UID as withdrawn (instances of it stored later are hidden too) and hide the instances
    stored now; how many were hidden now.  SOP Instance UIDs first, then Series Instance UIDs."""
    hidden = 0
    for uids, hide in ((sop_instance_uids, "UPDATE instances SET hidden = 1 WHERE sop_instance_uid = ? AND hidden = 0"),
                       (series_instance_uids,
                        "UPDATE instances SET hidden = 1 WHERE series_instance_uid = ? AND hidden = 0")):
        for uid in uids:
            txn.execute("INSERT INTO hidden_references (uid, reason, performed_step_ref, at) VALUES (?, ?, ?, ?)",
                        (uid, reason, performed_step_ref, at))
            hidden += txn.execute(hide, (uid,)).rowcount
    return hidden


def studies_of(txn: Transaction, sop_instance_uids: Iterable[str], series_instance_uids: Iterable[str]) -> list[str]:
    """The Study Instance UIDs of the stored instances with these SOP or Series Instance UIDs, sorted."""
    studies: set[str] = set()
    for uids, query in ((sop_instance_uids, "SELECT study_instance_uid FROM instances WHERE sop_instance_uid = ?"),
                        (series_instance_uids,
                         "SELECT study_instance_uid FROM instances WHERE series_instance_uid = ? LIMIT 1")):
        for uid in uids:
            row = txn.row(query, (uid,))
            if row is not None:
                studies.add(str(row[0]))
    return sorted(studies)


def is_withdrawn(txn: Transaction, sop_instance_uid: str, series_instance_uid: str) -> bool:
    """Whether the instance or its series was withdrawn (stored hidden, never offered by Q/R)."""
    return txn.row("SELECT 1 FROM hidden_references WHERE uid IN (?, ?) LIMIT 1",
                   (sop_instance_uid, series_instance_uid)) is not None


# -- corrections: what Q/R answers and sends instead of the stored file's values (PIR, swf link) --------
@dataclass(frozen=True)
class CorrectableInstance:
    """An indexed instance as a correction sees it: its keys now, and the attributes applied over its
    stored file when it is answered or sent (``corrections``; the file stays as received)."""

    id: int
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    accession_number: str
    attributes: dict[str, Any]
    corrections: dict[str, Any]


_CORRECTABLE_SELECT = ("SELECT id, study_instance_uid, series_instance_uid, patient_id, accession_number, attributes,"
                       " corrections FROM instances")


def _correctable(rows: list[tuple]) -> list[CorrectableInstance]:
    return [CorrectableInstance(ref, study, series, pid, accession, loads(attributes), loads(corrections))
            for ref, study, series, pid, accession, attributes, corrections in rows]


def of_patient_id(txn: Transaction, patient_id: str) -> list[CorrectableInstance]:
    """Every indexed instance (hidden ones too) whose Patient ID is this one, by id."""
    return _correctable(txn.rows(f"{_CORRECTABLE_SELECT} WHERE patient_id = ? ORDER BY id", (patient_id,)))


def of_study_or_series(txn: Transaction, study_instance_uid: str,
                       series_instance_uids: Iterable[str]) -> list[CorrectableInstance]:
    """Every indexed instance (hidden ones too) of the study or of one of the series, by id."""
    series = list(dict.fromkeys(series_instance_uids))
    marks = "".join(", ?" for _ in series)
    return _correctable(txn.rows(f"{_CORRECTABLE_SELECT} WHERE study_instance_uid = ?"
                                 f" OR series_instance_uid IN (''{marks}) ORDER BY id",
                                 (study_instance_uid, *series)))


def by_ref_correctable(txn: Transaction, instance_ref: int) -> CorrectableInstance | None:
    found = _correctable(txn.rows(f"{_CORRECTABLE_SELECT} WHERE id = ?", (instance_ref,)))
    return found[0] if found else None


def set_corrected(txn: Transaction, instance_ref: int, patient_id: str, patient_name_norm: str, accession_number: str,
                  attributes: Mapping[str, Any], corrections: Mapping[str, Any],
                  requested_procedure_ref: int | None = None) -> None:
    """Give an indexed instance its corrected Q/R columns and attributes and what a retrieve applies over
    the file; with ``requested_procedure_ref`` it is linked to that requested procedure too."""
    txn.execute("UPDATE instances SET patient_id = ?, patient_name_norm = ?, accession_number = ?, attributes = ?,"
                " corrections = ?, requested_procedure_ref = COALESCE(?, requested_procedure_ref) WHERE id = ?",
                (patient_id, patient_name_norm, accession_number, dumps(dict(attributes)), dumps(dict(corrections)),
                 requested_procedure_ref, instance_ref))
