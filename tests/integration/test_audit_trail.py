"""The ATNA audit trail (issue 14) against a real Audit Record Repository: Debian's rsyslogd with its TLS
(gtls) and UDP listeners on loopback (tests/audit_repository.py).  Real traffic drives every event class:
HL7 over MLLP (``swf replay`` of the sample day), console logins over HTTP, ``swf users`` / ``swf outbox``
from another process, a rules edit, MPPS from pynetdicom, DCMTK storescu / findscu (Q/R and MWL) and a
pynetdicom C-MOVE; each message must arrive whole (rsyslog's own octet-count split), parse as XML and carry
what PS3.15 A.5 requires of its class.  Also: the repository down, then up (the queue waits, survives an
engine restart and arrives in order), UDP, and the trail off by default."""
from __future__ import annotations

import base64
import shutil
import signal
import sqlite3
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from engine.audit_trail.delivery import AuditDelivery
from engine.audit_trail.recorder import AuditTrail
from engine.cluster import Cluster
from engine.config import AuditConfig, Config
from engine.store import audit_queue
from engine.store.database import Store
from tests.audit_repository import AuditRepository, event_name, of_event
from tests.conftest import ROOT, EngineProcess, free_port, require_tool, run_swf
from tests.integration.test_mpps import Modality, final, in_progress
from tests.integration.test_mpps import ORDER as MPPS_ORDER
from tests.integration.test_storage_qr import ORDER as STORE_ORDER
from tests.integration.test_storage_qr import STUDY as STORED_STUDY
from tests.integration.test_storage_qr import StorageSCP, dcmtk, findscu, make_files, storescu
from tests.integration.test_users_access import add_user, call, login
from tests.pki import CertificateAuthority
from tests.tls_clients import END, START, client_context, tls_exchange

DAY = ROOT / "samples" / "day-v251.hl7"


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditRepository]:
    require_tool(shutil.which("rsyslogd"), "rsyslogd (Debian rsyslog, rsyslog-gnutls)")
    found = AuditRepository(tmp_path_factory.mktemp("rsyslog"))
    found.start()
    yield found
    found.stop()


def audit_config(tmp_path: Path, repository_url: str, ca: Path, app: str, extra: str = "") -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(f"audit:\n  repository: \"{repository_url}\"\n  ca: \"{ca}\"\n  app_name: {app}\n"
                    f"  enterprise_site: RIVERSIDE\n  transfer_quiet_seconds: 0.3\n  retry_max_seconds: 1.0\n{extra}")
    return path


# -- what PS3.15 A.5 requires of every message and of each class --------------------------------------
def roles(audit: ET.Element) -> set[str]:
    return {role.get("csd-code") for role in audit.iter("RoleIDCode")}


def objects(audit: ET.Element, id_type: str) -> list[ET.Element]:
    return [item for item in audit.findall("ParticipantObjectIdentification")
            if item.find("ParticipantObjectIDTypeCode").get("csd-code") == id_type]


def type_codes(audit: ET.Element) -> set[str]:
    return {code.get("csd-code") for code in audit.findall("EventIdentification/EventTypeCode")}


def check_common(audit: ET.Element) -> None:
    assert audit.tag == "AuditMessage"
    identification = audit.find("EventIdentification")
    assert identification.get("EventActionCode") in ("C", "R", "U", "D", "E")
    datetime.fromisoformat(identification.get("EventDateTime"))
    assert identification.get("EventOutcomeIndicator") in ("0", "4", "8", "12")
    event_id = identification.find("EventID")
    assert event_id.get("codeSystemName") == "DCM" and event_id.get("csd-code").startswith("1101")
    participants = audit.findall("ActiveParticipant")
    assert participants and all(p.get("UserID") and p.get("UserIsRequestor") in ("true", "false") for p in participants)
    source = audit.find("AuditSourceIdentification")
    assert source.get("AuditSourceID") and source.get("AuditEnterpriseSiteID") == "RIVERSIDE"
    assert source.find("AuditSourceTypeCode").get("csd-code") == "4"
    names = [child.tag for child in audit]
    assert names[0] == "EventIdentification" and names.index("AuditSourceIdentification") > names.index("ActiveParticipant")
    for item in audit.findall("ParticipantObjectIdentification"):
        assert item.get("ParticipantObjectID")


