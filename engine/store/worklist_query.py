"""Modality Worklist matching (SWF.md section 5) translated into one SQL query.

Input is plain: top-level keys and the keys of the one Scheduled Procedure Step Sequence item, as
DICOM keyword -> string (multi-valued UIDs joined by backslash).  Every supported key becomes a WHERE
condition on an indexed column; nothing is filtered row by row in Python.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .matching import (check_date, date_condition, pn_key, split_range, text_condition, time_bounds, uid_list,
                       value_list)


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
        time_low, time_high, _ = split_range(time_key, START_TIME)
    low_instant = time_bounds(time_low, START_TIME)[0] if time_low else "000000.000000"
    high_instant = time_bounds(time_high, START_TIME)[1] if time_high else "235959.999999"
    if date_key:
        date_low, date_high, _ = split_range(date_key, START_DATE)
        check_date(date_low, START_DATE), check_date(date_high, START_DATE)
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


def _matches_key(value: str, text: str) -> bool:
    """Whether ``text`` matches a single-value or wildcard key (``*``, ``?``; case-sensitive, as the SQL)."""
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.fullmatch(pattern, text, re.DOTALL) is not None


def _station_condition(value: str, default_station: str, where: list[str], params: list[str]) -> None:
    """Scheduled Station AE Title when steps stored without a station are offered as ``default_station``:
    they match wherever that AE title itself would."""
    condition: list[str] = []
    text_condition("s.station_ae_title", value, condition, params)
    if condition and _matches_key(value, default_station):
        condition = [f"({condition[0]} OR s.station_ae_title = '')"]
    where.extend(condition)


def build_worklist_query(top: dict[str, str], step: dict[str, str], code: dict[str, str] | None = None,
                         offered_statuses: tuple[str, ...] = OFFERED_BY_DEFAULT,
                         station_restriction: tuple[str, ...] = (), default_station: str = "") -> WorklistQuery:
    """SQL for the request's keys; ``station_restriction`` limits a calling AE to its own stations;
    ``default_station`` (orders.default_station_ae) is the AE title of the steps stored without one."""
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
            if keyword == "ScheduledStationAETitle" and default_station:
                _station_condition(value, default_station, where, params)
            elif kind == "text":
                text_condition(column, value, where, params)
            elif kind == "pn":
                if value.strip("*") == "" and "*" in value:
                    continue
                text_condition(column, pn_key(value), where, params)
            elif kind == "date":
                date_condition(column, value, keyword, where, params)
            elif kind == "multi" and "\\" not in value:
                text_condition(column, value, where, params)  # one value: single or wildcard matching
            elif kind in ("uid", "multi"):
                values = uid_list(value, keyword) if kind == "uid" else value_list(value)
                if not values:
                    continue
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
    _start_conditions(step.get(START_DATE, ""), step.get(START_TIME, ""), where, params)
    for keyword, column in CODE_KEYS.items():
        if code and code.get(keyword, "").strip():
            text_condition(column, code[keyword], where, params)
    if not (step.get("ScheduledProcedureStepStatus") or "").strip():
        # ``|| ''`` keeps SQLite (which has no statistics) from reading through the status index, which
        # holds most rows under these values; it then starts from the index of a selective key instead.
        where.append(f"(s.status || '') IN ({', '.join('?' for _ in offered_statuses)})")
        params.extend(offered_statuses)
    where.append("s.aged_out_at = ''")   # aged out with age_out.mode remove (engine/workflow/housekeeping.py)
    where.append("s.off_worklist = ''")   # taken off without MPPS (drop_on_study_arrival, images_without_mpps.py)
    if station_restriction:
        stations = station_restriction + (("",) if default_station in station_restriction else ())
        where.append(f"s.station_ae_title IN ({', '.join('?' for _ in stations)})")
        params.extend(stations)
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
