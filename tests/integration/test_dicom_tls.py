"""DICOM over TLS against the real engine process: DCMTK echoscu / storescu / findscu with ``+tls`` and
pynetdicom with an ssl context on ``dicom.tls_port``; the certificate-to-AE binding; refused handshakes
and their security events; outbound TLS (forwarding to a pynetdicom SCP of the test's, listening with TLS);
the certificate reloaded for the next association.

Certificates come from tests/pki.py.  The security events are asserted from their log line (``swf.security``).
Refused handshakes raise one event per peer address per minute, so the pynetdicom clients that check each
kind of refusal connect from their own loopback address (127.0.0.2, 127.0.0.3, ...).
"""
from __future__ import annotations

import os
import re
import socket
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (CTImageStorage, ModalityWorklistInformationFind, StorageCommitmentPushModel,
                                   StudyRootQueryRetrieveInformationModelMove, Verification)

from tests.conftest import EngineProcess, free_port, wait_for_port
from tests.integration.test_direct_storage import ct_instance, write
from tests.pki import CertificateAuthority, Issued

DIRECT = "engine.dicom.wire.direct_storage: DICOM association from"
VIA_PYNETDICOM = "engine.dicom.ae: DICOM association from"


class Pki:
    """The test CA and the certificates the tests present."""

    def __init__(self, folder: Path):
        self.authority = CertificateAuthority(folder)
        self.ca = self.authority.ca
        self.engine = self.authority.issue("engine", "SWF_ENGINE")
        self.ct1 = self.authority.issue("ct1", "CT1_AE")                     # bound to CT1_AE by its CN
        self.ris = self.authority.issue("ris", "ris-node", dns=("ris.example.org",))   # bound by its SAN
        self.other = self.authority.issue("other", "OTHER_AE")
        self.expired = self.authority.issue("expired", "CT1_AE", expired=True)
        self.self_signed = self.authority.issue("selfsigned", "CT1_AE", self_signed=True)
        self.foreign = CertificateAuthority(folder / "foreign", "Another CA").issue("foreign", "CT1_AE")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def dcmtk(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True,
                          timeout=30, cwd=cwd)


def tls_options(issued: Issued | None, ca: Path) -> list[str]:
    """DCMTK's TLS options: our key and certificate (anonymous TLS without), the CA to verify the engine."""
    ours = ["+tls", str(issued.key), str(issued.cert)] if issued else ["+tla"]
    return [*ours, "+cf", str(ca)]


def tls_engine(start_engine: Callable[..., EngineProcess], tmp_path: Path, pki: Pki, *, extra: str = "",
               ct1: str = "certificate: CT1_AE", require_client_cert: bool = True,
               allow_any_ae: bool = False) -> tuple[EngineProcess, int]:
    tls_port = free_port()
    config = tmp_path / "engine.yaml"
    config.write_text(
        "dicom:\n"
        f"  tls_port: {tls_port}\n"
        f"  tls: {{cert: {pki.engine.cert}, key: {pki.engine.key}, ca: {pki.ca}, "
        f"require_client_cert: {str(require_client_cert).lower()}}}\n"
        "  aes:\n"
        f"    CT1_AE: {{{ct1}}}\n"
        "    RIS_AE: {certificate: ris.example.org, permissions: [echo, worklist]}\n"
        "    PLAIN_AE: {}\n" + extra)
    engine = start_engine("--config", str(config), allow_any_ae=allow_any_ae)
    wait_for_port(tls_port, engine.process)
    return engine, tls_port


def client_context(pki: Pki, issued: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if issued is not None:
        context.load_cert_chain(str(issued.cert), str(issued.key))
    return context


def tls_associate(port: int, pki: Pki, issued: Issued | None, calling: str = "CT1_AE",
                  source: str = "127.0.0.1", *also: Any) -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    for sop_class in also:
        ae.add_requested_context(sop_class)
    return ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE", bind_address=(source, 0),
                        tls_args=(client_context(pki, issued), "localhost"))


def indexed(engine: EngineProcess) -> set[str]:
    with sqlite3.connect(engine.data_dir / "swf.sqlite") as connection:
        return {row[0] for row in connection.execute("SELECT sop_instance_uid FROM instances")}


