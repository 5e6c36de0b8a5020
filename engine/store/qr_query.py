"""Query/Retrieve (RAD-11) matching translated into SQL on the stored instances, and the reads of a C-FIND,
C-MOVE and C-GET: the matching values at a level, the tallies behind the Number of ... Related
attributes, the first instance of each match, the instances a retrieve names.

Study Root (levels STUDY, SERIES, IMAGE; the patient keys are study-level keys there) and Patient Root
(PATIENT, STUDY, SERIES, IMAGE).  Hierarchical matching only (SWF.md RAD-11): at a level the keys of
that level match, together with the unique keys of the levels above, which must be given.  Matching
follows SWF.md 5.1 through engine/store/matching.py.  Hidden instances (MPPS discontinued with 110514)
are never read here, and count nowhere; a presentation state also belongs to every study whose series
it references (RAD-9).  What a response then holds is engine/workflow/availability.py's business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .database import Transaction
from .matching import (QueryError, date_condition, in_condition, like_pattern, pn_key, text_condition,
                       time_condition, uid_list)
from .json_columns import loads

STUDY_ROOT, PATIENT_ROOT = "study", "patient"
LEVELS = {STUDY_ROOT: ("STUDY", "SERIES", "IMAGE"), PATIENT_ROOT: ("PATIENT", "STUDY", "SERIES", "IMAGE")}
UNIQUE_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}
_CHUNK = 500   # values per IN list

# keyword -> (level in Patient Root, column, kind).  Kinds: text, pn, date, time, uid, modalities.
MATCH_KEYS: dict[str, tuple[str, str, str]] = {
    "PatientID": ("PATIENT", "i.patient_id", "text"),
    "PatientName": ("PATIENT", "i.patient_name_norm", "pn"),
    "StudyInstanceUID": ("STUDY", "i.study_instance_uid", "uid"),
    "StudyDate": ("STUDY", "i.study_date", "date"),
    "StudyTime": ("STUDY", "i.study_time", "time"),
    "AccessionNumber": ("STUDY", "i.accession_number", "text"),
    "StudyID": ("STUDY", "i.study_id", "text"),
    "ReferringPhysicianName": ("STUDY", "i.referring_physician_norm", "pn"),
    "ModalitiesInStudy": ("STUDY", "", "modalities"),
    "SeriesInstanceUID": ("SERIES", "i.series_instance_uid", "uid"),
    "Modality": ("SERIES", "i.modality", "text"),
    "SeriesNumber": ("SERIES", "i.series_number", "text"),
    "SOPInstanceUID": ("IMAGE", "i.sop_instance_uid", "uid"),
    "SOPClassUID": ("IMAGE", "i.sop_class_uid", "uid"),
    "InstanceNumber": ("IMAGE", "i.instance_number", "text"),
}
# The column holding a level's unique key (the value a PATIENT / STUDY / SERIES match stands for).
_LEVEL_COLUMN = {"PATIENT": "patient_id", "STUDY": "study_instance_uid", "SERIES": "series_instance_uid"}


@dataclass(frozen=True)
class QrCondition:
    """The WHERE clause (on ``instances i``) of one query or retrieve, with its parameters."""

    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class OfferedInstance:
    """A stored instance as Q/R returns it: its indexed columns and its decoded attributes."""

    id: int
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    accession_number: str
    modality: str
    study_date: str
    study_id: str
    series_number: str
    instance_number: str
    transfer_syntax_uid: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class RetrieveItem:
    """An instance a C-MOVE / C-GET sends: what its presentation context needs, and its file."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str
    study_instance_uid: str = ""       # the audit trail names the studies and patients a retrieval sends
    patient_id: str = ""
    corrections: dict[str, Any] = field(default_factory=dict)   # applied over the file when sent (PIR, link)


@dataclass(frozen=True)
class LevelTally:
    """What one patient, study or series holds (not hidden), for its Number of ... Related attributes."""

    instances: int
    series: int
    studies: int
    modalities: tuple[str, ...]       # sorted
    sop_classes: tuple[str, ...]      # sorted
    first: int                        # id of its first instance; 0 when it holds none


# -- matching -> SQL ------------------------------------------------------------------------------
def _value(keys: Mapping[str, str], keyword: str) -> str:
    return (keys.get(keyword) or "").strip()


def _effective_level(keyword: str, model: str) -> str:
    level = MATCH_KEYS[keyword][0]
    return "STUDY" if level == "PATIENT" and model == STUDY_ROOT else level


def matched_at(keyword: str, model: str, level: str) -> bool:
    """Whether a query at ``level`` of ``model`` matches on ``keyword`` (other keys are only returned)."""
    return keyword in MATCH_KEYS and _effective_level(keyword, model) == level


def check_level(model: str, level: str) -> None:
    if model not in LEVELS:
        raise QueryError(f"unknown information model {model!r}")
    if level not in LEVELS[model]:
        raise QueryError(f"Query/Retrieve Level {level!r} is not one of "
                         f"{', '.join(LEVELS[model])} in this information model")


