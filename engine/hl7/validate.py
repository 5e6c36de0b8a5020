"""Strict structural validation with hl7apy, on demand (``swf validate``), never on the hot path.

hl7apy knows every message structure of every HL7 version; a full parse costs ~10-40 ms, so the
listener does not use it.  Users run it to see why a partner's message deviates from the standard, so
each problem names the segment and field at fault, and each message is checked against the version its
own MSH-12 names, with the structure its event has in that version.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from hl7apy import SUPPORTED_LIBRARIES, load_library
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import get_message_info, parse_field, parse_message, parse_segment

from .message import HL7ParseError, Message, decode_bytes

# hl7apy models choice groups (e.g. ORM^O01's OBR|RQD|RQ1|RXO|ODS|ODT) as if every branch were
# required; such findings are not real problems and are left out.
_CHOICE_MARKERS = ("_CHOICE", "SUPPGRP")


# hl7apy names a field SEGMENT.SEGMENT_N ("Missing required child PID.PID_3"): we say PID-3.
_ELEMENT = re.compile(r"\b([A-Z][A-Z0-9]{2})\.\1_(\d+)\b")
_GROUP_CHILD = re.compile(r"\b([A-Z]{3}_[A-Z0-9]{3}_[A-Z0-9_]+)\.([A-Z][A-Z0-9]{2})\b")


def _events(structure_of: dict[str, str]) -> dict[str, str]:
    """{"ADT_A01": "A01 A04"} -> {"A01": "ADT_A01", "A04": "ADT_A01"}"""
    return {event: structure for structure, events in structure_of.items() for event in events.split()}


# HL7 table 0354: the message structure of each ADT event, where it is not ADT_<event>.  MSH-9.3 names it,
# but v2.3.1 senders (and many later ones) leave it empty; hl7apy then guesses ADT_<event>, which does not
# exist for A04, A08, A40 ... ("Cannot instantiate an unknown Element").  v2.4 gave A05/A14/A28/A31,
# A15, A21-A33 and A37 structures of their own.
_ADT_BEFORE_2_4 = _events({
    "ADT_A01": "A04 A05 A08 A13 A14 A28 A31", "ADT_A06": "A07",
    "ADT_A09": "A10 A11 A15 A21 A22 A23 A25 A26 A27 A29 A32 A33", "ADT_A30": "A34 A35 A36 A46 A47 A48 A49",
    "ADT_A38": "A37", "ADT_A39": "A40 A41 A42", "ADT_A43": "A44", "ADT_A50": "A51",
})
_ADT_FROM_2_4 = _events({
    "ADT_A01": "A04 A08 A13", "ADT_A05": "A14 A28 A31", "ADT_A06": "A07", "ADT_A09": "A10 A11",
    "ADT_A21": "A22 A23 A25 A26 A27 A29 A32 A33", "ADT_A30": "A34 A35 A36 A46 A47 A48 A49",
    "ADT_A39": "A40 A41 A42", "ADT_A43": "A44", "ADT_A50": "A51", "ADT_A52": "A53", "ADT_A54": "A55",
    "ADT_A61": "A62",
})


@dataclass
class ValidationReport:
    control_id: str
    message_code: str
    version: str
    problems: list[str]


def message_structure(message_type: str, event: str, version: str) -> str:
    """The structure (table 0354) of a message type and event in an HL7 version: ADT^A04 -> ADT_A01."""
    if message_type == "ADT":
        before_2_4 = version.split(".")[:2] in (["2", "1"], ["2", "2"], ["2", "3"])
        structure = (_ADT_BEFORE_2_4 if before_2_4 else _ADT_FROM_2_4).get(event)
        if structure:
            return structure
    return f"{message_type}_{event}"


def _with_structure(text: str, message: Message, structure: str) -> str:
    """The text to validate, MSH-9.3 filled in with the event's structure when the sender left it empty."""
    if message.get("MSH-9.3"):
        return text
    msh, _, rest = text.partition("\r")
    fields, component = msh.split(msh[3]), msh[4]
    fields[8] = component.join((message.get("MSH-9.1"), message.get("MSH-9.2"), structure))  # MSH-9
    return "\r".join(filter(None, (msh[3].join(fields), rest)))


