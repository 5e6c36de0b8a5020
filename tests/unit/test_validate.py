"""``swf validate``: strict hl7apy checks on demand, with hl7apy's choice-group false positives left out."""
from __future__ import annotations

from pathlib import Path

from engine.hl7.validate import validate
from tests.conftest import ROOT, run_swf

ORM = (b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS0000457|P|2.3.1\r"
       b"PID|1||PAT4711^^^GENHOSP^MR||MULLER^ANNA\rORC|NW|PLC-88812^HIS\rOBR|1|PLC-88812^HIS||CT^x^99RAD\r"
       b"ZDS|2.25.1^RIS^Application^DICOM")


def test_valid_order_with_z_segment_passes() -> None:
    report = validate(ORM)
    assert report.problems == [] and report.control_id == "RIS0000457"


def test_structure_and_data_type_problems_are_reported() -> None:
    assert "ORC" in validate(ORM.replace(b"ORC|NW|PLC-88812^HIS\r", b"")).problems[0]
    adt = (b"MSH|^~\\&|HIS|G|E|R|20250304081502||ADT^A04^ADT_A01|H1|P|2.5.1\rEVN|A04|2025\r"
           b"PID|1||P1^^^G^MR||DOE^J||1978021X|F")
    assert "1978021X" in validate(adt).problems[0]
    assert validate(b"garbage").problems[0].startswith("unreadable")


def test_cli_exit_status(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.hl7", tmp_path / "bad.hl7"
    good.write_bytes(ORM.replace(b"\r", b"\n"))
    bad.write_bytes(ORM.replace(b"ORC|NW|PLC-88812^HIS\r", b"") + b"\n\n" + ORM)
    ok = run_swf("validate", str(good))
    assert ok.returncode == 0 and "1 message(s), 0 with problems" in ok.stdout
    failed = run_swf("validate", str(bad))
    assert failed.returncode == 1 and "2 message(s), 1 with problems" in failed.stdout


def adt(code: bytes, version: bytes = b"2.3.1", phone: bytes = b"0421-555-0142") -> bytes:
    return (b"MSH|^~\\&|HIS|RIVERSIDE|SWF_ENGINE|RADIOLOGY|20250305071002||" + code + b"|HIS31000002|P|" + version
            + b"\rEVN|A04|20250305071000\rPID|1||PAT20001^^^RIVERSIDE^MR||DOE^JANE||19610722|F|||||" + phone
            + b"\rPV1|1|O|RAD^WAIT^^RIVERSIDE")


def test_each_event_is_checked_with_its_own_structure_in_its_own_version() -> None:
    """MSH-9 without the structure (v2.3.1 style): A04/A05/A08 are ADT_A01 there, A40 is ADT_A39; from v2.4
    A05 has ADT_A05.  hl7apy alone guesses ADT_A04 and fails naming nothing."""
    for code in (b"ADT^A04", b"ADT^A05", b"ADT^A08", b"ADT^A01"):
        for version in (b"2.3.1", b"2.5.1"):
            assert validate(adt(code, version)).problems == [], (code, version)
    merge = adt(b"ADT^A40").replace(b"\rPV1|1|O|RAD^WAIT^^RIVERSIDE", b"\rMRG|PAT20060^^^RIVERSIDE^MR")
    assert validate(merge).problems == []
    assert validate(adt(b"ADT^A04^ADT_A04", b"2.5.1")).problems == [
        "MSH-9.3 'ADT_A04': not a structure of v2.5.1 (ADT^A04 is ADT_A01)"]
    assert validate(adt(b"ADT^A99")).problems == ["MSH-9 'ADT^A99': v2.3.1 has no message structure ADT_A99"]
    assert validate(adt(b"ADT^A04", b"2.9")).problems[0].startswith("MSH-12 '2.9': not an HL7 version")


def test_a_problem_names_its_segment_and_field() -> None:
    assert validate(adt(b"ADT^A04", phone=b"+45-86-55-0190")).problems == [
        "PID-13 '+45-86-55-0190': Invalid value for TN data"]
    assert validate(adt(b"ADT^A04").replace(b"PAT20001^^^RIVERSIDE^MR", b"")).problems == [
        "Missing required child PID-3"]


def test_the_shipped_samples_validate_clean() -> None:
    days = [str(ROOT / "samples" / name) for name in ("day-v231.hl7", "day-v251.hl7")]
    done = run_swf("validate", *days)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1] == "57 message(s), 0 with problems"
