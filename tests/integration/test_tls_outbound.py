"""An outbound MLLP destination over TLS (routes/ ``tls: {ca, cert, key, verify_hostname}``), received by a
TLS MLLP receiver that requires the engine's client certificate; a receiver whose certificate does not
name the host dialled is refused (hostname verification on) and the message waits in the outbox."""
from __future__ import annotations

import shutil
import ssl
import time
from pathlib import Path

from tests.conftest import ROOT, run_swf
from tests.mllp_receiver import Receiver
from tests.pki import CertificateAuthority, Issued

ORDER = ("MSH|^~\\&|RIS|RIVERSIDE|SWF_ENGINE|RADIOLOGY|20250305071500||ORM^O01|TLSOUT{n}|P|2.3.1\r"
         "PID|1||PAT2000{n}^^^RIVERSIDE^MR||DOE^JANE||19610722|F\r"
         "ORC|NW|HP{n}^HIS|RF{n}^RIS||SC||1^once^^20250305083000^^R\r"
         "OBR|1|HP{n}^HIS|RF{n}^RIS|CTABD^CT abdomen^99RAD||||||||||||||ACC{n}|RP{n}|SPS{n}||||CT\r")


def receiver_context(pki: CertificateAuthority, server: Issued) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(server.cert), str(server.key))
    context.load_verify_locations(str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED   # the engine must present its client certificate
    return context


def routes_with_tls_archive(tmp_path: Path, pki: CertificateAuthority, engine_cert: Issued) -> Path:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    destinations = routes / "05-destinations.yaml"
    shipped = "    receiving_application: PACS\n"
    assert destinations.read_text().endswith(shipped)   # the archive entry is the file's last
    destinations.write_text(destinations.read_text() + "    retry_seconds: 0.5\n"
                            f"    tls: {{ca: {pki.ca}, cert: {engine_cert.cert}, key: {engine_cert.key}, "
                            "verify_hostname: true}\n")
    return routes


def send_order(engine, tmp_path: Path, n: int) -> None:
    sample = tmp_path / f"order{n}.hl7"
    sample.write_text(ORDER.format(n=n))
    replayed = run_swf("replay", str(sample), "--to", engine.address, "--no-progress")
    assert "sent 1: AA 1" in replayed.stdout, replayed.stdout + replayed.stderr


def test_orders_reach_a_tls_destination_that_checks_the_engines_certificate(start_engine, tmp_path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    engine_cert = pki.issue("engine", "swf-engine.hospital.example")
    archive = Receiver(tls=receiver_context(pki, pki.issue("archive", "pacs.hospital.example")))
    try:
        engine = start_engine(routes=routes_with_tls_archive(tmp_path, pki, engine_cert),
                              env={"SWF_ARCHIVE_ADDRESS": archive.address})
        send_order(engine, tmp_path, 1)
        [message] = archive.wait_for(1)
    finally:
        archive.close()
    assert message.get("ORC-1") == "NW" and archive.tls_refused == []
    subject = dict(pair[0] for pair in archive.client_certificates[0]["subject"])
    assert subject["commonName"] == "swf-engine.hospital.example"
    assert f"destination archive: delivering procedure messages to {archive.address} over TLS" in engine.log()


def test_a_destination_whose_certificate_names_another_host_is_refused(start_engine, tmp_path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    engine_cert = pki.issue("engine", "swf-engine.hospital.example")
    impostor = pki.issue("impostor", "pacs.elsewhere.example", dns=("pacs.elsewhere.example",), ips=())
    archive = Receiver(tls=receiver_context(pki, impostor))
    try:
        engine = start_engine(routes=routes_with_tls_archive(tmp_path, pki, engine_cert),
                              env={"SWF_ARCHIVE_ADDRESS": archive.address})
        send_order(engine, tmp_path, 2)
        deadline = time.monotonic() + 10
        while "security: certificate-refused from " + archive.address not in engine.log():
            assert time.monotonic() < deadline, engine.log()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)
        assert archive.messages == [] and archive.attempts == []   # nothing was sent to it
    finally:
        archive.close()
    log = engine.log()
    assert "the server's certificate does not name the host dialled (tls.verify_hostname)" in log
    assert "outbox archive: " in log and "not delivered (TLS handshake failed" in log
