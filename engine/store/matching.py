"""DICOM matching keys -> SQL conditions, shared by the worklist (RAD-5) and Q/R (RAD-11) queries.

Single value, ``*``/``?`` wildcards (LIKE with ``%``/``_``/``\\`` escaped), PN keys compared with the stored
upper-cased accent-folded column, DA/TM ranges (inclusive, open sides allowed), lists of UIDs.
"""
from __future__ import annotations

import re
from datetime import date
from typing import Any

from ..domain.uid import uid_problem
from ..hl7.convert import normalise_name

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")
# Far above any DICOM value (LO 64, PN 3 x 64 characters) and far below what SQLite can match: a LIKE
# pattern over 50,000 bytes fails the whole statement ("LIKE or GLOB pattern too complex").
MAX_PATTERN_CHARS = 1024
# A list of UIDs is one SQL variable each (SQLite allows 32,766 per statement).
MAX_LIST_VALUES = 1000


class QueryError(ValueError):
    """The identifier cannot be matched (malformed date, range, level ...): C-FIND status 0xA900."""


def like_pattern(pattern: str) -> str:
    """A DICOM wildcard value as a LIKE pattern; QueryError (0xA900) for one too long to match."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise QueryError(f"wildcard value of {len(pattern)} characters (at most {MAX_PATTERN_CHARS})")
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def text_condition(column: str, value: str, where: list[str], params: list[Any]) -> None:
    """Single value or wildcard match; empty and ``*`` are universal (no condition)."""
    value = value.strip()
    if value in ("", "*"):
        return
    if "*" in value or "?" in value:
        where.append(f"{column} LIKE ? ESCAPE '\\'")
        params.append(like_pattern(value))
    else:
        where.append(f"{column} = ?")
        params.append(value)


def pn_key(value: str) -> str:
    """A PN key compared like the stored normalised column: upper case, accents folded, trailing ^ dropped."""
    return normalise_name(value).rstrip("^")


def in_condition(column: str, values: list[str], where: list[str], params: list[Any]) -> None:
    where.append(f"{column} IN ({', '.join('?' for _ in values)})")
    params.extend(values)


def value_list(value: str) -> list[str]:
    """The values of a list key (backslash separated), each once; QueryError (0xA900) for too many."""
    values = list(dict.fromkeys(v.strip() for v in value.split("\\") if v.strip()))
    if len(values) > MAX_LIST_VALUES:
        raise QueryError(f"list of {len(values)} values (at most {MAX_LIST_VALUES})")
    return values


def uid_list(value: str, keyword: str = "") -> list[str]:
    """The UIDs of a list-of-UIDs key; QueryError (0xA900) for a value that is not a UID, or too many."""
    uids = value_list(value)
    for uid in uids:
        problem = uid_problem(uid, leading_zeros=True)   # a query reads only (domain/uid.py)
        if problem:
            raise QueryError(f"{keyword}: {problem}" if keyword else problem)
    return uids


def split_range(value: str, keyword: str) -> tuple[str, str, bool]:
    """``a-b`` / ``-b`` / ``a-`` / ``a`` -> (low, high, is_range).  ``-`` alone and ``a-b-c`` are malformed."""
    value = value.strip()
    if value.count("-") > 1 or value == "-":
        raise QueryError(f"{keyword}: malformed range {value!r}")
    if "-" in value:
        low, high = value.split("-")
        return low.strip(), high.strip(), True
    return value, value, False


def check_date(value: str, keyword: str) -> str:
    if value and not _DATE.match(value):
        raise QueryError(f"{keyword}: malformed date {value!r}")
    if value:
        try:
            date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            raise QueryError(f"{keyword}: invalid date {value!r}") from None
    return value


def time_bounds(value: str, keyword: str) -> tuple[str, str]:
    """A TM value -> the first and last instant it covers, as HHMMSS.ffffff strings (``1200`` -> 12:00:59.999999)."""
    match = _TIME.match(value)
    if not match:
        raise QueryError(f"{keyword}: malformed time {value!r}")
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        raise QueryError(f"{keyword}: invalid time {value!r}")
    low = f"{hours}{minutes or '00'}{seconds or '00'}.{(fraction or '.')[1:].ljust(6, '0')}"
    high = f"{hours}{minutes or '59'}{seconds or '59'}.{(fraction or '.')[1:].ljust(6, '9')}"
    return low, high


def date_condition(column: str, value: str, keyword: str, where: list[str], params: list[Any]) -> None:
    """DA single value or range on a column holding YYYYMMDD; an empty stored date never matches."""
    low, high, _ = split_range(value, keyword)
    check_date(low, keyword), check_date(high, keyword)
    if low:
        where.append(f"{column} >= ?")
        params.append(low)
    if high:
        where.append(f"{column} <= ?")
        params.append(high)
    if low or high:
        where.append(f"{column} <> ''")


def time_condition(column: str, value: str, keyword: str, where: list[str], params: list[Any]) -> None:
    """TM single value or range on a column holding HHMMSS[.ffffff]; an empty stored time never matches."""
    low, high, _ = split_range(value, keyword)
    if low:
        where.append(f"{column} >= ?")
        params.append(time_bounds(low, keyword)[0])
    if high:
        where.append(f"{column} <= ?")
        params.append(time_bounds(high, keyword)[1])
    if low or high:
        where.append(f"{column} <> ''")
