"""Fail closed for DICOM (dicom/open_listener.py): off loopback, the plain listener and allow_any_ae start
only when the config spells them out, with a security warning; an unknown AE admitted that way raises a
security event.  The engine process is started for real; the listener that does start binds 0.0.0.0 on an
ephemeral port for the few seconds of the test."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.pki import CertificateAuthority


def serve(tmp_path: Path, config: str, *extra: str) -> subprocess.CompletedProcess:
    """Start the engine with ``config``; it must refuse to start (or is stopped after 20 s)."""
    path = tmp_path / "engine.yaml"
    path.write_text(config)
    return subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(tmp_path / "var"),
                           "--config", str(path), "--mllp-port", str(free_port()), "--http-port", str(free_port()),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize(("config", "extra", "refusal"), [
    ("dicom: {host: 0.0.0.0}\n", (), "plain DICOM listener 0.0.0.0:{port} not started: it is not on a loopback "
     "address and has no TLS. Write `dicom.tls: off`"),
    ("dicom: {host: 0.0.0.0, tls: off}\n", ("--allow-any-ae",), "allow_any_ae refused on the non-loopback "
     "address 0.0.0.0"),
    ("dicom: {tls_port: {tls_port}}\n", (), "dicom.tls_port {tls_port} needs dicom.tls with cert and key"),
    ("dicom: {aes: {CT1_AE: {certificate: CT1_AE}}}\n", (), "dicom.aes CT1_AE: `certificate:` needs the TLS port"),
])
def test_exposed_or_inconsistent_dicom_listeners_do_not_start(tmp_path: Path, config: str, extra: tuple,
                                                              refusal: str) -> None:
    port, tls_port = free_port(), free_port()
    config = config.replace("{tls_port}", str(tls_port))
    refused = serve(tmp_path, config, "--dicom-port", str(port), *extra)
    assert refused.returncode == 2, refused.stderr
    assert refusal.format(port=port, tls_port=tls_port) in refused.stderr, refused.stderr
    assert "DICOM listener on" not in refused.stderr


def test_spelled_out_plain_and_any_ae_start_with_warnings_and_events(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "exposed.yaml"
    config.write_text("dicom: {host: 0.0.0.0, tls: off, allow_any_ae_on_network: true, aes: {KNOWN_AE: {}}}\n")
    engine = start_engine("--config", str(config))          # the fixture adds --allow-any-ae
    log = engine.log()
    assert "security: plain-listener from -: plain DICOM listener on 0.0.0.0:" in log   # an audited event
    assert "admits any calling AE title (allow_any_ae_on_network)" in log
    env = {**os.environ, "TCP_NODELAY": "1"}
    for title in ("KNOWN_AE", "STRANGER"):
        echo = subprocess.run(["echoscu", "-aet", title, "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port)],
                              env=env, capture_output=True, text=True, timeout=20)
        assert echo.returncode == 0, echo.stderr
    deadline = time.monotonic() + 10
    while "security: unknown-ae-admitted" not in engine.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [line for line in engine.log().splitlines() if "security: unknown-ae-admitted" in line]
    assert len(events) == 1 and "calling AE 'STRANGER', not in dicom.aes" in events[0], engine.log()[-2000:]


def test_tls_only_on_the_network_needs_no_spelling_out(start_engine, tmp_path: Path) -> None:
    """dicom.port -1 and the TLS port on 0.0.0.0: starts without a security warning."""
    pki = CertificateAuthority(tmp_path / "pki")
    issued = pki.issue("engine", "SWF_ENGINE")
    tls_port = free_port()
    config = tmp_path / "tls-only.yaml"
    config.write_text(f"dicom: {{host: 0.0.0.0, port: -1, tls_port: {tls_port}, "
                      f"tls: {{cert: {issued.cert}, key: {issued.key}}}, aes: {{KNOWN_AE: {{}}}}}}\n")
    path = tmp_path / "tls-only.log"
    with open(path, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(tmp_path / "var"),
                                    "--config", str(config), "--mllp-port", str(free_port()), "--http-port", "-1"],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "MLLP listener on" not in path.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        log = path.read_text()
        assert f"DICOM listener on 0.0.0.0:{tls_port} (TLS)" in log, log
        assert "security:" not in log
    finally:
        process.terminate()
        process.wait(10)
