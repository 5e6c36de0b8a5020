"""Fail closed: ``swf serve`` refuses a plain MLLP or HTTP listener on a non-loopback address unless that
listener says ``tls: off`` (then it starts with a security warning), and a TLS port without certificate."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, free_port, wait_for_port
from tests.pki import CertificateAuthority
from tests.tls_clients import client_context, tls_exchange


def serve(tmp_path: Path, config: str, *flags: str) -> list[str]:
    path = tmp_path / "engine.yaml"
    path.write_text(config)
    return [sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(tmp_path / "var"), "--config", str(path),
            "--dicom-port", "-1", *flags]


def refused(command: list[str]) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    return done.stderr


def test_plain_mllp_off_loopback_is_refused_and_says_what_to_set(tmp_path) -> None:
    port = free_port()
    stderr = refused(serve(tmp_path, "mllp: {host: 0.0.0.0}\n", "--mllp-port", str(port), "--http-port", "-1"))
    assert f"cannot start: MLLP listener 0.0.0.0:{port} not started: it is plain (no TLS) on a non-loopback address" \
        in stderr
    assert "mllp.tls_port: 12575 with mllp.tls.cert and mllp.tls.key, and mllp.port: -1" in stderr
    assert "set mllp.tls: off to run it plain on purpose" in stderr


def test_plain_http_off_loopback_is_refused_even_with_users(tmp_path) -> None:
    port = free_port()
    stderr = refused(serve(tmp_path, "http: {host: 0.0.0.0}\n", "--mllp-port", str(free_port()),
                           "--http-port", str(port)))
    assert f"HTTP listener 0.0.0.0:{port} not started: it is plain HTTP on a non-loopback address. Set " \
           "http.tls.cert and http.tls.key" in stderr and "or http.tls: off" in stderr


def test_a_tls_port_without_its_certificate_is_refused(tmp_path) -> None:
    stderr = refused(serve(tmp_path, f"mllp: {{tls_port: {free_port()}}}\n", "--mllp-port", str(free_port()),
                           "--http-port", "-1"))
    assert "mllp.tls.cert and mllp.tls.key are not set; set both (PEM files) or mllp.tls_port: 0" in stderr


def test_tls_off_starts_plain_mllp_off_loopback_with_a_security_warning(tmp_path) -> None:
    port = free_port()
    log = tmp_path / "engine.log"
    process = subprocess.Popen(serve(tmp_path, "mllp: {host: 0.0.0.0, tls: off}\n", "--mllp-port", str(port),
                                     "--http-port", "-1"), cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        time.sleep(0.2)
        assert (f"WARNING swf.security: security: plain-listener from -: MLLP listener 0.0.0.0:{port} is plain "
                "(mllp.tls: off): HL7 messages cross the network unencrypted") in log.read_text()
    finally:
        process.terminate()
        process.wait(10)


def test_tls_only_mllp_off_loopback_starts_without_its_plain_port(tmp_path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    server = pki.issue("server", "swf-engine.test")
    tls_port = free_port()
    log = tmp_path / "engine.log"
    config = (f"mllp: {{host: 0.0.0.0, port: -1, tls_port: {tls_port}, tls: {{cert: {server.cert}, "
              f"key: {server.key}}}}}\n")
    process = subprocess.Popen(serve(tmp_path, config, "--http-port", "-1"), cwd=ROOT, stdout=open(log, "w"),
                               stderr=subprocess.STDOUT)
    try:
        wait_for_port(tls_port, process)
        answer = tls_exchange(tls_port, client_context(pki.ca), b"\x0bMSH|^~\\&|RIS|H|SWF|R|20250101||ADT^A08|TLSONLY"
                              b"|P|2.3.1\rPID|1||P1^^^H^MR||DOE^J\rPV1|1|O\x1c\r")
        assert b"MSA|" in answer and b"TLSONLY" in answer, answer
        text = log.read_text()
        assert "MLLP listener on" not in text and "plain-listener" not in text   # mllp.port -1: no plain port
        assert f"MLLP TLS listener 0.0.0.0:{tls_port}: TLS 1.2 or later" in text
    finally:
        process.terminate()
        process.wait(10)


def test_an_expired_certificate_stops_serve_naming_the_file(tmp_path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    expired = pki.issue("expired", "swf-engine.test", expired=True)
    tls_port = free_port()
    config = f"mllp: {{tls_port: {tls_port}, tls: {{cert: {expired.cert}, key: {expired.key}}}}}\n"
    stderr = refused(serve(tmp_path, config, "--mllp-port", str(free_port()), "--http-port", "-1"))
    assert f"cannot start: MLLP TLS listener 127.0.0.1:{tls_port} not started: certificate {expired.cert} " in stderr
    assert "expired on" in stderr
