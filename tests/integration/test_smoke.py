"""The engine as users run it: a real process, real MLLP frames over 127.0.0.1, the swf CLI."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port, run_swf


def test_replay_order_then_inspect_it(start_engine, tmp_path: Path) -> None:
    engine = start_engine()
    sample = tmp_path / "order.hl7"
    sample.write_bytes(
        b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS0000457|P|2.3.1||||||8859/1\n"
        b"PID|1||PAT4711^^^GENHOSP^MR||M\xdcLLER^ANNA^MARIA^^DR.||19780214|F\n"
        b"ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||1^once^^20250304100000^^R\n"
        b"OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest^99RAD||||||||||||||ACC25030417|RP-0417-1|SPS-0417-1"
        b"||||CT\n"
        b"ZDS|2.25.1964728415609372182033409816520049^RIS^Application^DICOM\n\n"
        b"NOT HL7 AT ALL\n")
    replay = run_swf("replay", str(sample), "--to", engine.address, "--no-progress")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert "sent 2: AA 1, AE 0, AR 1, no answer 0" in replay.stdout
    shown = run_swf("orders", "ACC25030417", "--data-dir", str(engine.data_dir))
    assert shown.returncode == 0, shown.stderr
    assert "MÜLLER^ANNA^MARIA^DR." in shown.stdout
    assert "SPS-0417-1" in shown.stdout and "SCHEDULED" in shown.stdout and "CT1_AE" in shown.stdout
    assert "RIS0000457" in shown.stdout


def test_a_taken_port_stops_the_engine_with_a_reason(tmp_path: Path) -> None:
    """Started parts (store writer, DICOM listener) must not keep a process that cannot serve alive:
    a supervisor restarts it only when it exits."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(tmp_path / "var"),
                                  "--mllp-port", str(port), "--dicom-port", str(free_port()), "--http-port", "-1"],
                                 capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert f"cannot start: MLLP 127.0.0.1:{port} is in use" in started.stderr
