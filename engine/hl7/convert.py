"""HL7 v2 data type -> DICOM value conversions (SWF.md section 3.3).  Pure functions of decoded text."""
from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta, timezone

SEX = {"F": "F", "M": "M", "O": "O", "A": "O", "N": "O"}
PRIORITY = {"S": "STAT", "A": "HIGH", "P": "HIGH", "C": "HIGH", "R": "ROUTINE", "T": "MEDIUM"}
CHARSET_TO_DICOM = {
    "8859/1": "ISO_IR 100", "8859/2": "ISO_IR 101", "8859/3": "ISO_IR 109", "8859/4": "ISO_IR 110",
    "8859/5": "ISO_IR 144", "8859/6": "ISO_IR 127", "8859/7": "ISO_IR 126", "8859/8": "ISO_IR 138",
    "8859/9": "ISO_IR 148", "UNICODE UTF-8": "ISO_IR 192", "UNICODE": "ISO_IR 192", "ISO IR14": "ISO_IR 13",
    "ISO IR87": "ISO 2022 IR 87", "ISO IR159": "ISO 2022 IR 159", "KS X 1001": "ISO 2022 IR 149",
    "GB 18030-2000": "GB18030",
}


class ConversionError(ValueError):
    """A value cannot be converted (bad date, bad time); the message gets AE with ERR 102."""


def _pn(components: list[str]) -> str:
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


def normalise_name(pn: str) -> str:
    """Upper-cased, accent-folded alphabetic group of a PN: the column PN matching compares."""
    alphabetic = pn.split("=")[0].rstrip("^")
    folded = unicodedata.normalize("NFKD", alphabetic)
    return "".join(ch for ch in folded if not unicodedata.combining(ch)).upper()


def parse_ts(value: str, local_zone: timezone | None = None) -> tuple[str, str]:
    """HL7 TS/DTM -> (DA, TM).  An explicit offset is converted to the engine's local zone."""
    value = value.strip()
    if not value:
        return "", ""
    offset = ""
    for sign in ("+", "-"):
        if sign in value[8:]:
            position = value.index(sign, 8)
            value, offset = value[:position], value[position:]
            break
    digits = value.split(".")[0]
    fraction = value[len(digits):]
    if not digits.isdigit() or len(digits) < 4 or len(digits) % 2:
        raise ConversionError(f"not an HL7 date/time: {value + offset!r}")
    padded = (digits + "0101")[:8] if len(digits) < 8 else digits
    try:
        stamp = datetime.strptime(padded[:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise ConversionError(f"invalid date/time {value + offset!r}: {exc}") from None
    if offset and len(digits) > 8:
        if len(offset) != 5 or not offset[1:].isdigit():
            raise ConversionError(f"invalid time zone offset {offset!r}")
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        zone = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
        target = local_zone or datetime.now().astimezone().tzinfo
        stamp = stamp.replace(tzinfo=zone).astimezone(target)
        return stamp.strftime("%Y%m%d"), stamp.strftime("%H%M%S")[:len(digits) - 8] + fraction
    date = digits[:8]
    time = digits[8:] + fraction if len(digits) > 8 else ""
    return date, time


def sortable_datetime(date: str, time: str) -> str:
    """``YYYYMMDDHHMMSS.ffffff`` (time padded with zeros) so that string order is time order."""
    if not date:
        return ""
    whole, _, fraction = time.partition(".")
    return f"{date}{whole.ljust(6, '0')}.{fraction.ljust(6, '0')[:6]}"


def sex(value: str) -> str:
    return SEX.get(value.strip().upper(), "")


def priority(value: str) -> str:
    return PRIORITY.get(value.strip().upper(), "")


def code_item(value: str, scheme: str, meaning: str, schemes: dict[str, str]) -> dict[str, str] | None:
    """CE/CWE -> a DICOM code item; None unless value, scheme and meaning are all known."""
    scheme = schemes.get(scheme, scheme)
    if not (value and scheme and meaning):
        return None
    item = {"CodingSchemeDesignator": scheme, "CodeMeaning": meaning[:64]}
    item["CodeValue" if len(value) <= 16 else "LongCodeValue"] = value
    return item
