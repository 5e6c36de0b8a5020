"""RAD-11 Image Availability and Q/R: what a C-FIND match holds, and what a C-MOVE / C-GET sends.

The matching itself (levels, hierarchical keys, SWF.md 5.1 in SQL) and every read are in
engine/store/qr_query.py; here a match becomes its response attributes: every attribute known at its
level and above (the first instance of the match stands for it), the Number of ... Related counts,
Modalities / SOP Classes in Study, and the order of the matches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store import qr_query as qr
from ..store.database import Transaction
# The Q/R adapter (dicom/services/query.py) takes the models, levels, unique keys, QueryError and
# RetrieveItem from here, as the rest of its vocabulary.
from ..store.matching import QueryError  # noqa: F401
from ..store.qr_query import LEVELS, PATIENT_ROOT, STUDY_ROOT, UNIQUE_KEY, RetrieveItem  # noqa: F401

INSTANCE_AVAILABILITY = "ONLINE"
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


def unmatched_keys(request: QueryRequest) -> list[str]:
    """Keys given a value that this level does not match on (returned, not matched): C-FIND then
    answers Pending 0xFF01 (optional keys not supported) instead of 0xFF00."""
    levels = LEVELS[request.model]
    depth = levels.index(request.level) if request.level in levels else 0
    above = {UNIQUE_KEY[level] for level in levels[:depth]}
    return [keyword for keyword in request.keys
            if request.value(keyword) not in ("", "*") and keyword not in above
            and not qr.matched_at(keyword, request.model, request.level)]


# -- instances -> attributes ----------------------------------------------------------------------
def _instance_attributes(instance: qr.OfferedInstance) -> dict[str, Any]:
    attributes = dict(instance.attributes)
    attributes.update({
        "SOPClassUID": instance.sop_class_uid, "SOPInstanceUID": instance.sop_instance_uid,
        "StudyInstanceUID": instance.study_instance_uid, "SeriesInstanceUID": instance.series_instance_uid,
        "PatientID": instance.patient_id, "AccessionNumber": instance.accession_number,
        "Modality": instance.modality, "StudyDate": instance.study_date, "StudyID": instance.study_id,
        "SeriesNumber": instance.series_number, "InstanceNumber": instance.instance_number,
        "AvailableTransferSyntaxUID": instance.transfer_syntax_uid,
    })
    return attributes


def _for_level(attributes: dict[str, Any], level: str, model: str) -> dict[str, Any]:
    depth = _LEVEL_ORDER.index(level)
    allowed = {k for lvl in _LEVEL_ORDER[:depth + 1] for k in RETURN_KEYS[lvl]}
    if model == STUDY_ROOT and level != "PATIENT":
        allowed |= set(RETURN_KEYS["PATIENT"][:5])
    return {k: v for k, v in attributes.items() if k in allowed and v not in (None, "")}


def _counts(level: str, tally: qr.LevelTally) -> dict[str, Any]:
    if level == "PATIENT":
        return {"NumberOfPatientRelatedStudies": tally.studies, "NumberOfPatientRelatedSeries": tally.series,
                "NumberOfPatientRelatedInstances": tally.instances}
    if level == "STUDY":
        return {"NumberOfStudyRelatedSeries": tally.series, "NumberOfStudyRelatedInstances": tally.instances,
                "ModalitiesInStudy": "\\".join(tally.modalities), "SOPClassesInStudy": "\\".join(tally.sop_classes)}
    return {"NumberOfSeriesRelatedInstances": tally.instances}


# -- the queries -----------------------------------------------------------------------------------
def find(txn: Transaction, request: QueryRequest) -> list[Match]:
    """The matches of a C-FIND, each with every attribute known at its level and above."""
    condition = qr.build_qr_condition(request.model, request.level, request.keys)
    level = request.level
    if level == "IMAGE":
        return [Match(level, _for_level(_instance_attributes(instance), level, request.model))
                for instance in qr.matching_instances(txn, condition)]
    values = qr.matching_values(txn, condition, level)
    tallies = qr.level_tallies(txn, level, values)
    firsts = qr.instances_by_id(txn, [t.first for t in tallies.values() if t.first])
    matches = []
    for value in values:
        tally = tallies[value]
        if not tally.first:
            continue
        attributes = _instance_attributes(firsts[tally.first])
        attributes.update(_counts(level, tally))
        matches.append(Match(level, _for_level(attributes, level, request.model)))
    if level == "STUDY":
        matches.sort(key=lambda m: (str(m.attributes.get("StudyDate", "")), str(m.attributes.get("StudyTime", ""))))
    elif level == "SERIES":
        matches.sort(key=lambda m: qr.number_order(m.attributes.get("SeriesNumber")))
    return matches


def retrieve(txn: Transaction, request: QueryRequest) -> list[RetrieveItem]:
    """The instances a C-MOVE / C-GET identifier names (unique keys only, hierarchical)."""
    return qr.retrieve_items(txn, qr.build_qr_condition(request.model, request.level, request.keys, retrieve=True))