def check_patient(audit: ET.Element) -> ET.Element:
    [patient] = objects(audit, "2")
    assert (patient.get("ParticipantObjectTypeCode"), patient.get("ParticipantObjectTypeCodeRole")) == ("1", "1")
    return patient


def check_study(audit: ET.Element) -> list[ET.Element]:
    studies = objects(audit, "110180")
    assert studies
    for study in studies:
        assert study.find("ParticipantObjectDescription") is not None
    return studies


def check_class(audit: ET.Element) -> None:
    check_common(audit)
    name = event_name(audit)
    if name == "Application Activity":
        assert type_codes(audit) <= {"110120", "110121"} and len(type_codes(audit)) == 1
        assert "110150" in roles(audit)
    elif name == "User Authentication":
        assert len(type_codes(audit) & {"110122", "110123"}) == 1
        assert any(p.get("UserIsRequestor") == "true" for p in audit.findall("ActiveParticipant"))
    elif name in ("Patient Record", "Order Record"):
        check_patient(audit)
        assert any(p.get("UserIsRequestor") == "true" for p in audit.findall("ActiveParticipant"))
    elif name == "Procedure Record":
        check_patient(audit)
        [study] = check_study(audit)
        assert study.find("ParticipantObjectDescription/MPPS").get("UID")
    elif name == "Query":
        assert {"110153", "110152"} <= roles(audit)
        [query] = objects(audit, "110181")
        dcmread(BytesIO(base64.b64decode(query.find("ParticipantObjectQuery").text)), force=True)
        syntax = query.find("ParticipantObjectDetail")
        assert syntax.get("type") == "TransferSyntax" and base64.b64decode(syntax.get("value")).startswith(b"1.2.840")
    elif name in ("DICOM Instances Transferred", "Begin Transferring DICOM Instances"):
        assert {"110153", "110152"} <= roles(audit)
        check_patient(audit)
        for study in check_study(audit):
            classes = study.findall("ParticipantObjectDescription/SOPClass")
            assert classes and all(int(c.get("NumberOfInstances")) > 0 for c in classes)
    elif name == "Security Alert":
        assert len(type_codes(audit)) == 1
        [subject] = audit.findall("ParticipantObjectIdentification")
        detail = subject.find("ParticipantObjectDetail")
        assert detail.get("type") == "Alert Description" and base64.b64decode(detail.get("value"))
    elif name == "Export":
        assert {"110153", "110152"} <= roles(audit)
        assert any(p.get("UserIsRequestor") == "true" for p in audit.findall("ActiveParticipant"))
    else:
        raise AssertionError(f"unexpected event {name}")


def actions(audits: list[ET.Element], name: str) -> list[str]:
    return [a.find("EventIdentification").get("EventActionCode") for a in of_event(audits, name)]