def security_lines(engine: EngineProcess, kind: str) -> list[str]:
    return [line for line in engine.log().splitlines() if f"security: {kind} from" in line]


def wait_for_log(engine: EngineProcess, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in engine.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the engine log:\n{engine.log()[-3000:]}")
        time.sleep(0.05)


def test_dcmtk_echo_store_and_worklist_over_tls(start_engine, tmp_path: Path, pki: Pki) -> None:
    engine, port = tls_engine(start_engine, tmp_path, pki)
    files = [write(ct_instance(n), tmp_path / f"ct{n}.dcm") for n in range(1, 4)]
    echo = dcmtk("echoscu", *tls_options(pki.ct1, pki.ca), "-aet", "CT1_AE", "-aec", "SWF_ENGINE",
                 "127.0.0.1", str(port))
    assert echo.returncode == 0, echo.stdout + echo.stderr
    sent = dcmtk("storescu", *tls_options(pki.ct1, pki.ca), "-aet", "CT1_AE", "-aec", "SWF_ENGINE",
                 "127.0.0.1", str(port), *map(str, files))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert indexed(engine) == {f"1.2.826.0.1.3680043.9.7777.3.{n}" for n in range(1, 4)}
    # MWL C-FIND from the AE bound by a SAN, through pynetdicom's path over the same TLS port
    found = dcmtk("findscu", *tls_options(pki.ris, pki.ca), "-W", "-aet", "RIS_AE", "-aec", "SWF_ENGINE",
                  "-k", "ScheduledProcedureStepSequence[0].Modality=CT", "127.0.0.1", str(port))
    assert found.returncode == 0, found.stdout + found.stderr
    assert "Rejected" not in found.stdout + found.stderr
    log = engine.log()
    assert log.count(f"{DIRECT} CT1_AE") == 2                  # echo and store: the direct path, over TLS
    assert f"{VIA_PYNETDICOM} RIS_AE" in log
    assert "security:" not in log


def test_a_calling_ae_its_certificate_does_not_name_is_rejected(start_engine, tmp_path: Path, pki: Pki) -> None:
    engine, port = tls_engine(start_engine, tmp_path, pki)
    wrong = dcmtk("echoscu", *tls_options(pki.other, pki.ca), "-aet", "CT1_AE", "-aec", "SWF_ENGINE",
                  "127.0.0.1", str(port))
    assert wrong.returncode != 0
    assert "Rejected Permanent" in wrong.stderr and "Calling AE Title Not Recognized" in wrong.stderr, wrong.stderr
    [line] = security_lines(engine, "ae-certificate-mismatch")
    assert "calling AE 'CT1_AE' presented a certificate for" in line and "OTHER_AE" in line
    # the bound title on the plain port (no certificate at all): rejected too
    plain = dcmtk("echoscu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port))
    assert plain.returncode != 0 and "Calling AE Title Not Recognized" in plain.stderr, plain.stderr
    # an unbound known AE keeps the plain port; a certificate for CT1_AE calling as RIS_AE is refused
    assert dcmtk("echoscu", "-aet", "PLAIN_AE", "-aec", "SWF_ENGINE", "127.0.0.1",
                 str(engine.dicom_port)).returncode == 0
    assert tls_associate(port, pki, pki.ct1, "RIS_AE", "127.0.0.2", Verification).is_rejected
    wait_for_log(engine, "calling AE 'RIS_AE' presented a certificate for")
    plain_ae = AE(ae_title="CT1_AE")     # the plain port again, from another address: its own event
    plain_ae.add_requested_context(Verification)
    assert plain_ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE",
                              bind_address=("127.0.0.3", 0)).is_rejected
    wait_for_log(engine, "from 127.0.0.3:")
    assert "must present a TLS certificate naming 'CT1_AE' and presented none (plain connection)" in engine.log()
    assert indexed(engine) == set()


@pytest.mark.parametrize("which", ["expired", "self_signed", "foreign", "none"])
def test_dcmtk_with_a_bad_certificate_is_refused(start_engine, tmp_path: Path, pki: Pki, which: str) -> None:
    engine, port = tls_engine(start_engine, tmp_path, pki)
    issued = None if which == "none" else getattr(pki, which)
    echo = dcmtk("echoscu", *tls_options(issued, pki.ca), "-aet", "CT1_AE", "-aec", "SWF_ENGINE",
                 "127.0.0.1", str(port))
    assert echo.returncode != 0, echo.stdout + echo.stderr
    expected = {"expired": "certificate has expired", "self_signed": "self-signed certificate",
                "foreign": "unable to get local issuer certificate", "none": "no client certificate presented"}
    wait_for_log(engine, expected[which])
    [line] = security_lines(engine, "certificate-refused")
    assert expected[which] in line
    assert f"{DIRECT} CT1_AE" not in engine.log()


def test_pynetdicom_over_tls_and_one_event_per_peer_per_minute(start_engine, tmp_path: Path, pki: Pki) -> None:
    engine, port = tls_engine(start_engine, tmp_path, pki)
    assoc = tls_associate(port, pki, pki.ct1, "CT1_AE", "127.0.0.1", ModalityWorklistInformationFind)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ct_instance(21)).Status == 0x0000
        query = Dataset()
        query.PatientID = ""
        assert [status.Status for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)] == [0]
    finally:
        assoc.release()
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7777.3.21"}
    assert f"{VIA_PYNETDICOM} CT1_AE" in engine.log()      # not storage-only: pynetdicom's path, over TLS
    for source in ("127.0.0.5", "127.0.0.5", "127.0.0.5"):  # three refusals, one event
        refused = tls_associate(port, pki, pki.expired, "CT1_AE", source)
        assert not refused.is_established
    wait_for_log(engine, "from 127.0.0.5:")
    time.sleep(0.5)
    assert len([line for line in security_lines(engine, "certificate-refused") if "127.0.0.5" in line]) == 1
    # plain DICOM on the TLS port: not TLS at all
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(bytes.fromhex("01 00 00 00 00 44") + bytes(68))
        try:
            assert sock.recv(100) == b""                    # closed, nothing answered in plain
        except ConnectionResetError:
            pass
    wait_for_log(engine, "security: tls-handshake-failed from 127.0.0.1")


