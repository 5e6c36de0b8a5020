"""RAD-11 Image Availability and Q/R: what is stored, matched in SQL at PATIENT/STUDY/SERIES/IMAGE level.

Study Root (levels STUDY, SERIES, IMAGE; the patient keys are study-level keys there) and Patient Root
(PATIENT, STUDY, SERIES, IMAGE).  Hierarchical matching only (SWF.md RAD-11): at a level the keys of
that level match, together with the unique keys of the levels above, which must be given (a SERIES
query names its study, an IMAGE query its study and series; Patient Root STUDY its patient).  Keys of
other levels are not matched; they are returned when the engine knows them.

Matching follows SWF.md 5.1: zero-length or ``*`` = universal; ``*``/``?`` wildcards on text keys
(``LIKE`` with escapes); PN keys against the upper-cased, accent-folded column; DA/TM ranges; a list of
UIDs (``\\``) for UID keys.  Hidden instances (MPPS discontinued with 110514) are never offered, and
count nowhere.  A presentation state also belongs to every study whose series it references (RAD-9).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..store import repository as repo
from ..store.database import Transaction
from ..store.matching import (QueryError, date_condition, in_condition, like_pattern, pn_key, text_condition,
                              time_condition, uid_list)

STUDY_ROOT, PATIENT_ROOT = "study", "patient"
LEVELS = {STUDY_ROOT: ("STUDY", "SERIES", "IMAGE"), PATIENT_ROOT: ("PATIENT", "STUDY", "SERIES", "IMAGE")}
UNIQUE_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}
INSTANCE_AVAILABILITY = "ONLINE"
_CHUNK = 500

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
# Return attributes by level (Patient Root levels); a response holds those of its level and above.
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"),
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
              "ReferringPhysicianName", "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"),
    "SERIES": ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime",
               "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "ContentDate", "ContentTime", "NumberOfFrames",
              "Rows", "Columns", "ContentLabel", "ContentDescription", "PresentationCreationDate",
              "PresentationCreationTime", "ContentCreatorName", "AvailableTransferSyntaxUID"),
}
_LEVEL_ORDER = ("PATIENT", "STUDY", "SERIES", "IMAGE")


@dataclass
class QueryRequest:
    level: str
    keys: dict[str, str] = field(default_factory=dict)   # keyword -> value as text, multiple values '\'-joined
    model: str = STUDY_ROOT

    def value(self, keyword: str) -> str:
        return (self.keys.get(keyword) or "").strip()


@dataclass
class Match:
    level: str
    attributes: dict[str, Any]         # keyword -> value: every known attribute of the level and above


@dataclass
class RetrieveItem:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str


# -- matching -> SQL ------------------------------------------------------------------------------
def _effective_level(keyword: str, model: str) -> str:
    level = MATCH_KEYS[keyword][0]
    return "STUDY" if level == "PATIENT" and model == STUDY_ROOT else level


def _check_level(request: QueryRequest) -> None:
    if request.model not in LEVELS:
        raise QueryError(f"unknown information model {request.model!r}")
    if request.level not in LEVELS[request.model]:
        raise QueryError(f"Query/Retrieve Level {request.level!r} is not one of "
                         f"{', '.join(LEVELS[request.model])} in this information model")


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
        values = [v.strip() for v in value.split("\\") if v.strip()]
        inner: list[str] = []
        inner_params: list[Any] = []
        for modality in values:
            if modality == "*":
                return
            if "*" in modality or "?" in modality:
                inner.append("m.modality LIKE ? ESCAPE '\\'")
                inner_params.append(like_pattern(modality))
            else:
                inner.append("m.modality = ?")
                inner_params.append(modality)
        where.append("EXISTS (SELECT 1 FROM instances m WHERE m.study_instance_uid = i.study_instance_uid"
                     f" AND m.hidden = 0 AND ({' OR '.join(inner)}))")
        params.extend(inner_params)


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


def _conditions(request: QueryRequest, retrieve: bool = False) -> tuple[list[str], list[Any]]:
    """WHERE conditions (on ``instances i``) for a query or a retrieve at ``request.level``."""
    _check_level(request)
    levels = LEVELS[request.model]
    depth = levels.index(request.level)
    where, params = ["i.hidden = 0"], []
    for above in levels[:depth]:
        unique = UNIQUE_KEY[above]
        value = request.value(unique)
        if not value:
            raise QueryError(f"a {request.level} level request needs the {above} level unique key {unique}")
        _unique_condition(unique, value, where, params)
    if retrieve:
        unique = UNIQUE_KEY[request.level]
        value = request.value(unique)
        if not value:
            raise QueryError(f"a {request.level} level retrieve needs {unique}")
        _unique_condition(unique, value, where, params)
        return where, params
    for keyword in request.keys:
        if keyword in MATCH_KEYS and _effective_level(keyword, request.model) == request.level:
            _condition(keyword, request.value(keyword), where, params)
    return where, params


def unmatched_keys(request: QueryRequest) -> list[str]:
    """Keys given a value that this level does not match on (returned, not matched): C-FIND then
    answers Pending 0xFF01 (optional keys not supported) instead of 0xFF00."""
    levels = LEVELS[request.model]
    depth = levels.index(request.level) if request.level in levels else 0
    above = {UNIQUE_KEY[level] for level in levels[:depth]}
    return [keyword for keyword in request.keys
            if request.value(keyword) not in ("", "*") and keyword not in above
            and not (keyword in MATCH_KEYS and _effective_level(keyword, request.model) == request.level)]


# -- rows -> attributes ---------------------------------------------------------------------------
def _row_attributes(row: dict[str, Any]) -> dict[str, Any]:
    attributes = repo.loads(row["attributes"])
    attributes.update({
        "SOPClassUID": row["sop_class_uid"], "SOPInstanceUID": row["sop_instance_uid"],
        "StudyInstanceUID": row["study_instance_uid"], "SeriesInstanceUID": row["series_instance_uid"],
        "PatientID": row["patient_id"], "AccessionNumber": row["accession_number"], "Modality": row["modality"],
        "StudyDate": row["study_date"], "StudyID": row["study_id"], "SeriesNumber": row["series_number"],
        "InstanceNumber": row["instance_number"], "AvailableTransferSyntaxUID": row["transfer_syntax_uid"],
    })
    return attributes


def _for_level(attributes: dict[str, Any], level: str, model: str) -> dict[str, Any]:
    depth = _LEVEL_ORDER.index(level)
    allowed = {k for lvl in _LEVEL_ORDER[:depth + 1] for k in RETURN_KEYS[lvl]}
    if model == STUDY_ROOT and level != "PATIENT":
        allowed |= set(RETURN_KEYS["PATIENT"][:5])
    return {k: v for k, v in attributes.items() if k in allowed and v not in (None, "")}


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _rows_by_id(txn: Transaction, ids: list[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in txn.query(f"SELECT * FROM instances WHERE id IN ({', '.join('?' for _ in chunk)})", chunk):
            found[row["id"]] = row
    return found


def _number(value: Any) -> tuple[int, str]:
    text = str(value or "").strip()
    try:
        return int(float(text)), text
    except ValueError:
        return 1 << 62, text


@dataclass
class _Tally:
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


def _study_tallies(txn: Transaction, study_uids: list[str]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {uid: _Tally() for uid in study_uids}
    for chunk in _chunks(study_uids):
        marks = ", ".join("?" for _ in chunk)
        for row in txn.query(f"SELECT id, study_instance_uid, series_instance_uid, modality, sop_class_uid"
                             f" FROM instances WHERE hidden = 0 AND study_instance_uid IN ({marks})", chunk):
            tallies[row["study_instance_uid"]].add(row["id"], row["study_instance_uid"], row["series_instance_uid"],
                                                   row["modality"], row["sop_class_uid"])
        # presentation states of other studies that reference a series of these studies (RAD-9)
        for row in txn.query(
                "SELECT DISTINCT t.study_instance_uid AS owner, i.id, i.study_instance_uid, i.series_instance_uid,"
                " i.modality, i.sop_class_uid FROM instances t"
                " JOIN instance_references r ON r.series_instance_uid = t.series_instance_uid"
                " JOIN instances i ON i.id = r.instance_ref"
                f" WHERE t.hidden = 0 AND i.hidden = 0 AND t.study_instance_uid IN ({marks})"
                " AND i.study_instance_uid <> t.study_instance_uid", chunk):
            tally = tallies[row["owner"]]
            if row["id"] not in tally.instances:
                tally.instances.add(row["id"])
                tally.series.add(row["series_instance_uid"])
                if row["modality"]:
                    tally.modalities.add(row["modality"])
                tally.sop_classes.add(row["sop_class_uid"])
    return tallies


def _tally_by(txn: Transaction, column: str, values: list[str]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {value: _Tally() for value in values}
    for chunk in _chunks(values):
        marks = ", ".join("?" for _ in chunk)
        for row in txn.query(f"SELECT id, study_instance_uid, series_instance_uid, modality, sop_class_uid, {column}"
                             f" AS grouping FROM instances WHERE hidden = 0 AND {column} IN ({marks})", chunk):
            tallies[row["grouping"]].add(row["id"], row["study_instance_uid"], row["series_instance_uid"],
                                         row["modality"], row["sop_class_uid"])
    return tallies


# -- the queries -----------------------------------------------------------------------------------
def find(txn: Transaction, request: QueryRequest) -> list[Match]:
    """The matches of a C-FIND, each with every attribute known at its level and above."""
    where, params = _conditions(request)
    condition = " AND ".join(where)
    level = request.level
    if level == "IMAGE":
        rows = txn.query(f"SELECT i.* FROM instances i WHERE {condition}", params)
        rows.sort(key=lambda r: (r["series_instance_uid"], _number(r["instance_number"]), r["id"]))
        return [Match(level, _for_level(_row_attributes(row), level, request.model)) for row in rows]
    column = {"PATIENT": "patient_id", "STUDY": "study_instance_uid", "SERIES": "series_instance_uid"}[level]
    keys = [row["value"] for row in txn.query(f"SELECT DISTINCT i.{column} AS value FROM instances i WHERE {condition}",
                                              params)]
    tallies = _study_tallies(txn, keys) if level == "STUDY" else _tally_by(txn, column, keys)
    firsts = _rows_by_id(txn, [t.first for t in tallies.values() if t.first])
    matches = []
    for key in keys:
        tally = tallies[key]
        if not tally.first:
            continue
        attributes = _row_attributes(firsts[tally.first])
        if level == "PATIENT":
            attributes.update(NumberOfPatientRelatedStudies=len(tally.studies),
                              NumberOfPatientRelatedSeries=len(tally.series),
                              NumberOfPatientRelatedInstances=len(tally.instances))
        elif level == "STUDY":
            attributes.update(NumberOfStudyRelatedSeries=len(tally.series),
                              NumberOfStudyRelatedInstances=len(tally.instances),
                              ModalitiesInStudy="\\".join(sorted(tally.modalities)),
                              SOPClassesInStudy="\\".join(sorted(tally.sop_classes)))
        else:
            attributes.update(NumberOfSeriesRelatedInstances=len(tally.instances))
        matches.append(Match(level, _for_level(attributes, level, request.model)))
    if level == "STUDY":
        matches.sort(key=lambda m: (str(m.attributes.get("StudyDate", "")), str(m.attributes.get("StudyTime", ""))))
    elif level == "SERIES":
        matches.sort(key=lambda m: _number(m.attributes.get("SeriesNumber")))
    return matches


def retrieve(txn: Transaction, request: QueryRequest) -> list[RetrieveItem]:
    """The instances a C-MOVE / C-GET identifier names (unique keys only, hierarchical)."""
    where, params = _conditions(request, retrieve=True)
    rows = txn.query("SELECT i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.path, i.series_instance_uid,"
                     f" i.instance_number, i.id FROM instances i WHERE {' AND '.join(where)}", params)
    rows.sort(key=lambda r: (r["series_instance_uid"], _number(r["instance_number"]), r["id"]))
    return [RetrieveItem(r["sop_class_uid"], r["sop_instance_uid"], r["transfer_syntax_uid"], r["path"]) for r in rows]


def study_availability(txn: Transaction, study_instance_uid: str) -> dict[str, int]:
    """RAD-11 grouped (internal): how much of a study is stored and offered."""
    tally = _study_tallies(txn, [study_instance_uid])[study_instance_uid]
    return {"series": len(tally.series), "instances": len(tally.instances)}
