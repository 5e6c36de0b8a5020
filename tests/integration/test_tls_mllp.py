"""MLLP over TLS against the real engine process: openssl s_client and Python's ssl as senders, mutual TLS
with the test CA's certificates, the mllp.senders binding, and each refusal's security event."""
from __future__ import annotations

import re
import sqlite3
import ssl
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.pki import CertificateAuthority
from tests.tls_clients import END, START, client_context, s_client, tls_exchange

MSA = re.compile(rb"MSA\|([A-Z]{2})\|([^|\r]*)")


def order(cid: str, application: str = "RIS", facility: str = "GENHOSP") -> bytes:
    return (f"MSH|^~\\&|{application}|{facility}|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{cid}|P|2.3.1\r"
            f"PID|1||PAT-{cid}^^^GENHOSP^MR||DOE^JANE\r"
            f"ORC|NW|P-{cid}^HIS|F-{cid}^RIS||SC||1^once^^20250304100000^^R\r"
            f"OBR|1|P-{cid}^HIS|F-{cid}^RIS|CT1^CT head^99RAD||||||||||||||A-{cid}|RP-{cid}|S-{cid}||||CT").encode()


def framed(message: bytes) -> bytes:
    return START + message + END


def wait_for_log(engine, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = engine.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the engine log:\n{engine.log()[-3000:]}")


@pytest.fixture
def pki(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


@pytest.fixture
def tls_engine(start_engine, tmp_path: Path, pki: CertificateAuthority):
    server = pki.issue("server", "swf-engine.test")
    tls_port = free_port()
    config = tmp_path / "tls.yaml"
    config.write_text(f"mllp:\n  tls_port: {tls_port}\n"
                      f"  tls: {{cert: {server.cert}, key: {server.key}, ca: {pki.ca}, require_client_cert: true}}\n"
                      "  senders:\n    RIS: {certificate: ris.hospital.example}\n")
    engine = start_engine("--config", str(config))
    engine.tls_port = tls_port
    return engine


def test_openssl_s_client_sends_an_order_over_mutual_tls_and_reads_the_ack(tls_engine, pki) -> None:
    ris = pki.issue("ris", "ris.hospital.example")
    code, output, errors = s_client(tls_engine.tls_port, pki.ca, ris, send=framed(order("TLS1")))
    assert MSA.search(output).groups() == (b"AA", b"TLS1"), (output, errors)
    assert "MLLP TLS listener" in tls_engine.log() and "client certificates required" in tls_engine.log()


def test_tls_1_1_is_refused_and_raises_a_security_event(tls_engine, pki) -> None:
    ris = pki.issue("ris", "ris.hospital.example")
    code, output, errors = s_client(tls_engine.tls_port, pki.ca, ris, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                                    send=framed(order("OLD1")))
    assert code not in (None, 0) and b"MSA" not in output, (code, output, errors)
    wait_for_log(tls_engine, "security: tls-handshake-refused from 127.0.0.1:")
    assert "protocol version refused" in tls_engine.log()


def test_each_refused_client_certificate_raises_its_security_event(tls_engine, pki, tmp_path) -> None:
    stranger_ca = CertificateAuthority(tmp_path / "stranger", name="Another hospital CA")
    cases = {   # source address: (client certificate, what the event says)
        "127.0.0.2": (None, "no client certificate"),
        "127.0.0.3": (stranger_ca.issue("stranger", "ris.hospital.example"), "issuer not among the trusted CAs"),
        "127.0.0.4": (pki.issue("expired", "ris.hospital.example", expired=True), "certificate expired"),
        "127.0.0.5": (pki.issue("selfsigned", "ris.hospital.example", self_signed=True), "self-signed certificate"),
    }
    for source, (certificate, _) in cases.items():
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            answer = tls_exchange(tls_engine.tls_port, client_context(pki.ca, certificate), framed(order("NO1")),
                                  source=source)
            assert MSA.search(answer) is not None, "no ACK: refused"
    for source, (_, said) in cases.items():
        log = wait_for_log(tls_engine, f"from {source}:")
        line = next(line for line in log.splitlines() if f"from {source}:" in line and "security:" in line)
        assert said in line, line
        assert ("certificate-refused" in line), line
    # The same host refused again within the minute: counted, not said again.
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        answer = tls_exchange(tls_engine.tls_port, client_context(pki.ca, None), framed(order("NO2")), source="127.0.0.2")
        assert MSA.search(answer) is not None, "no ACK: refused"
    time.sleep(0.3)
    assert tls_engine.log().count("security: certificate-refused from 127.0.0.2:") == 1
    with sqlite3.connect(tls_engine.data_dir / "swf.sqlite") as db:
        assert db.execute("SELECT count(*) FROM journal").fetchone() == (0,)   # nothing reached the engine


def test_a_certificate_may_send_only_for_its_senders(tls_engine, pki) -> None:
    modality = pki.issue("modality", "modality.hospital.example")
    ris = pki.issue("ris", "ris.hospital.example")
    answer = tls_exchange(tls_engine.tls_port, client_context(pki.ca, modality), framed(order("SPOOF1")),
                          source="127.0.0.6")
    assert MSA.search(answer).groups() == (b"AR", b"SPOOF1"), answer
    segments = {segment[:3]: segment for segment in answer.split(b"\r")}
    assert segments[b"ERR"].startswith(b"ERR|MSH^1^3^207"), answer   # the error is at MSH-3 ...
    assert b"MSH-3 'RIS' / MSH-4 'GENHOSP' is not a sender of the certificate presented (modality.hospital.example)" \
        in segments[b"MSA"], answer   # ... and names MSH-3
    wait_for_log(tls_engine, "security: msh-certificate-mismatch from 127.0.0.6:")
    # The bound certificate may; on the plain port nobody may claim RIS.
    answer = tls_exchange(tls_engine.tls_port, client_context(pki.ca, ris), framed(order("GOOD1")), source="127.0.0.6")
    assert MSA.search(answer).groups() == (b"AA", b"GOOD1"), answer
    import socket
    with socket.create_connection(("127.0.0.1", tls_engine.mllp_port), timeout=10) as plain:
        plain.sendall(framed(order("PLAIN1")))
        answer = b""
        while END not in answer:
            answer += plain.recv(65536)
    assert MSA.search(answer).groups() == (b"AR", b"PLAIN1") and b"presented no certificate" in answer, answer
    with sqlite3.connect(tls_engine.data_dir / "swf.sqlite") as db:
        rows = db.execute("SELECT control_id, status, ack_code, sending_application FROM journal ORDER BY id").fetchall()
    assert rows == [("SPOOF1", "rejected", "AR", "RIS"), ("GOOD1", "applied", "AA", "RIS"),
                    ("PLAIN1", "rejected", "AR", "RIS")]