# -- every class, from real traffic --------------------------------------------------------------------
def test_hl7_console_and_operator_events_reach_rsyslog(start_engine, repository: AuditRepository,
                                                       tmp_path: Path) -> None:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    config = audit_config(tmp_path, repository.tls_url, repository.authority.ca, "swf-hl7")
    engine = start_engine("--config", str(config), routes=routes,
                          env={"SWF_ARCHIVE_ADDRESS": f"127.0.0.1:{free_port()}"})   # nobody there: queued
    add_user(engine.data_dir, "alice", "admin")                                          # swf users: another process
    assert login(engine.http_port, "alice", "wrong password").status == 401
    session = login(engine.http_port, "alice")
    assert session.status == 200
    assert call(engine.http_port, "POST", "/auth/logout", cookie=session.cookie,
                headers={"X-CSRF-Token": session.body["csrf_token"]}).status == 200
    done = run_swf("replay", str(DAY), "--to", engine.address, "--no-progress", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    outbox = sqlite3.connect(engine.data_dir / "swf.sqlite").execute("SELECT MIN(id) FROM outbox").fetchone()[0]
    assert run_swf("outbox", "resend", str(outbox), "--data-dir", str(engine.data_dir)).returncode == 0
    cancelled = run_swf("cancel", "R2503060006", "--reason", "patient left", "--data-dir", str(engine.data_dir))
    assert cancelled.returncode == 0, cancelled.stderr
    (routes / "20-rooms.yaml").write_text((routes / "20-rooms.yaml").read_text() + "\n# edited\n")

    wanted = {"Application Activity", "User Authentication", "Patient Record", "Order Record", "Security Alert",
              "Export"}
    audits = repository.wait_for(lambda found: wanted <= {event_name(a) for a in found} and len(
        [a for a in of_event(found, "Security Alert") if "110131" in type_codes(a)]) >= 1 and any(
        "patient left" in (a.findtext("EventIdentification/EventOutcomeDescription") or "")
        for a in of_event(found, "Order Record")), "swf-hl7")
    for audit in audits:
        check_class(audit)
    assert wanted <= {event_name(a) for a in audits}
    assert {"C", "U"} <= set(actions(audits, "Patient Record"))            # A04/A01 create, A08 update, A40 merge
    assert {"C", "U", "D"} <= set(actions(audits, "Order Record"))          # NW, XO, CA
    hl7_requestors = {p.get("UserID") for a in of_event(audits, "Order Record") for p in a.iter("ActiveParticipant")
                      if p.get("UserIsRequestor") == "true"}
    assert "RIS^RIVERSIDE" in hl7_requestors
    [by_command_line] = [a for a in of_event(audits, "Order Record")
                         if "patient left" in a.findtext("EventIdentification/EventOutcomeDescription")]
    assert by_command_line.find("EventIdentification").get("EventActionCode") == "D"
    assert any(p.get("UserID").startswith("cli:") and p.get("UserIsRequestor") == "true"
               for p in by_command_line.iter("ActiveParticipant"))
    assert objects(by_command_line, "110180")[0].find("ParticipantObjectDescription/Accession").get("Number") == \
        "R2503060006"
    authentications = of_event(audits, "User Authentication")
    outcomes = {(next(iter(type_codes(a))), a.find("EventIdentification").get("EventOutcomeIndicator"))
                for a in authentications}
    assert {("110122", "0"), ("110122", "4"), ("110123", "0")} <= outcomes   # login, failed login, logout
    alerts = {next(iter(type_codes(a))) for a in of_event(audits, "Security Alert")}
    assert {"110136", "110132", "110131"} <= alerts    # user added, failed login, rules reloaded
    [export] = of_event(audits, "Export")
    assert "archive" in {p.get("UserID") for p in export.iter("ActiveParticipant")}
    merged = [a for a in of_event(audits, "Patient Record")
              if "patient.merged" in (a.findtext("EventIdentification/EventOutcomeDescription") or "")]
    assert merged
    engine.process.send_signal(signal.SIGTERM)
    engine.process.wait(15)
    audits = repository.wait_for(lambda found: "110121" in {c for a in found for c in type_codes(a)}, "swf-hl7")
    assert [type_codes(a) for a in of_event(audits, "Application Activity")] == [{"110120"}, {"110121"}]


def test_dicom_events_reach_rsyslog(start_engine, repository: AuditRepository, tmp_path: Path) -> None:
    destination = StorageSCP("DEST")
    try:
        aes = ("dicom:\n  aes:\n    CT1_AE: {}\n    VIEWER: {}\n    MOVER: {}\n"
               f"    DEST: {{host: 127.0.0.1, port: {destination.port}}}\n")
        config = audit_config(tmp_path, repository.tls_url, repository.authority.ca, "swf-dicom", aes)
        engine = start_engine("--config", str(config), allow_any_ae=False)
        orders = tmp_path / "orders.hl7"
        orders.write_bytes(MPPS_ORDER + STORE_ORDER)
        sent = run_swf("replay", str(orders), "--to", engine.address, "--no-progress")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        modality = Modality(engine.dicom_port)
        status, _ = modality.create(in_progress(), "2.25.99887766")
        assert status.Status == 0
        status, _ = modality.set(final(), "2.25.99887766")
        assert status.Status == 0
        modality.close()
        files = make_files(tmp_path / "files")
        stored = storescu(engine, files["ct1"], files["ct2"])
        assert stored.returncode == 0, stored.stdout + stored.stderr
        assert findscu(engine, tmp_path / "qr", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STORED_STUDY}")
        worklist = dcmtk("findscu", "-W", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
                         "-k", "AccessionNumber", "-k", "ScheduledProcedureStepSequence[0].Modality=CT")
        assert worklist.returncode == 0, worklist.stderr
        mover = AE(ae_title="MOVER")
        mover.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = mover.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
        identifier = Dataset()
        identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", STORED_STUDY
        statuses = [status.Status for status, _ in assoc.send_c_move(identifier, "DEST",
                                                                    StudyRootQueryRetrieveInformationModelMove)]
        assoc.release()
        assert statuses[-1] == 0 and len(destination.received) == 2
        refused = dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port))
        assert refused.returncode != 0                                       # A-ASSOCIATE-RJ: unknown calling AE

        wanted = {"Procedure Record", "Query", "DICOM Instances Transferred", "Begin Transferring DICOM Instances",
                  "Order Record", "Security Alert"}
        audits = repository.wait_for(lambda found: wanted <= {event_name(a) for a in found} and len(
            of_event(found, "DICOM Instances Transferred")) >= 2 and len(of_event(found, "Query")) >= 2, "swf-dicom")
        for audit in audits:
            check_class(audit)
        assert {"C", "U"} <= set(actions(audits, "Procedure Record"))        # N-CREATE, N-SET
        queried = {objects(a, "110181")[0].get("ParticipantObjectID") for a in of_event(audits, "Query")}
        assert {"1.2.840.10008.5.1.4.31", "1.2.840.10008.5.1.4.1.2.2.1"} <= queried   # MWL, Study Root Q/R
        worklist_query = next(a for a in of_event(audits, "Query")
                              if objects(a, "110181")[0].get("ParticipantObjectID") == "1.2.840.10008.5.1.4.31")
        sent = dcmread(BytesIO(base64.b64decode(objects(worklist_query, "110181")[0].findtext("ParticipantObjectQuery"))),
                       force=True)
        assert sent.ScheduledProcedureStepSequence[0].Modality == "CT"     # the query as the modality sent it
        transfers = {a.find("EventIdentification").get("EventActionCode"): a
                     for a in of_event(audits, "DICOM Instances Transferred")}
        assert set(transfers) == {"C", "R"}                                   # C-STORE in, C-MOVE out
        received = transfers["C"]
        assert {p.get("UserID") for p in received.iter("ActiveParticipant")} >= {"CT1_AE"}
        [study] = objects(received, "110180")
        assert study.get("ParticipantObjectID") == STORED_STUDY
        assert study.find("ParticipantObjectDescription/SOPClass").get("NumberOfInstances") == "2"
        assert check_patient(received).get("ParticipantObjectID") == "PAT0911"
        moved = transfers["R"]
        assert {"DEST", "MOVER"} <= {p.get("UserID") for p in moved.iter("ActiveParticipant")}
        [alert] = of_event(audits, "Security Alert")
        assert type_codes(alert) == {"110126"}                               # node authentication
        assert {p.get("UserID") for p in alert.iter("ActiveParticipant")} >= {"INTRUDER"}
        assert objects(alert, "110182")[0].get("ParticipantObjectID") == "127.0.0.1"
    finally:
        destination.close()


