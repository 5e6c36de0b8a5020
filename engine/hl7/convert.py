"""HL7 v2 data type -> DICOM value conversions (SWF.md section 3.3).  Pure functions of decoded text."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

# Re-exported until engine/store/matching.py and engine/workflow/storage.py import it from engine/domain.
from ..domain.matching_keys import normalise_name  # noqa: F401

SEX = {"F": "F", "M": "M", "O": "O", "A": "O", "N": "O"}
PRIORITY = {"S": "STAT", "A": "HIGH", "P": "HIGH", "C": "HIGH", "R": "ROUTINE", "T": "MEDIUM"}


class ConversionError(ValueError):
    """A value cannot be converted (date/time, number, name, coding system); the message gets AE, ERR 102."""


# Characters a DICOM PN component cannot hold: its own separators (^ = and the value separator \) and
# control characters (an HL7 \.br\ escape decodes to CR LF); ESC stays, ISO 2022 names need it.
_PN_FORBIDDEN = re.compile(r"[\^=\\\x00-\x1a\x1c-\x1f\x7f]")


def _pn(components: list[str]) -> str:
    for component in components:
        bad = _PN_FORBIDDEN.search(component)
        if bad:
            raise ConversionError(f"name component {component!r} holds {bad.group()!r}, which a DICOM name cannot")
    return "^".join(components).rstrip("^")


def xpn_to_pn(components: list[str]) -> str:
    """XPN family^given^middle^suffix^prefix^degree -> PN family^given^middle^prefix^suffix."""
    c = (components + [""] * 7)[:7]
    suffix = " ".join(part for part in (c[3], c[5]) if part)
    return _pn([c[0], c[1], c[2], c[4], suffix])


def xcn_to_pn(components: list[str]) -> str:
    """XCN id^family^given^middle^suffix^prefix^degree -> PN (the ID is not part of the name)."""
    c = (components + [""] * 8)[:8]
    suffix = " ".join(part for part in (c[4], c[6]) if part)
    return _pn([c[1], c[2], c[3], c[5], suffix])


_TS = re.compile(r"^(\d+)(\.\d+)?([+-]\d{4})?$", re.ASCII)


def parse_ts(value: str, local_zone: tzinfo | None = None) -> tuple[str, str]:
    """HL7 TS/DTM -> (DA, TM).  An explicit offset is converted to the engine's local zone.

    ``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]``; a fraction needs seconds (kept to 6 digits, the most a
    DICOM TM holds).  Anything else raises ``ConversionError``.
    """
    original = value
    value = value.strip()
    if not value:
        return "", ""
    match = _TS.match(value)
    if not match:
        raise ConversionError(f"not an HL7 date/time: {original!r}")
    digits, fraction, offset = match.group(1), match.group(2) or "", match.group(3) or ""
    if len(digits) < 4 or len(digits) > 14 or len(digits) % 2 or (fraction and len(digits) != 14):
        raise ConversionError(f"not an HL7 date/time: {original!r}")
    fraction = fraction[:7]
    if offset and (int(offset[1:3]) > 23 or int(offset[3:5]) > 59):
        raise ConversionError(f"invalid time zone offset {offset!r}")
    padded = (digits + "0101")[:8] if len(digits) < 8 else digits
    full = padded[:14].ljust(14, "0")
    try:  # datetime() validates like strptime at a fraction of its cost (this runs for every order)
        stamp = datetime(int(full[:4]), int(full[4:6]), int(full[6:8]), int(full[8:10]), int(full[10:12]),
                         int(full[12:14]))
    except ValueError as exc:
        raise ConversionError(f"invalid date/time {original!r}: {exc}") from None
    if offset and len(digits) > 8:
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        zone = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
        target = local_zone or datetime.now().astimezone().tzinfo
        try:
            stamp = stamp.replace(tzinfo=zone).astimezone(target)
        except (OverflowError, ValueError) as exc:
            raise ConversionError(f"invalid date/time {original!r}: {exc}") from None
        full = stamp.strftime("%H%M%S")
        width = len(digits) - 8
        while width < 6 and full[width:].strip("0"):
            width += 2  # a half-hour offset must not lose the minutes of an hour-precision value
        return stamp.strftime("%Y%m%d"), full[:width] + fraction
    date = digits[:8]
    time = digits[8:] + fraction if len(digits) > 8 else ""
    return date, time


_NM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$", re.ASCII)


def number(value: str) -> str:
    """HL7 NM (optional sign, digits, optional decimal point) -> the same text; else ``ConversionError``.

    Stricter than ``float()``: exponents, ``nan`` and ``inf`` are not HL7 numbers and no DICOM DS either."""
    value = value.strip()
    if not _NM.match(value):
        raise ConversionError(f"not an HL7 number (NM): {value!r}")
    return value


def sex(value: str) -> str:
    return SEX.get(value.strip().upper(), "")


def priority(value: str) -> str:
    return PRIORITY.get(value.strip().upper(), "")


def code_item(value: str, scheme: str, meaning: str, schemes: dict[str, str]) -> dict[str, str] | None:
    """CE/CWE -> a DICOM code item; None unless value, scheme and meaning are all known."""
    scheme = schemes.get(scheme, scheme)
    if not (value and scheme and meaning):
        return None
    if len(scheme) > 16:
        raise ConversionError(f"coding system {scheme!r} longer than 16 characters (DICOM SH)")
    item = {"CodingSchemeDesignator": scheme, "CodeMeaning": meaning[:64]}
    item["CodeValue" if len(value) <= 16 else "LongCodeValue"] = value
    return item
