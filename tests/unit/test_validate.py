"""``swf validate``: strict hl7apy checks on demand, with hl7apy's choice-group false positives left out."""
from __future__ import annotations

from pathlib import Path

from engine.hl7.validate import validate
from tests.conftest import run_swf

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