class TlsStorageScp:
    """A storage SCP of the test's, listening with TLS and requiring a client certificate from the CA."""

    def __init__(self, pki: Pki, port: int, issued: Issued | None = None):
        self.received: list[tuple[str, bool, str]] = []    # (SOP instance, over TLS, client certificate CN)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        issued = issued or pki.authority.issue("archive", "ARCHIVE")
        context.load_cert_chain(str(issued.cert), str(issued.key))
        context.verify_mode = ssl.CERT_REQUIRED
        ae = AE(ae_title="ARCHIVE")
        ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
        self.server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=context,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: Any) -> int:
        sock = event.assoc.dul.socket.socket
        certificate = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        names = [value for rdn in (certificate or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
        self.received.append((str(event.request.AffectedSOPInstanceUID), isinstance(sock, ssl.SSLSocket),
                              ",".join(names)))
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


def store_one_as_ct1(port: int, pki: Pki, number: int) -> None:
    """CT1_AE stores ``ct_instance(number)`` over TLS with its certificate; the engine answers success."""
    assoc = tls_associate(port, pki, pki.ct1)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ct_instance(number)).Status == 0x0000
    finally:
        assoc.release()


def test_forwarding_and_c_move_to_a_tls_archive_go_over_tls(start_engine, tmp_path: Path, pki: Pki) -> None:
    archive_port = free_port()
    archive = TlsStorageScp(pki, archive_port)
    try:
        engine, port = tls_engine(start_engine, tmp_path, pki, extra=(
            f"    ARCHIVE: {{host: 127.0.0.1, port: {archive_port}, tls: true}}\n"
            "  forward_store_to: [ARCHIVE]\n  forward_retry_seconds: 0.5\n"))
        store_one_as_ct1(port, pki, 31)
        wait_for_log(engine, "forwarded C-STORE 1.2.826.0.1.3680043.9.7777.3.31 to ARCHIVE", timeout=15)
        assert archive.received == [("1.2.826.0.1.3680043.9.7777.3.31", True, "SWF_ENGINE")]
        # C-MOVE of the study to ARCHIVE: the sub-operations' association is TLS too
        move = tls_associate(port, pki, pki.ct1, "CT1_AE", "127.0.0.1", StudyRootQueryRetrieveInformationModelMove)
        assert move.is_established
        try:
            identifier = Dataset()
            identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", "1.2.826.0.1.3680043.9.7777.1"
            statuses = [int(status.Status) for status, _ in
                        move.send_c_move(identifier, "ARCHIVE", StudyRootQueryRetrieveInformationModelMove)]
        finally:
            move.release()
        assert statuses[-1] == 0x0000, statuses
        assert archive.received[1:] == [("1.2.826.0.1.3680043.9.7777.3.31", True, "SWF_ENGINE")]
    finally:
        archive.close()


def test_outbound_tls_verifies_the_peer(start_engine, tmp_path: Path, pki: Pki) -> None:
    """An archive whose certificate is from another CA, or does not name the host dialled, gets nothing;
    with ``verify_hostname: false`` the second one does."""
    foreign_port, unnamed_port = free_port(), free_port()
    foreign = TlsStorageScp(pki, foreign_port, CertificateAuthority(tmp_path / "other-ca", "Other CA").issue(
        "archive", "ARCHIVE"))
    unnamed = TlsStorageScp(pki, unnamed_port, pki.authority.issue("unnamed", "ARCHIVE", dns=("archive.example.org",),
                                                                   ips=()))
    try:
        engine, port = tls_engine(start_engine, tmp_path, pki, extra=(
            f"    FOREIGN: {{host: 127.0.0.1, port: {foreign_port}, tls: true}}\n"
            f"    UNNAMED: {{host: 127.0.0.1, port: {unnamed_port}, tls: true}}\n"
            f"    LENIENT: {{host: 127.0.0.1, port: {unnamed_port}, tls: {{verify_hostname: false}}}}\n"
            "  forward_store_to: [FOREIGN, UNNAMED, LENIENT]\n  forward_retry_seconds: 30\n"))
        store_one_as_ct1(port, pki, 51)
        wait_for_log(engine, "forwarded C-STORE 1.2.826.0.1.3680043.9.7777.3.51 to LENIENT", timeout=15)
        for title in ("FOREIGN", "UNNAMED"):
            wait_for_log(engine, f"forward of store 1.2.826.0.1.3680043.9.7777.3.51 to {title} retry in")
        assert foreign.received == [] and unnamed.received == [("1.2.826.0.1.3680043.9.7777.3.51", True, "SWF_ENGINE")]
    finally:
        foreign.close()
        unnamed.close()


def served_certificate(port: int, pki: Pki) -> bytes:
    """The certificate the engine's TLS port presents to a new connection (DER)."""
    context = client_context(pki, pki.ct1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            return sock.getpeercert(binary_form=True)


def test_a_new_certificate_is_served_to_the_next_association(start_engine, tmp_path: Path, pki: Pki) -> None:
    engine, port = tls_engine(start_engine, tmp_path, pki)
    before = served_certificate(port, pki)
    held = tls_associate(port, pki, pki.ct1, "CT1_AE", "127.0.0.1", Verification)
    assert held.is_established
    try:
        pki.authority.issue("engine", "SWF_ENGINE")        # the same files, a new certificate and key
        deadline = time.monotonic() + 10
        while (after := served_certificate(port, pki)) == before and time.monotonic() < deadline:
            time.sleep(0.3)
        assert after != before
        assert held.send_c_echo().Status == 0x0000          # the open association keeps going
    finally:
        held.release()
    wait_for_log(engine, "DICOM TLS certificate reloaded from")
    again = tls_associate(port, pki, pki.ct1)
    assert again.is_established
    again.release()
    assert re.search(r"security: ", engine.log()) is None


def test_storage_commitment_report_reaches_a_tls_modality_over_tls(start_engine, tmp_path: Path, pki: Pki) -> None:
    """RAD-10: the engine opens a new association to the requester's TLS port for the N-EVENT-REPORT,
    presenting dicom.tls's certificate and verifying the modality's."""
    reports: list[tuple[int, bool, str]] = []            # (event type, over TLS, the engine's certificate CN)

    def on_report(event: Any) -> tuple[int, None]:
        sock = event.assoc.dul.socket.socket
        certificate = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        names = [value for rdn in (certificate or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
        reports.append((int(event.request.EventTypeID), isinstance(sock, ssl.SSLSocket), ",".join(names)))
        return 0x0000, None

    modality_port = free_port()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.ct1.cert), str(pki.ct1.key))
    context.verify_mode = ssl.CERT_REQUIRED
    listener = AE(ae_title="CT1_AE")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    server = listener.start_server(("127.0.0.1", modality_port), block=False, ssl_context=context,
                                   evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        engine, port = tls_engine(start_engine, tmp_path, pki,
                                  ct1=f"certificate: CT1_AE, host: 127.0.0.1, port: {modality_port}, tls: true",
                                  extra="  commitment_grace_seconds: 1\n  commitment_same_association_wait: 0\n")
        assoc = tls_associate(port, pki, pki.ct1, "CT1_AE", "127.0.0.1", StorageCommitmentPushModel)
        assert assoc.is_established
        try:
            stored = ct_instance(41)
            assert assoc.send_c_store(stored).Status == 0x0000
            request = Dataset()
            request.TransactionUID = "1.2.826.0.1.3680043.9.7777.9.41"
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = stored.SOPClassUID, stored.SOPInstanceUID
            request.ReferencedSOPSequence = [item]
            status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
            assert status.Status == 0x0000
        finally:
            assoc.release()
        deadline = time.monotonic() + 15
        while not reports and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reports == [(1, True, "SWF_ENGINE")], engine.log()[-3000:]
    finally:
        server.shutdown()


def test_a_peer_stalling_its_handshake_holds_no_one_up(start_engine, tmp_path: Path, pki: Pki) -> None:
    """Why the handshake is not pynetdicom's (on its listener thread, before the next accept): connections
    that never send a ClientHello must not keep a good modality out."""
    engine, port = tls_engine(start_engine, tmp_path, pki)
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        started = time.monotonic()
        assoc = tls_associate(port, pki, pki.ct1, "CT1_AE", "127.0.0.1", Verification)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert time.monotonic() - started < 3      # association_request_timeout is 5 s
    finally:
        for sock in stalled:
            sock.close()


def test_an_archive_must_present_the_certificate_its_entry_names(start_engine, tmp_path: Path, pki: Pki) -> None:
    """``dicom.aes.X.certificate`` binds outbound associations too: an archive whose verified certificate
    does not carry the name gets nothing (logged with the names it did present); one that does is served."""
    archive_port = free_port()
    archive = TlsStorageScp(pki, archive_port)               # certificate CN=ARCHIVE, SAN localhost/127.0.0.1
    try:
        engine, port = tls_engine(start_engine, tmp_path, pki, extra=(
            f"    NAMED: {{host: 127.0.0.1, port: {archive_port}, tls: true, certificate: archive}}\n"
            f"    IMPOSTOR: {{host: 127.0.0.1, port: {archive_port}, tls: true, certificate: PACS_MAIN}}\n"
            "  forward_store_to: [NAMED, IMPOSTOR]\n  forward_retry_seconds: 30\n"))
        store_one_as_ct1(port, pki, 61)
        wait_for_log(engine, "forwarded C-STORE 1.2.826.0.1.3680043.9.7777.3.61 to NAMED", timeout=15)
        wait_for_log(engine, "forward of store 1.2.826.0.1.3680043.9.7777.3.61 to IMPOSTOR retry in")
        assert "IMPOSTOR presented a certificate for" in engine.log() and "not 'PACS_MAIN'" in engine.log()
        assert archive.received == [("1.2.826.0.1.3680043.9.7777.3.61", True, "SWF_ENGINE")]
    finally:
        archive.close()