def _modalities_condition(value: str, where: list[str], params: list[Any]) -> None:
    """Modalities in Study: some instance of the study (not hidden) has one of the listed modalities."""
    inner: list[str] = []
    inner_params: list[Any] = []
    for modality in (v.strip() for v in value.split("\\") if v.strip()):
        if modality == "*":
            return
        if "*" in modality or "?" in modality:
            inner.append("m.modality LIKE ? ESCAPE '\\'")
            inner_params.append(like_pattern(modality))
        else:
            inner.append("m.modality = ?")
            inner_params.append(modality)
    if not inner:       # only backslashes: no value, a universal match (it was "AND ()": found by make fuzz)
        return
    where.append("EXISTS (SELECT 1 FROM instances m WHERE m.study_instance_uid = i.study_instance_uid"
                 f" AND m.hidden = 0 AND ({' OR '.join(inner)}))")
    params.extend(inner_params)


def _condition(keyword: str, value: str, where: list[str], params: list[Any]) -> None:
    _, column, kind = MATCH_KEYS[keyword]
    if not value or value == "*":
        return
    if kind == "text":
        text_condition(column, value, where, params)
    elif kind == "pn":
        if value.strip("*") == "":
            return
        text_condition(column, pn_key(value), where, params)
    elif kind == "uid":
        in_condition(column, uid_list(value, keyword), where, params)
    elif kind == "date":
        date_condition(column, value, keyword, where, params)
    elif kind == "time":
        time_condition(column, value, keyword, where, params)
    elif kind == "modalities":
        _modalities_condition(value, where, params)


def _study_scope(study_uids: list[str], where: list[str], params: list[Any]) -> None:
    """Instances of these studies, and presentation states of other studies that reference their series."""
    marks = ", ".join("?" for _ in study_uids)
    where.append(f"(i.study_instance_uid IN ({marks}) OR i.id IN (SELECT r.instance_ref FROM instance_references r"
                 f" WHERE r.series_instance_uid IN (SELECT t.series_instance_uid FROM instances t"
                 f" WHERE t.hidden = 0 AND t.study_instance_uid IN ({marks}))))")
    params.extend(study_uids)
    params.extend(study_uids)


def _unique_condition(unique: str, value: str, where: list[str], params: list[Any]) -> None:
    """A unique key of the hierarchy: studies (with the PS they annotate) by UID list, the others as keys."""
    if unique == "StudyInstanceUID":
        _study_scope(uid_list(value, unique), where, params)
    else:
        _condition(unique, value, where, params)


def build_qr_condition(model: str, level: str, keys: Mapping[str, str], retrieve: bool = False) -> QrCondition:
    """The instances a query (or, with ``retrieve``, a C-MOVE / C-GET) at ``level`` names; ``keys`` are
    DICOM keyword -> text, several values ``\\``-joined.  A missing unique key above the level (or of the
    level, for a retrieve) raises ``QueryError``."""
    check_level(model, level)
    levels = LEVELS[model]
    depth = levels.index(level)
    where: list[str] = ["i.hidden = 0"]
    params: list[Any] = []
    for above in levels[:depth]:
        unique = UNIQUE_KEY[above]
        value = _value(keys, unique)
        if not value:
            raise QueryError(f"a {level} level request needs the {above} level unique key {unique}")
        _unique_condition(unique, value, where, params)
    if retrieve:
        unique = UNIQUE_KEY[level]
        value = _value(keys, unique)
        if not value:
            raise QueryError(f"a {level} level retrieve needs {unique}")
        _unique_condition(unique, value, where, params)
    else:
        for keyword in keys:
            if matched_at(keyword, model, level):
                _condition(keyword, _value(keys, keyword), where, params)
    return QrCondition(" AND ".join(where), tuple(params))


# -- reads ----------------------------------------------------------------------------------------
_OFFERED_COLUMNS = ("i.id, i.sop_class_uid, i.sop_instance_uid, i.study_instance_uid, i.series_instance_uid,"
                    " i.patient_id, i.accession_number, i.modality, i.study_date, i.study_id, i.series_number,"
                    " i.instance_number, i.transfer_syntax_uid, i.attributes")


def _offered(row: tuple[Any, ...]) -> OfferedInstance:
    *columns, attributes = row
    return OfferedInstance(*columns, loads(attributes))


def number_order(value: Any) -> tuple[int, str]:
    """Sort key of an IS value (Series / Instance Number): numerically, what is no number last."""
    text = str(value or "").strip()
    try:
        return int(float(text)), text
    except ValueError:
        return 1 << 62, text


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def matching_instances(txn: Transaction, condition: QrCondition) -> list[OfferedInstance]:
    """The instances an IMAGE level query matches, by series, then instance number."""
    instances = [_offered(row) for row in txn.rows(f"SELECT {_OFFERED_COLUMNS} FROM instances i"
                                                   f" WHERE {condition.sql}", condition.params)]
    instances.sort(key=lambda i: (i.series_instance_uid, number_order(i.instance_number), i.id))
    return instances


