"""``swf serve`` with a listener's port taken names the listener and its address (issue 10 item 10)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import free_port, run_swf


@pytest.mark.parametrize("listener", ["MLLP", "DICOM", "HTTP"])
def test_a_taken_port_is_named_with_its_listener(tmp_path: Path, listener: str) -> None:
    ports = {"MLLP": free_port(), "DICOM": free_port(), "HTTP": free_port()}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[listener]))
        taken.listen()
        result = run_swf("serve", "--data-dir", str(tmp_path / "var"), "--mllp-port", str(ports["MLLP"]),
                         "--dicom-port", str(ports["DICOM"]), "--http-port", str(ports["HTTP"]), timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"cannot start: {listener} 127.0.0.1:{ports[listener]} is in use" in result.stderr, result.stderr
    assert "Errno" not in result.stderr