def test_tls_refusals_of_the_mllp_listener_reach_rsyslog_as_security_alerts(
        start_engine, repository: AuditRepository, tmp_path: Path) -> None:
    """The TLS adapter's security events (a refused certificate, MSH-3 not covered by the certificate
    presented) reach the repository through the engine's one bus, as Security Alerts naming the peer."""
    pki = CertificateAuthority(tmp_path / "pki")
    server, tls_port = pki.issue("server", "swf-engine.test"), free_port()
    extra = (f"mllp:\n  tls_port: {tls_port}\n  tls: {{cert: {server.cert}, key: {server.key}, ca: {pki.ca},"
             " require_client_cert: true}\n  senders:\n    RIS: {certificate: ris.hospital.example}\n")
    engine = start_engine("--config", str(audit_config(tmp_path, repository.tls_url, repository.authority.ca,
                                                       "swf-tls", extra)))
    order = (b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|SPOOF9|P|2.3.1\r"
             b"PID|1||PAT-9^^^GENHOSP^MR||DOE^JANE")
    with pytest.raises((OSError, AssertionError)):   # a self-signed client certificate: no handshake
        answer = tls_exchange(tls_port, client_context(pki.ca, pki.issue("self", "x", self_signed=True)),
                              START + order + END, source="127.0.0.7")
        assert b"MSA" in answer, "no ACK: refused"
    answer = tls_exchange(tls_port, client_context(pki.ca, pki.issue("modality", "modality.hospital.example")),
                          START + order + END, source="127.0.0.8")
    assert b"MSA|AR|SPOOF9" in answer, answer   # a modality's certificate claiming MSH-3 RIS

    def alerts(found: list[ET.Element]) -> dict[str, ET.Element]:
        return {(a.find("EventIdentification").findtext("EventOutcomeDescription") or "").split(":")[0]: a
                for a in of_event(found, "Security Alert")}
    audits = repository.wait_for(lambda found: {"certificate-refused", "msh-certificate-mismatch"} <= set(
        alerts(found)), "swf-tls")
    found = alerts(audits)
    for kind, source in (("certificate-refused", "127.0.0.7"), ("msh-certificate-mismatch", "127.0.0.8")):
        check_class(found[kind])
        assert type_codes(found[kind]) == {"110126"}, kind   # node authentication
        access_points = {p.get("NetworkAccessPointID") for p in found[kind].iter("ActiveParticipant")}
        assert source in access_points, (kind, access_points)