def matching_values(txn: Transaction, condition: QrCondition, level: str) -> list[str]:
    """The distinct unique key values (Patient ID, Study / Series Instance UID) a PATIENT, STUDY or SERIES
    level query matches."""
    column = _LEVEL_COLUMN[level]
    return [value for value, in txn.rows(f"SELECT DISTINCT i.{column} FROM instances i WHERE {condition.sql}",
                                         condition.params)]


def instances_by_id(txn: Transaction, ids: list[int]) -> dict[int, OfferedInstance]:
    found: dict[int, OfferedInstance] = {}
    for chunk in _chunks(ids):
        for row in txn.rows(f"SELECT {_OFFERED_COLUMNS} FROM instances i"
                            f" WHERE i.id IN ({', '.join('?' for _ in chunk)})", chunk):
            instance = _offered(row)
            found[instance.id] = instance
    return found


def retrieve_items(txn: Transaction, condition: QrCondition) -> list[RetrieveItem]:
    """The instances a C-MOVE / C-GET sends, by series, then instance number."""
    rows = txn.rows("SELECT i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.path, i.series_instance_uid,"
                    f" i.instance_number, i.id, i.study_instance_uid, i.patient_id, i.corrections FROM instances i"
                    f" WHERE {condition.sql}", condition.params)
    rows.sort(key=lambda r: (r[4], number_order(r[5]), r[6]))
    return [RetrieveItem(sop_class, sop_instance, syntax, path, study, patient, loads(corrections))
            for sop_class, sop_instance, syntax, path, _, _, _, study, patient, corrections in rows]


@dataclass
class _Tally:
    """A tally while its rows are read (frozen into a ``LevelTally`` at the end)."""

    instances: set[int] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)
    modalities: set[str] = field(default_factory=set)
    sop_classes: set[str] = field(default_factory=set)
    first: int = 0

    def add(self, instance_id: int, study: str, series: str, modality: str, sop_class: str) -> None:
        self.instances.add(instance_id)
        self.series.add(series)
        self.studies.add(study)
        if modality:
            self.modalities.add(modality)
        self.sop_classes.add(sop_class)
        self.first = instance_id if not self.first else min(self.first, instance_id)

    def frozen(self) -> LevelTally:
        return LevelTally(len(self.instances), len(self.series), len(self.studies), tuple(sorted(self.modalities)),
                          tuple(sorted(self.sop_classes)), self.first)


def _study_tallies(txn: Transaction, study_uids: list[str]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {uid: _Tally() for uid in study_uids}
    for chunk in _chunks(study_uids):
        marks = ", ".join("?" for _ in chunk)
        for instance_id, study, series, modality, sop_class in txn.rows(
                "SELECT id, study_instance_uid, series_instance_uid, modality, sop_class_uid"
                f" FROM instances WHERE hidden = 0 AND study_instance_uid IN ({marks})", chunk):
            tallies[study].add(instance_id, study, series, modality, sop_class)
        # presentation states of other studies that reference a series of these studies (RAD-9)
        for owner, instance_id, _study, series, modality, sop_class in txn.rows(
                "SELECT DISTINCT t.study_instance_uid AS owner, i.id, i.study_instance_uid, i.series_instance_uid,"
                " i.modality, i.sop_class_uid FROM instances t"
                " JOIN instance_references r ON r.series_instance_uid = t.series_instance_uid"
                " JOIN instances i ON i.id = r.instance_ref"
                f" WHERE t.hidden = 0 AND i.hidden = 0 AND t.study_instance_uid IN ({marks})"
                " AND i.study_instance_uid <> t.study_instance_uid", chunk):
            tally = tallies[owner]
            if instance_id not in tally.instances:
                tally.instances.add(instance_id)
                tally.series.add(series)
                if modality:
                    tally.modalities.add(modality)
                tally.sop_classes.add(sop_class)
    return tallies


def _tallies_by(txn: Transaction, column: str, values: list[str]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {value: _Tally() for value in values}
    for chunk in _chunks(values):
        marks = ", ".join("?" for _ in chunk)
        for instance_id, study, series, modality, sop_class, grouping in txn.rows(
                f"SELECT id, study_instance_uid, series_instance_uid, modality, sop_class_uid, {column}"
                f" FROM instances WHERE hidden = 0 AND {column} IN ({marks})", chunk):
            tallies[grouping].add(instance_id, study, series, modality, sop_class)
    return tallies


def level_tallies(txn: Transaction, level: str, values: list[str]) -> dict[str, LevelTally]:
    """What each patient (by Patient ID), study (with the presentation states that reference its series)
    or series (by UID) holds; every value given has a tally, empty when nothing of it is offered."""
    column = _LEVEL_COLUMN[level]
    tallies = _study_tallies(txn, values) if level == "STUDY" else _tallies_by(txn, column, values)
    return {value: tally.frozen() for value, tally in tallies.items()}
