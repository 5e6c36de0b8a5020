"""SQL of the stored studies as the API lists them: per study its series and instance counts, size, the
patient and the order (accession) its instances are linked to."""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .listings import Page, StoredSeries
from .where import Where


@dataclass(frozen=True)
class StudyOverview:
    study_instance_uid: str
    patient_id: str
    accession_number: str          # as the instances carry it ("" when they carry none)
    linked_accession: str | None   # the accession of the requested procedure they are linked to; None: unlinked
    modalities: tuple[str, ...]
    series: int
    instances: int
    size_bytes: int
    last_received_at: str
    id: int                        # the newest instance's row id (the paging cursor)


@dataclass(frozen=True)
class StudyDetail:
    study: StudyOverview
    series: tuple[StoredSeries, ...]


_OVERVIEW = ("SELECT i.study_instance_uid, MAX(i.patient_id), MAX(i.accession_number), MAX(r.accession_number),"
             " COUNT(DISTINCT i.series_instance_uid), COUNT(*), SUM(i.size_bytes), MAX(i.received_at), MAX(i.id)"
             " FROM instances i LEFT JOIN requested_procedures r ON r.id = i.requested_procedure_ref")


def _overview(txn: Transaction, row: tuple) -> StudyOverview:
    study, patient, accession, linked, series, count, size, last, newest = row
    modalities = tuple(modality for (modality,) in txn.rows(
        "SELECT DISTINCT modality FROM instances WHERE study_instance_uid = ? ORDER BY modality", (study,)))
    return StudyOverview(study, patient, accession, linked, modalities, series, count, int(size or 0), last, newest)


def study_page(txn: Transaction, patient_id: str | None, accession: str | None, limit: int,
               before_id: int | None) -> Page[StudyOverview]:
    """Stored studies, the most recently received first."""
    where = Where()
    where.equal(("i.patient_id", patient_id), ("i.accession_number", accession))
    having, having_params = ("HAVING MAX(i.id) < ?", [before_id]) if before_id is not None else ("", [])
    rows = txn.rows(f"{_OVERVIEW}{where.clause} GROUP BY i.study_instance_uid {having} ORDER BY MAX(i.id) DESC"
                    " LIMIT ?", [*where.params, *having_params, limit + 1])
    studies = [_overview(txn, row) for row in rows[:limit]]
    return Page(tuple(studies), studies[-1].id if len(rows) > limit else None)


def study_detail(txn: Transaction, study_instance_uid: str) -> StudyDetail | None:
    row = txn.row(f"{_OVERVIEW} WHERE i.study_instance_uid = ? GROUP BY i.study_instance_uid", (study_instance_uid,))
    if row is None:
        return None
    series = tuple(StoredSeries(study, series_uid, modality, count, int(size or 0), last)
                   for study, series_uid, modality, count, size, last in txn.rows(
                       "SELECT study_instance_uid, series_instance_uid, MIN(modality), COUNT(*), SUM(size_bytes),"
                       " MAX(received_at) FROM instances WHERE study_instance_uid = ?"
                       " GROUP BY study_instance_uid, series_instance_uid ORDER BY MIN(id)", (study_instance_uid,)))
    return StudyDetail(_overview(txn, row), series)
