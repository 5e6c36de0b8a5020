"""Certificate renewal without a restart: the engine re-reads its TLS files when they change (and on
SIGHUP); the next handshake presents the new certificate while a connection opened before keeps working,
and a broken replacement is refused with a log line while the previous certificate serves on."""
from __future__ import annotations

import shutil
import signal
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509

from tests.conftest import free_port
from tests.integration.test_tls_mllp import MSA, framed, order, wait_for_log
from tests.pki import CertificateAuthority
from tests.tls_clients import END, client_context


def served_serial(port: int, context: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number


def exchange(sock: ssl.SSLSocket, cid: str) -> tuple[bytes, bytes]:
    sock.sendall(framed(order(cid)))
    answer = b""
    while END not in answer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        answer += chunk
    return MSA.search(answer).groups()


def test_new_certificate_files_serve_new_handshakes_and_open_connections_stay(start_engine, tmp_path: Path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    first, second = pki.issue("first", "swf-engine.test"), pki.issue("second", "swf-engine.test")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "engine.crt", live / "engine.key"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    tls_port = free_port()
    config = tmp_path / "tls.yaml"
    config.write_text(f"mllp:\n  tls_port: {tls_port}\n  tls: {{cert: {cert}, key: {key}}}\n")
    engine = start_engine("--config", str(config))
    context = client_context(pki.ca)
    serial_of = {path: x509.load_pem_x509_certificate(path.read_bytes()).serial_number for path in (first.cert,
                                                                                                    second.cert)}
    assert served_serial(tls_port, context) == serial_of[first.cert]
    opened = context.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=10),
                                 server_hostname="localhost")
    try:
        assert exchange(opened, "BEFORE1") == (b"AA", b"BEFORE1")
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")   # a botched renewal
        wait_for_log(engine, "new TLS files refused: certificate", timeout=8)
        assert f"still serving serial {serial_of[first.cert]:x}" in engine.log()
        assert served_serial(tls_port, context) == serial_of[first.cert]
        shutil.copy(second.key, key)
        shutil.copy(second.cert, cert)
        wait_for_log(engine, f"TLS files re-read, new handshakes use serial {serial_of[second.cert]:x}", timeout=8)
        assert served_serial(tls_port, context) == serial_of[second.cert]
        assert exchange(opened, "BEFORE2") == (b"AA", b"BEFORE2")   # the connection from before the renewal
        # SIGHUP re-reads at once, whether or not the files changed.
        said = engine.log().count("TLS files re-read")
        engine.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while engine.log().count("TLS files re-read") == said:
            assert time.monotonic() < deadline, engine.log()[-2000:]
            time.sleep(0.05)
        assert engine.process.poll() is None
        assert exchange(opened, "BEFORE3") == (b"AA", b"BEFORE3")
    finally:
        opened.close()
