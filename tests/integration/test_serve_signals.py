"""`swf serve` under a supervisor: SIGTERM stops it cleanly, and a second SIGTERM while it stops (a
supervisor's, then its process group's, as `timeout make run` sends) is not a traceback."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, free_port


def test_two_sigterms_stop_the_engine_once_without_a_traceback(tmp_path: Path) -> None:
    engine = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(tmp_path / "var"),
                               "--mllp-port", str(free_port()), "--http-port", str(free_port()),
                               "--dicom-port", str(free_port())], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    lines: list[str] = []
    while time.monotonic() < deadline:   # until the last listener is up
        line = engine.stderr.readline()
        lines.append(line)
        if "HTTP listener on" in line:
            break
    assert any("HTTP listener on" in line for line in lines), "".join(lines)
    time.sleep(0.3)   # the reactor runs (its signal handlers are in place)
    engine.send_signal(signal.SIGTERM)
    time.sleep(0.1)   # the second while the first is stopping the engine
    engine.send_signal(signal.SIGTERM)
    rest = engine.communicate(timeout=20)[1]
    assert engine.returncode == 0, rest
    assert "Traceback" not in rest and "ReactorNotRunning" not in rest, rest
