"""Modality Worklist matching (SWF.md section 5) translated into one SQL query.

Input is plain: top-level keys and the keys of the one Scheduled Procedure Step Sequence item, as
DICOM keyword -> string (multi-valued UIDs joined by backslash).  Every supported key becomes a WHERE
condition on an indexed column; nothing is filtered row by row in Python.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

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
CODE_KEYS = {"CodeValue": "r.procedure_code_value", "CodingSchemeDesignator": "r.procedure_code_scheme"}
OFFERED_BY_DEFAULT = ("SCHEDULED", "ARRIVED", "READY")

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")

SELECT = (
    "SELECT s.id AS step_ref, s.sps_id, s.status, s.station_ae_title, s.station_name, s.location, s.modality,"
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
        from datetime import datetime

        try:
            datetime.strptime(value, "%Y%m%d")
        except ValueError:
            raise QueryError(f"{keyword}: invalid date {value!r}") from None
    return value


def _split_range(value: str, keyword: str) -> tuple[str, str, bool]:
    """``a-b`` / ``-b`` / ``a-`` / ``a`` -> (low, high, is_range)."""
    if value.count("-") > 1:
        raise QueryError(f"{keyword}: malformed range {value!r}")
    if "-" in value:
        low, high = value.split("-")
        return low.strip(), high.strip(), True
    return value.strip(), value.strip(), False


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
    """SPS Start Date/Time, matched as one combined date-time when both are given (SWF.md 5.3)."""
    column = "s.start_datetime"
    date_key, time_key = date_key.strip(), time_key.strip()
    if not date_key and not time_key:
        return
    where.append(f"{column} <> ''")
    if not date_key:  # time of day only, any date
        low, high, _ = _split_range(time_key, "ScheduledProcedureStepStartTime")
        if low:
            where.append(f"substr({column}, 9, 13) >= ?")
            params.append(_time_bounds(low, "ScheduledProcedureStepStartTime")[0])
        if high:
            where.append(f"substr({column}, 9, 13) <= ?")
            params.append(_time_bounds(high, "ScheduledProcedureStepStartTime")[1])
        return
    date_low, date_high, _ = _split_range(date_key, "ScheduledProcedureStepStartDate")
    _check_date(date_low, "ScheduledProcedureStepStartDate"), _check_date(date_high, "ScheduledProcedureStepStartDate")
    time_low, time_high = ("", "")
    if time_key:
        time_low, time_high, _ = _split_range(time_key, "ScheduledProcedureStepStartTime")
    if date_low:
        start = _time_bounds(time_low, "ScheduledProcedureStepStartTime")[0] if time_low else "000000.000000"
        where.append(f"{column} >= ?")
        params.append(date_low + start)
    if date_high:
        end = _time_bounds(time_high, "ScheduledProcedureStepStartTime")[1] if time_high else "235959.999999"
        where.append(f"{column} <= ?")
        params.append(date_high + end)


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
            elif kind in ("uid", "multi"):
                values = [v.strip() for v in value.split("\\") if v.strip()]
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
    _start_conditions(step.get("ScheduledProcedureStepStartDate", ""), step.get("ScheduledProcedureStepStartTime", ""),
                      where, params)
    for keyword, column in CODE_KEYS.items():
        if code and code.get(keyword, "").strip():
            _text_condition(column, code[keyword], where, params)
    if not (step.get("ScheduledProcedureStepStatus") or "").strip():
        where.append(f"s.status IN ({', '.join('?' for _ in offered_statuses)})")
        params.extend(offered_statuses)
    if station_restriction:
        where.append(f"s.station_ae_title IN ({', '.join('?' for _ in station_restriction)})")
        params.extend(station_restriction)
    sql = SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.start_datetime, s.id"
    return WorklistQuery(sql, params)


def supported_keys() -> set[str]:
    return set(TOP_LEVEL_KEYS) | set(STEP_KEYS) | {"ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime"}