def _named(finding: str) -> str:
    """hl7apy's element names as HL7 users write them: PID.PID_3 -> PID-3, ADT_A39_PATIENT.MRG -> MRG
    segment (group ADT_A39_PATIENT)."""
    return _GROUP_CHILD.sub(r"\2 segment (group \1)", _ELEMENT.sub(r"\1-\2", finding))


def _field_problem(segment: str, version: str, encoding_chars: dict) -> str:
    """The first field of a segment hl7apy refuses on its own, as ``PID-13 '+45...': reason``; else ''."""
    name, separator = segment[:3], encoding_chars["FIELD"]
    values = segment.split(separator)
    # MSH-1 is the field separator itself: MSH-2 is values[1], MSH-n values[n - 1]
    numbered = list(enumerate(values[1:], start=2 if name == "MSH" else 1))
    for number, value in numbered:
        if not value or (name == "MSH" and number <= 2):
            continue
        for repetition in value.split(encoding_chars["REPETITION"]):
            try:
                parse_field(repetition, name=f"{name}_{number}", version=version, encoding_chars=encoding_chars,
                            validation_level=VALIDATION_LEVEL.STRICT)
            except Exception as exc:  # noqa: BLE001 - hl7apy raises plain errors for bad values
                return f"{name}-{number} {repetition!r}: {exc}"
    return ""


def _locate(segments: list[str], version: str, encoding_chars: dict) -> str:
    """Which segment / field a message-level finding comes from, found by checking each on its own."""
    for index, segment in enumerate(segments, start=1):
        try:
            parse_segment(segment, version=version, encoding_chars=encoding_chars,
                          validation_level=VALIDATION_LEVEL.STRICT)
        except Exception as exc:  # noqa: BLE001 - hl7apy raises plain errors for bad values
            return _field_problem(segment, version, encoding_chars) or f"{segment[:3]} (segment {index}): {exc}"
    return ""


def validate(raw: bytes, default_charset: str = "latin-1") -> ValidationReport:
    try:
        text, codec = decode_bytes(raw, default_charset)
        message = Message(text, codec)
    except HL7ParseError as exc:
        return ValidationReport("", "", "", [f"unreadable: {exc.reason}"])
    report = ValidationReport(message.control_id, message.message_code, message.version, [])
    if message.version not in SUPPORTED_LIBRARIES:
        known = ", ".join(sorted(SUPPORTED_LIBRARIES, key=lambda v: [int(p) for p in v.split(".")]))
        report.problems.append(f"MSH-12 {message.version!r}: not an HL7 version hl7apy knows ({known})")
        return report
    # Z segments are site extensions (ZDS carries the Study Instance UID): not part of the standard.
    segments = [line for line in message.text.split("\r") if line and not line.startswith("Z")]
    known = load_library(message.version).MESSAGES
    message_type, event, given = message.get("MSH-9.1"), message.get("MSH-9.2"), message.get("MSH-9.3")
    structure = given or message_structure(message_type, event, message.version)
    if structure not in known:
        expected = message_structure(message_type, event, message.version)
        if not given:
            problem = f"MSH-9 '{message_type}^{event}': v{message.version} has no message structure {structure}"
        elif expected in known:
            problem = f"MSH-9.3 {given!r}: not a structure of v{message.version} ({message_type}^{event} is {expected})"
        else:
            problem = f"MSH-9.3 {given!r}: not a message structure of v{message.version}"
        report.problems.append(problem)
        return report
    standard = _with_structure("\r".join(segments), message, structure)
    try:
        parsed = parse_message(standard, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except Exception as exc:  # noqa: BLE001 - hl7apy raises plain errors on some inputs
        finding = str(exc) if isinstance(exc, HL7apyException) else f"{type(exc).__name__}: {exc}"
        if not any(marker in finding for marker in _CHOICE_MARKERS):
            located = _locate(segments, message.version, get_message_info(standard)[0])
            report.problems.append(located or _named(finding))
    return report