# -- the wire: rsyslog splits what the delivery frames ----------------------------------------------------
def test_octet_counted_frames_split_by_rsyslog(repository: AuditRepository, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    store.start()
    newline, large = "line one\nline two", "x" * 60000
    bodies = [f"<AuditMessage><n>{i}</n>{newline if i == 3 else ''}{large if i == 5 else 'x'}</AuditMessage>".encode()
              for i in range(12)]
    store.write(lambda txn: [audit_queue.enqueue(txn, "Test", body) for body in bodies])
    config = AuditConfig(repository=repository.tls_url, ca=str(repository.authority.ca), app_name="swf-frames")
    delivery = AuditDelivery(AuditTrail(config, store), store, config,
                             Cluster(Config(), store, standalone=True).keeper(audit_queue.LEASE))
    delivery.start()
    try:
        found = repository.wait_for(lambda got: len(got) >= len(bodies), "swf-frames")
        assert [ET.tostring(audit) for audit in found] == bodies       # every one whole, in order, none merged
        assert found[3].findtext("n") == "3" and "line one\nline two" in ET.tostring(found[3]).decode()
        assert all(m["pri"] == "85" for m in repository.messages() if m["app"] == "swf-frames")
        deadline = time.monotonic() + 5
        while store.read(audit_queue.depth)[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.read(audit_queue.depth) == (0, "")
    finally:
        delivery.stop(0)
        store.close()


def test_udp_repository(start_engine, repository: AuditRepository, tmp_path: Path) -> None:
    config = audit_config(tmp_path, f"udp://127.0.0.1:{repository.udp_port}", repository.authority.ca, "swf-udp")
    start_engine("--config", str(config))
    audits = repository.wait_for(lambda found: bool(found), "swf-udp")
    [start] = of_event(audits, "Application Activity")
    check_class(start)


# -- the repository down for a while ----------------------------------------------------------------------
def test_queue_waits_for_the_repository_across_a_restart_and_arrives_in_order(start_engine, tmp_path: Path) -> None:
    down = AuditRepository(tmp_path / "rsyslog", tls_port=free_port())      # not started yet
    config = audit_config(tmp_path, down.tls_url, down.authority.ca, "swf-down")
    engine = start_engine("--config", str(config))
    done = run_swf("replay", str(DAY), "--to", engine.address, "--no-progress", timeout=60)
    assert done.returncode == 0
    deadline = time.monotonic() + 5
    while call_metrics(engine)["swf_audit_queue_depth"] <= 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    metrics = call_metrics(engine)
    assert metrics["swf_audit_queue_depth"] > 20 and metrics["swf_audit_queue_oldest_age_seconds"] > 0
    engine.process.send_signal(signal.SIGTERM)                              # the queue is in the store
    engine.process.wait(15)
    queued = sqlite3.connect(engine.data_dir / "swf.sqlite").execute(
        "SELECT COUNT(*), MAX(attempts) FROM audit_queue").fetchone()
    assert queued[0] > 20 and queued[1] >= 1
    engine = start_engine("--config", str(config), data_dir=engine.data_dir)
    down.start()
    try:
        audits = down.wait_for(lambda found: len(found) >= queued[0] + 1, "swf-down")
        for audit in audits:
            check_class(audit)
        starts = [a for a in of_event(audits, "Application Activity") if type_codes(a) == {"110120"}]
        assert len(starts) == 2
        control_ids = [p.get("AlternativeUserID") for a in audits for p in a.iter("ActiveParticipant")
                       if p.get("UserIsRequestor") == "true" and p.get("AlternativeUserID")]
        replayed = [c for c in control_ids if c.startswith(("HIS5", "RIS5"))]
        assert len(set(replayed)) > 20 and replayed == _in_file_order(replayed)   # as the messages came
        times = [a.find("EventIdentification").get("EventDateTime") for a in audits]
        assert times == sorted(times, key=lambda t: datetime.fromisoformat(t))   # oldest first, as queued
        deadline = time.monotonic() + 5
        while call_metrics(engine)["swf_audit_queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert call_metrics(engine)["swf_audit_queue_depth"] == 0
    finally:
        down.stop()


def _in_file_order(control_ids: list[str]) -> list[str]:
    order = [line.split("|")[9] for line in DAY.read_text(encoding="utf-8").replace("\r", "\n").splitlines()
             if line.startswith("MSH")]
    return sorted(control_ids, key=order.index)


def call_metrics(engine: EngineProcess) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{engine.http_port}/metrics", timeout=10).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("swf_audit_")}


def test_unusable_repository_settings_refuse_to_start(tmp_path: Path) -> None:
    for url, extra, said in (("syslog://127.0.0.1:514", "", "use tls://host:6514 or udp://host:514"),
                             ("tls://127.0.0.1:6514", "", "cannot load the TLS files")):
        config = audit_config(tmp_path, url, tmp_path / "missing-ca.pem", "swf-bad", extra)
        done = run_swf("serve", "--config", str(config), "--data-dir", str(tmp_path / "var"), "--mllp-port",
                       str(free_port()), "--http-port", "-1", "--dicom-port", "-1", timeout=30)
        assert done.returncode == 2 and said in done.stderr, done.stderr


def test_off_by_default_nothing_is_queued(start_engine) -> None:
    engine = start_engine()
    done = run_swf("replay", str(DAY), "--to", engine.address, "--no-progress", timeout=60)
    assert done.returncode == 0
    assert sqlite3.connect(engine.data_dir / "swf.sqlite").execute("SELECT COUNT(*) FROM audit_queue").fetchone() == (0,)
    assert "swf_audit_queue_depth" not in call_metrics(engine)
