"""A bad value in a field is the sender's error: AE (CE in enhanced mode), ERR 102 at the field, journal
status ``rejected`` with a reason naming the field, never an "internal error" (SWF.md 3.3, 8.2).

One case per class of value the mapping converts (date/time with each field that holds one, number, name,
coded value, UID, character set), sent over MLLP to a real engine process."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from engine.hl7.message import Message
from tests.hl7_fields import ADT_V251, OMI_V251, ORM_V231, ORM_V231_TWO_STEPS, build, with_value
from tests.integration.test_mllp import END, START, connect, read_acks

DATE_TYPE_ERROR = "102&Data type error&HL70357"   # v2.3.1 ERR-1.4


@dataclass(frozen=True)
class Case:
    cid: str
    message: bytes
    err: str       # the ERR segment expected in the ACK, whole
    reason: str    # MSA-3 (v2.3.1) / ERR-8 (v2.5.1) and the journal reason


def v231(cid: str, path: str, raw: str, err_location: str, reason: str, template: str = ORM_V231,
         occurrence: int = 1) -> Case:
    text = with_value(build(template, cid), path, raw, occurrence)
    return Case(cid, text.encode("latin-1"), f"ERR|{err_location}^{DATE_TYPE_ERROR}", reason)


def v251(cid: str, template: str, path: str, raw: str, err_location: str, reason: str) -> Case:
    text = with_value(build(template, cid), path, raw)
    return Case(cid, text.encode(), f"ERR||{err_location}|102^Data type error^HL70357|E||||{reason}", reason)


MINUTE_60 = "20261201106000"
CASES = [
    v231("BADMSH7", "MSH-7", MINUTE_60, "MSH^1^7",
         "MSH-7 invalid date/time '20261201106000': minute must be in 0..59"),
    v231("BADORC7", "ORC-7.4", MINUTE_60, "ORC^1^7",
         "ORC-7.4 invalid date/time '20261201106000': minute must be in 0..59"),
    v231("BADOBR27", "OBR-27.4", MINUTE_60, "OBR^2^27",
         "OBR(2)-27.4 invalid date/time '20261201106000': minute must be in 0..59", ORM_V231_TWO_STEPS, 2),
    v231("BADPID7", "PID-7", "20261301", "PID^1^7", "PID-7 invalid date/time '20261301': month must be in 1..12"),
    v231("BADORC9", "ORC-9", "2026DEC01", "ORC^1^9", "ORC-9 not an HL7 date/time: '2026DEC01'"),
    v231("BADOBX5", "OBX-5", "heavy", "OBX^1^5", "OBX-5 not an HL7 number (NM): 'heavy'"),
    v231("BADPID5", "PID-5.1", "DOE\\S\\SMITH", "PID^1^5",
         "PID-5 name component 'DOE^SMITH' holds '^', which a DICOM name cannot"),
    v231("BADOBR4", "OBR-4.3", "A_CODING_SYSTEM_OF_30_LETTERS", "OBR^1^4",
         "OBR-4 coding system 'A_CODING_SYSTEM_OF_30_LETTERS' longer than 16 characters (DICOM SH)"),
    v251("BADTQ17", OMI_V251, "TQ1-7", "20261232110000", "TQ1^1^7",
         "TQ1-7 invalid date/time '20261232110000': day is out of range for month"),
    v251("BADOFFS", OMI_V251, "TQ1-7", "20261201110000+2500", "TQ1^1^7",
         "TQ1-7 invalid time zone offset '+2500'"),
    v251("BADUID", OMI_V251, "IPC-3", "1.2.ABC", "IPC^1^3^1^1",
         "IPC-3.1 StudyInstanceUID '1.2.ABC' is not a DICOM UID (digits and dots)"),
    v251("BADLEAP", ADT_V251, "PID-7", "20250229", "PID^1^7",
         "PID-7 invalid date/time '20250229': day is out of range for month"),
]

# MSH-18 says ISO 8859-8, in which byte 0xC0 is no character: the name cannot be read.
CHARSET = Case("BADCHARS", with_value(with_value(build(ORM_V231, "BADCHARS"), "MSH-18", "8859/8"), "PID-5.1",
                                      "CO\xc0N").encode("latin-1"),
               f"ERR|PID^1^5^{DATE_TYPE_ERROR}",
               "PID-5 PatientName: bytes not valid in the message character set (iso8859-8)")


def segment(ack: bytes, name: str) -> str:
    return next(line for line in ack.decode("latin-1").split("\r") if line.startswith(name + "|"))


def journal(engine) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(f"file:{engine.data_dir / 'swf.sqlite'}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute("SELECT control_id, status, ack_code, reason FROM journal").fetchall()
    return {cid: (status, code, reason) for cid, status, code, reason in rows}


def test_each_class_of_bad_value_is_ae_102_at_its_field(start_engine) -> None:
    engine = start_engine()
    cases = CASES + [CHARSET]
    good = build(ORM_V231, "GOODORM").encode()
    with connect(engine) as sock:
        sock.sendall(b"".join(START + case.message + END for case in cases) + START + good + END)
        acks = read_acks(sock, len(cases) + 1)
    for case, ack in zip(cases, acks):
        msa = segment(ack, "MSA").split("|")
        assert msa[1:3] == ["AE", case.cid], ack
        assert segment(ack, "ERR") == case.err, case.cid
        if not case.err.startswith("ERR||"):  # v2.3.1: the reason is MSA-3 too
            assert Message(ack.decode("latin-1")).get("MSA-3") == case.reason
    assert segment(acks[-1], "MSA").split("|")[1:3] == ["AA", "GOODORM"]
    rows = journal(engine)
    for case in cases:
        assert rows[case.cid] == ("rejected", "AE", case.reason)
    assert "internal error" not in engine.log() and "Traceback" not in engine.log()


@pytest.mark.parametrize("mode", ["AL", "ER"])
def test_enhanced_mode_answers_ce(start_engine, mode: str) -> None:
    engine = start_engine()
    cid = f"ENH{mode}"
    text = with_value(with_value(build(OMI_V251, cid), "MSH-15", mode), "TQ1-7", MINUTE_60)
    with connect(engine) as sock:
        sock.sendall(START + text.encode() + END)
        ack = read_acks(sock, 1)[0]
    reason = "TQ1-7 invalid date/time '20261201106000': minute must be in 0..59"
    assert segment(ack, "MSA").split("|")[1:3] == ["CE", cid]
    assert segment(ack, "ERR") == f"ERR||TQ1^1^7|102^Data type error^HL70357|E||||{reason}"
    assert journal(engine)[cid] == ("rejected", "AE", reason)
