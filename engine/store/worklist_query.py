"""Modality Worklist matching (SWF.md section 5) translated into one SQL query.

Input is plain: top-level keys and the keys of the one Scheduled Procedure Step Sequence item, as
DICOM keyword -> string (multi-valued UIDs joined by backslash).  Every supported key becomes a WHERE
condition on an indexed column; nothing is filtered row by row in Python.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from ..hl7.convert import normalise_name


class QueryError(ValueError):
    """The identifier cannot be matched (malformed date range ...): C-FIND status 0xA900."""


# keyword -> (column, kind).  Kinds: text (single/wildcard), pn, date, uid (list), multi (value list).
TOP_LEVEL_KEYS: dict[str, tuple[str, str]] = {
    "PatientName": ("p.name_norm", "pn"),
    "PatientID": ("p.patient_id", "text"),
    "IssuerOfPatientID": ("p.issuer", "text"),
    "PatientBirthDate": ("p.birth_date", "date"),
    "PatientSex": ("p.sex", "text"),
    "ReferringPhysicianName": ("p.referring_physician_norm", "pn"),
    "AdmissionID": ("p.admission_id", "text"),
    "AccessionNumber": ("r.accession_number", "text"),
    "RequestedProcedureID": ("r.requested_procedure_id", "text"),
    "StudyInstanceUID": ("r.study_instance_uid", "uid"),
    "RequestedProcedurePriority": ("r.priority", "text"),
    "RequestingPhysician": ("r.requesting_physician_norm", "pn"),
    "PlacerOrderNumberImagingServiceRequest": ("o.placer_order_number", "text"),
    "FillerOrderNumberImagingServiceRequest": ("o.filler_order_number", "text"),
}
STEP_KEYS: dict[str, tuple[str, str]] = {
    "ScheduledStationAETitle": ("s.station_ae_title", "text"),
    "Modality": ("s.modality", "text"),
    "ScheduledPerformingPhysicianName": ("s.performing_physician_norm", "pn"),
    "ScheduledStationName": ("s.station_name", "text"),
    "ScheduledProcedureStepLocation": ("s.location", "text"),
    "ScheduledProcedureStepID": ("s.sps_id", "text"),
    "ScheduledProcedureStepStatus": ("s.status", "multi"),
}
START_DATE, START_TIME = "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime"
CODE_KEYS = {"CodeValue": "r.procedure_code_value", "CodingSchemeDesignator": "r.procedure_code_scheme"}
OFFERED_BY_DEFAULT = ("SCHEDULED", "ARRIVED", "READY")

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")

SELECT = (
    "SELECT s.id AS step_ref, s.sps_id, s.status, s.station_ae_title, s.station_name, s.location, s.modality,"
    " s.start_datetime,"
    " s.attributes AS step_attributes, r.accession_number, r.requested_procedure_id, r.study_instance_uid,"
    " r.attributes AS procedure_attributes, o.placer_order_number, o.filler_order_number,"
    " p.patient_id, p.issuer, p.attributes AS patient_attributes"
    " FROM scheduled_steps s"
    " JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
    " JOIN orders o ON o.id = r.order_ref"
    " JOIN patients p ON p.id = o.patient_ref")


@dataclass
class WorklistQuery:
    sql: str
    params: list[str] = field(default_factory=list)


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _text_condition(column: str, value: str, where: list[str], params: list[str]) -> None:
    value = value.strip()
    if value in ("", "*"):
        return
    if "*" in value or "?" in value:
        where.append(f"{column} LIKE ? ESCAPE '\\'")
        params.append(_like(value))
    else:
        where.append(f"{column} = ?")
        params.append(value)


def _pn_key(value: str) -> str:
    """A PN key compared like the stored normalised column: upper case, accents folded, trailing ^ dropped."""
    return normalise_name(value).rstrip("^")


def _check_date(value: str, keyword: str) -> str:
    if value and not _DATE.match(value):
        raise QueryError(f"{keyword}: malformed date {value!r}")
    if value:
        try:
            date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            raise QueryError(f"{keyword}: invalid date {value!r}") from None
    return value


def _split_range(value: str, keyword: str) -> tuple[str, str, bool]:
    """``a-b`` / ``-b`` / ``a-`` / ``a`` -> (low, high, is_range).  ``-`` alone and ``a-b-c`` are malformed."""
    value = value.strip()
    if value.count("-") > 1 or value == "-":
        raise QueryError(f"{keyword}: malformed range {value!r}")
    if "-" in value:
        low, high = value.split("-")
        return low.strip(), high.strip(), True
    return value, value, False


def _time_bounds(value: str, keyword: str) -> tuple[str, str]:
    """A TM value -> the first and last instant it covers, as HHMMSS.ffffff strings."""
    match = _TIME.match(value)
    if not match:
        raise QueryError(f"{keyword}: malformed time {value!r}")
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        raise QueryError(f"{keyword}: invalid time {value!r}")
    low = f"{hours}{minutes or '00'}{seconds or '00'}.{(fraction or '.')[1:].ljust(6, '0')}"
    high = f"{hours}{minutes or '59'}{seconds or '59'}.{(fraction or '.')[1:].ljust(6, '9')}"
    return low, high


def _date_condition(column: str, value: str, keyword: str, where: list[str], params: list[str]) -> None:
    """DA single value or range on a column holding YYYYMMDD; an empty stored date never matches."""
    low, high, _ = _split_range(value, keyword)
    _check_date(low, keyword), _check_date(high, keyword)
    if low:
        where.append(f"{column} >= ?")
        params.append(low)
    if high:
        where.append(f"{column} <= ?")
        params.append(high)
    if low or high:
        where.append(f"{column} <> ''")


def _start_conditions(date_key: str, time_key: str, where: list[str], params: list[str]) -> None:
    """SPS Start Date/Time, matched as one combined date-time when both are given (SWF.md 5.3).

    Lower bound = date1 + time1 (no time: 00:00), upper bound = date2 + time2 (no time: end of the day; a
    partial time extends to the end of its precision).  A time key alone is matched against the time of
    day on any date.  An item without a start never matches a non-empty key."""
    column = "s.start_datetime"
    date_key, time_key = (date_key or "").strip(), (time_key or "").strip()
    if not date_key and not time_key:
        return
    # Every bound is validated, also those the combination below does not use.
    time_low, time_high = ("", "")
    if time_key:
        time_low, time_high, _ = _split_range(time_key, START_TIME)
    low_instant = _time_bounds(time_low, START_TIME)[0] if time_low else "000000.000000"
    high_instant = _time_bounds(time_high, START_TIME)[1] if time_high else "235959.999999"
    if date_key:
        date_low, date_high, _ = _split_range(date_key, START_DATE)
        _check_date(date_low, START_DATE), _check_date(date_high, START_DATE)
    where.append(f"{column} <> ''")
    if not date_key:  # time of day only, any date
        if time_low:
            where.append(f"substr({column}, 9, 13) >= ?")
            params.append(low_instant)
        if time_high:
            where.append(f"substr({column}, 9, 13) <= ?")
            params.append(high_instant)
        return
    if date_low:
        where.append(f"{column} >= ?")
        params.append(date_low + low_instant)
    if date_high:
        where.append(f"{column} <= ?")
        params.append(date_high + high_instant)


def build_worklist_query(top: dict[str, str], step: dict[str, str], code: dict[str, str] | None = None,
                         offered_statuses: tuple[str, ...] = OFFERED_BY_DEFAULT,
                         station_restriction: tuple[str, ...] = ()) -> WorklistQuery:
    """SQL for the request's keys; ``station_restriction`` limits a calling AE to its own stations."""
    where: list[str] = []
    params: list[str] = []
    for keys, table in ((top, TOP_LEVEL_KEYS), (step, STEP_KEYS)):
        for keyword, raw in keys.items():
            if keyword not in table:
                continue
            column, kind = table[keyword]
            value = (raw or "").strip()
            if not value:
                continue
            if kind == "text":
                _text_condition(column, value, where, params)
            elif kind == "pn":
                if value.strip("*") == "" and "*" in value:
                    continue
                _text_condition(column, _pn_key(value), where, params)
            elif kind == "date":
                _date_condition(column, value, keyword, where, params)
            elif kind == "multi" and "\\" not in value:
                _text_condition(column, value, where, params)  # one value: single or wildcard matching
            elif kind in ("uid", "multi"):
                values = list(dict.fromkeys(v.strip() for v in value.split("\\") if v.strip()))
                if not values:
                    continue
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
    _start_conditions(step.get(START_DATE, ""), step.get(START_TIME, ""), where, params)
    for keyword, column in CODE_KEYS.items():
        if code and code.get(keyword, "").strip():
            _text_condition(column, code[keyword], where, params)
    if not (step.get("ScheduledProcedureStepStatus") or "").strip():
        # ``|| ''`` keeps SQLite (which has no statistics) from reading through the status index, which
        # holds most rows under these values; it then starts from the index of a selective key instead.
        where.append(f"(s.status || '') IN ({', '.join('?' for _ in offered_statuses)})")
        params.extend(offered_statuses)
    if station_restriction:
        where.append(f"s.station_ae_title IN ({', '.join('?' for _ in station_restriction)})")
        params.extend(station_restriction)
    # No ORDER BY: SQLite would then rather walk the start index in order than use the index of a selective
    # key (patient name prefix, SPS ID ...).  Callers sort the (few) matches by (start_datetime, step_ref).
    sql = SELECT + (" WHERE " + " AND ".join(where) if where else "")
    return WorklistQuery(sql, params)


def top_level_keys() -> set[str]:
    """Keywords matched at the top level of the identifier."""
    return set(TOP_LEVEL_KEYS)


def step_keys() -> set[str]:
    """Keywords matched inside the one Scheduled Procedure Step Sequence item."""
    return set(STEP_KEYS) | {START_DATE, START_TIME}


def supported_keys() -> set[str]:
    return top_level_keys() | step_keys()
