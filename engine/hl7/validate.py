"""Strict structural validation with hl7apy, on demand (``swf validate``), never on the hot path.

hl7apy knows every message structure of every HL7 version; a full parse costs ~10-40 ms, so the
listener does not use it.  Users run it to see why a partner's message deviates from the standard.
"""
from __future__ import annotations

from dataclasses import dataclass

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from .message import HL7ParseError, Message, decode_bytes

# hl7apy models choice groups (e.g. ORM^O01's OBR|RQD|RQ1|RXO|ODS|ODT) as if every branch were
# required; such findings are not real problems and are left out.
_CHOICE_MARKERS = ("_CHOICE", "SUPPGRP")


@dataclass
class ValidationReport:
    control_id: str
    message_code: str
    version: str
    problems: list[str]


def validate(raw: bytes, default_charset: str = "latin-1") -> ValidationReport:
    try:
        text, codec = decode_bytes(raw, default_charset)
        message = Message(text, codec)
    except HL7ParseError as exc:
        return ValidationReport("", "", "", [f"unreadable: {exc.reason}"])
    # Z segments are site extensions (ZDS carries the Study Instance UID): not part of the standard.
    standard = "\r".join(line for line in message.text.split("\r") if not line.startswith("Z"))
    problems: list[str] = []
    try:
        parsed = parse_message(standard, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except HL7apyException as exc:
        finding = str(exc)
        if not any(marker in finding for marker in _CHOICE_MARKERS):
            problems.append(finding)
    except Exception as exc:  # noqa: BLE001 - hl7apy raises plain errors on some inputs
        problems.append(f"{type(exc).__name__}: {exc}")
    return ValidationReport(message.control_id, message.message_code, message.version, problems)
