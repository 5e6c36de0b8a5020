"""HTTPS for the console and API on the HTTP port when http.tls.cert is set: /health and a login over
Python's ssl, the session cookie Secure without http.secure_cookies, nothing served in plain HTTP, and
client certificates required when http.tls.require_client_cert says so."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.integration.test_users_access import PASSWORD, add_user
from tests.pki import CertificateAuthority
from tests.tls_clients import client_context


def https(port: int, method: str, path: str, context: ssl.SSLContext, body: dict | None = None,
          source: str = "127.0.0.1") -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPSConnection("localhost", port, timeout=10, context=context,
                                             source_address=(source, 0))
    try:
        connection.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                           headers={"Content-Type": "application/json"} if body is not None else {})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def start_https(start_engine, tmp_path: Path, pki: CertificateAuthority, extra: str = "", data_dir=None):
    server = pki.issue("server", "swf-engine.test")
    config = tmp_path / "https.yaml"
    config.write_text(f"http:\n  tls: {{cert: {server.cert}, key: {server.key}, ca: {pki.ca}{extra}}}\n")
    return start_engine("--config", str(config), data_dir=data_dir)


def test_health_and_login_over_https_with_a_secure_cookie(start_engine, tmp_path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    data_dir = tmp_path / "var"
    add_user(data_dir, "alice", "operator")
    engine = start_https(start_engine, tmp_path, pki, data_dir=data_dir)
    context = client_context(pki.ca)
    status, _, body = https(engine.http_port, "GET", "/health", context)
    assert status == 200 and json.loads(body)["status"] in ("ok", "degraded"), body
    status, headers, body = https(engine.http_port, "POST", "/auth/login", context,
                                  {"name": "alice", "password": PASSWORD})
    assert status == 200, body
    attributes = [part.strip().lower() for part in headers["set-cookie"].split(";")]
    assert "secure" in attributes and "httponly" in attributes   # https: Secure without http.secure_cookies
    with socket.create_connection(("127.0.0.1", engine.http_port), timeout=5) as plain:   # no plain HTTP here
        plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.settimeout(5)
        try:
            answer = plain.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert f"the web console at https://127.0.0.1:{engine.http_port}/" in engine.log()


def test_https_requiring_client_certificates_refuses_one_without(start_engine, tmp_path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    engine = start_https(start_engine, tmp_path, pki, ", require_client_cert: true")
    operator = pki.issue("operator", "workstation-7.hospital.example")
    status, _, _ = https(engine.http_port, "GET", "/health", client_context(pki.ca, operator))
    assert status == 200
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        https(engine.http_port, "GET", "/health", client_context(pki.ca), source="127.0.0.7")
    deadline = time.monotonic() + 10
    while "security: certificate-refused from 127.0.0.7:" not in engine.log():
        assert time.monotonic() < deadline, engine.log()[-2000:]
        time.sleep(0.05)
    assert "HTTPS listener" in engine.log() and "no client certificate" in engine.log()
