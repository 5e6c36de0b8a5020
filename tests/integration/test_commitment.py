"""RAD-10 storage commitment against the real engine process, with a pynetdicom modality as requester.

The modality (known AE MODALITY1 in the engine's config) listens on its own port in the SCU role of the push
model: the engine must open a NEW association to it, propose Storage Commitment with the SCP/SCU role
selection SCU-role = 0 / SCP-role = 1, and send the N-EVENT-REPORT there.  A requester that keeps the N-ACTION's
association open gets the report on it instead (dicom.commitment_same_association_wait).  Instances are stored with C-STORE
(the engine's storage service).  Orthanc (Debian package 'orthanc') is a real
third-party commitment SCU in the last tests; they are skipped when it is not installed.
"""
from __future__ import annotations

import io
import json
import os
import queue
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StorageCommitmentPushModel, Verification

from tests.conftest import EngineProcess, free_port, require_tool, run_swf, wait_for_port

ENGINE_AE = "SWF_ENGINE"
WELL_KNOWN = "1.2.840.10008.1.20.1.1"
CT = str(CTImageStorage)


@dataclass
class Report:
    calling_ae: str
    event_type: int
    information: Dataset
    requestor_is_scp: bool        # the engine plays the SCP role on this association (role selection)
    at: float


@dataclass
class Modality:
    """A modality's storage commitment side: sends N-ACTIONs, receives N-EVENT-REPORTs on its own port."""

    title: str
    port: int
    answers: list[int] = field(default_factory=list)   # statuses for the next reports (then 0x0000)
    reports: "queue.Queue[Report]" = field(default_factory=queue.Queue)
    server: Any = None

    def listen(self) -> None:
        ae = AE(ae_title=self.title)
        # accept the requestor's proposal to be the SCP: we are the SCU of the push model
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])

    def _on_report(self, event: Any) -> tuple[int, None]:
        context = next(cx for cx in event.assoc.accepted_contexts if cx.context_id == event.context.context_id)
        self.reports.put(Report(event.assoc.requestor.ae_title, event.request.EventTypeID,
                                event.event_information, bool(context.as_scu and not context.as_scp), time.monotonic()))
        return (self.answers.pop(0) if self.answers else 0x0000), None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def next_report(self, timeout: float) -> Report:
        try:
            return self.reports.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no N-EVENT-REPORT reached {self.title} within {timeout} s") from None

    def request(self, engine: EngineProcess, transaction_uid: str | None, references: list[tuple[str, str]],
                action_type: int = 1, instance: str = WELL_KNOWN, dataset: Dataset | None = None,
                title: str | None = None) -> int:
        """Send one N-ACTION on its own association, release, return the status."""
        if dataset is None:
            dataset = Dataset()
            if transaction_uid is not None:
                dataset.TransactionUID = transaction_uid
            items = []
            for sop_class, sop_instance in references:
                item = Dataset()
                item.ReferencedSOPClassUID = sop_class
                item.ReferencedSOPInstanceUID = sop_instance
                items.append(item)
            dataset.ReferencedSOPSequence = items
        ae = AE(ae_title=title or self.title)
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title=ENGINE_AE)
        assert assoc.is_established, "the engine refused the N-ACTION association"
        try:
            status, _reply = assoc.send_n_action(dataset, action_type, StorageCommitmentPushModel, instance)
        finally:
            assoc.release()
        return int(status.Status)


def ct_image(study_uid: str, series_uid: str) -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = CT
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    dataset.PatientID = "PAT4711"
    dataset.PatientName = "MUELLER^ANNA"
    dataset.Modality = "CT"
    dataset.InstanceNumber = 1
    dataset.Rows = dataset.Columns = 4
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = b"\0\1" * 16
    return dataset


def store_instances(engine: EngineProcess, count: int, title: str = "MODALITY1",
                    study: str = "") -> list[tuple[str, str]]:
    """C-STORE ``count`` CT images to the engine, each answered 0x0000."""
    study, series = study or generate_uid(), generate_uid()
    ae = AE(ae_title=title)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)   # keeps the association up when CT is not accepted
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title=ENGINE_AE)
    assert assoc.is_established
    try:
        assert any(cx.abstract_syntax == CT for cx in assoc.accepted_contexts), \
            f"the engine did not accept CT Image Storage from {title}"
        stored = []
        for _ in range(count):
            image = ct_image(study, series)
            status = assoc.send_c_store(image)
            assert status.Status == 0x0000, f"C-STORE answered 0x{status.Status:04X}"
            stored.append((CT, str(image.SOPInstanceUID)))
        return stored
    finally:
        assoc.release()


def commitment_rows(engine: EngineProcess, transaction_uid: str) -> list[dict]:
    """The engine's rows for a transaction."""
    return engine.read_rows("SELECT * FROM commitments WHERE transaction_uid = ? ORDER BY id", (transaction_uid,))


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def modality() -> Any:
    started: list[Modality] = []

    def make(title: str = "MODALITY1", listening: bool = True) -> Modality:
        peer = Modality(title, free_port())
        if listening:
            peer.listen()
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.stop()


def engine_with(start_engine: Callable[..., EngineProcess], tmp_path: Path, peer: Modality,
                **settings: float) -> EngineProcess:
    values = {"commitment_grace_seconds": 1, "commitment_retry_seconds": 0.3, "commitment_max_retry_seconds": 0.6,
              **settings}
    config = tmp_path / "engine.yaml"
    config.write_text(
        "dicom:\n"
        "  aes:\n"
        f"    {peer.title}: {{host: 127.0.0.1, port: {peer.port}}}\n"
        "    NOCOMMIT: {host: 127.0.0.1, port: 9, permissions: [echo, store]}\n"
        + "".join(f"  {key}: {value}\n" for key, value in values.items()))
    return start_engine("--config", str(config))


def test_stored_instances_are_reported_committed_on_a_new_association(start_engine, tmp_path, modality) -> None:
    peer = modality()
    engine = engine_with(start_engine, tmp_path, peer)
    study = generate_uid()
    order = tmp_path / "order.hl7"
    order.write_text(
        "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS1|P|2.3.1\n"
        "PID|1||PAT4711^^^GENHOSP^MR||MUELLER^ANNA||19780214|F\n"
        "ORC|NW|PLC-1^HIS|FIL-1^RIS||SC||1^once^^20250304100000^^R\n"
        "OBR|1|PLC-1^HIS|FIL-1^RIS|CTCHEST^CT chest^99RAD||||||||||||||ACC-COMMIT-1|RP-1|SPS-1||||CT\n"
        f"ZDS|{study}^RIS^Application^DICOM\n")
    replay = run_swf("replay", str(order), "--to", engine.address, "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    stored = store_instances(engine, 2, study=study)
    transaction_uid = generate_uid()
    assert peer.request(engine, transaction_uid, stored) == 0x0000
    report = peer.next_report(10)
    assert report.calling_ae == ENGINE_AE and report.requestor_is_scp
    assert report.event_type == 1
    info = report.information
    assert info.TransactionUID == transaction_uid and info.RetrieveAETitle == ENGINE_AE
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence] == stored
    assert "FailedSOPSequence" not in info
    wait_for(lambda: commitment_rows(engine, transaction_uid)[0]["status"] == "delivered", 5, "status delivered")
    # the domain event names the order's accession and shows in its history
    history = run_swf("orders", "ACC-COMMIT-1", "--data-dir", str(engine.data_dir))
    assert "commitment.succeeded" in history.stdout and transaction_uid in history.stdout, history.stdout


def test_stored_and_missing_instances_give_event_type_2_with_both_sequences(start_engine, tmp_path, modality) -> None:
    peer = modality()
    engine = engine_with(start_engine, tmp_path, peer)
    stored = store_instances(engine, 1)
    missing = (CT, generate_uid())
    transaction_uid = generate_uid()
    assert peer.request(engine, transaction_uid, [*stored, missing]) == 0x0000
    info = peer.next_report(10).information
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence] == stored
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.FailedSOPSequence] == [(missing[1], 0x0112)]


def test_a_missing_instance_is_reported_failed_after_the_grace_period(start_engine, tmp_path, modality) -> None:
    peer = modality()
    engine = engine_with(start_engine, tmp_path, peer)
    transaction_uid, missing = generate_uid(), generate_uid()
    sent = time.monotonic()
    assert peer.request(engine, transaction_uid, [(CT, missing)]) == 0x0000
    # answered at once, persisted before the answer
    assert commitment_rows(engine, transaction_uid)[0]["calling_ae_title"] == "MODALITY1"
    report = peer.next_report(10)
    assert report.at - sent >= 0.9, "reported before the grace period for in-flight C-STOREs ran out"
    assert report.calling_ae == ENGINE_AE and report.requestor_is_scp
    assert report.event_type == 2
    info = report.information
    assert info.TransactionUID == transaction_uid and info.RetrieveAETitle == ENGINE_AE
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.FailedSOPSequence] \
        == [(CT, missing, 0x0112)]
    assert "ReferencedSOPSequence" not in info
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] == "delivered"], 5,
                   "status delivered")[0]
    assert row["attempts"] == 1
    shown = run_swf("commitments", transaction_uid, "--data-dir", str(engine.data_dir))
    assert shown.returncode == 0, shown.stderr
    assert "status delivered  report attempts 1" in shown.stdout
    assert f"{missing}  {CT}  FAILED 0x0112 no such object instance" in shown.stdout


def test_the_report_is_retried_until_the_requester_comes_up(start_engine, tmp_path, modality) -> None:
    peer = modality(listening=False)
    engine = engine_with(start_engine, tmp_path, peer, commitment_grace_seconds=0)
    transaction_uid = generate_uid()
    assert peer.request(engine, transaction_uid, [(CT, generate_uid())]) == 0x0000
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["attempts"] >= 2], 10,
                   "two failed delivery attempts")[0]
    assert row["status"] == "reporting" and "MODALITY1 at 127.0.0.1:" in row["last_error"]
    assert "not reachable" in row["last_error"]
    peer.listen()
    report = peer.next_report(10)
    assert report.event_type == 2 and report.information.TransactionUID == transaction_uid
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] == "delivered"], 5,
                   "status delivered")[0]
    assert row["attempts"] >= 3 and row["last_error"] == ""


def test_a_report_answered_with_a_failure_status_is_sent_again(start_engine, tmp_path, modality) -> None:
    peer = modality()
    peer.answers = [0x0110]
    engine = engine_with(start_engine, tmp_path, peer, commitment_grace_seconds=0)
    transaction_uid = generate_uid()
    assert peer.request(engine, transaction_uid, [(CT, generate_uid())]) == 0x0000
    first, second = peer.next_report(10), peer.next_report(10)
    assert first.information.TransactionUID == second.information.TransactionUID == transaction_uid
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] == "delivered"], 5,
                   "status delivered")[0]
    assert row["attempts"] == 2


def request_keeping_the_association(engine: EngineProcess, peer: Modality, transaction_uid: str,
                                    references: list[tuple[str, str]], keep: float) -> tuple[int, list[Any]]:
    """N-ACTION on an association kept open ``keep`` seconds (or until a report came on it), with a handler for
    N-EVENT-REPORTs bound to that association alone; the N-ACTION status and the events that came on it."""
    received: list[Any] = []
    arrived = queue.Queue()

    def on_report(event: Any) -> tuple[int, None]:
        received.append(event)
        arrived.put(event)
        return 0x0000, None

    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    dataset.ReferencedSOPSequence = items
    ae = AE(ae_title=peer.title)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title=ENGINE_AE,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    assert assoc.is_established, "the engine refused the N-ACTION association"
    try:
        status, _reply = assoc.send_n_action(dataset, 1, StorageCommitmentPushModel, WELL_KNOWN)
        try:
            event = arrived.get(timeout=keep)
            assert event.assoc is assoc
        except queue.Empty:
            pass
    finally:
        assoc.release()
    return int(status.Status), received


def test_a_requester_keeping_the_association_open_gets_the_report_on_it(start_engine, tmp_path, modality) -> None:
    peer = modality(listening=False)   # no listener: a report on a new association could not reach it
    engine = engine_with(start_engine, tmp_path, peer, commitment_grace_seconds=0)
    transaction_uid, missing = generate_uid(), generate_uid()
    status, received = request_keeping_the_association(engine, peer, transaction_uid, [(CT, missing)], keep=5)
    assert status == 0x0000
    assert len(received) == 1, "no N-EVENT-REPORT came on the N-ACTION's association"
    event = received[0]
    assert event.request.EventTypeID == 2 and event.assoc.acceptor.ae_title == ENGINE_AE
    info = event.event_information
    assert info.TransactionUID == transaction_uid and info.RetrieveAETitle == ENGINE_AE
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.FailedSOPSequence] == [(missing, 0x0112)]
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] == "delivered"], 5,
                   "status delivered")[0]
    assert row["attempts"] == 1 and row["last_error"] == ""   # no attempt on a new association


def test_same_association_wait_0_sends_the_report_on_a_new_association(start_engine, tmp_path, modality) -> None:
    peer = modality()
    engine = engine_with(start_engine, tmp_path, peer, commitment_grace_seconds=0,
                         commitment_same_association_wait=0)
    transaction_uid = generate_uid()
    status, received = request_keeping_the_association(engine, peer, transaction_uid, [(CT, generate_uid())],
                                                       keep=1.5)
    assert status == 0x0000 and received == []
    report = peer.next_report(10)
    assert report.requestor_is_scp and report.information.TransactionUID == transaction_uid


def test_n_action_errors_get_their_statuses_and_persist_nothing(start_engine, tmp_path, modality) -> None:
    peer = modality()
    engine = engine_with(start_engine, tmp_path, peer)
    reference = [(CT, generate_uid())]
    uid = generate_uid()
    assert peer.request(engine, uid, reference, action_type=2) == 0x0123
    assert peer.request(engine, uid, reference, instance="1.2.3.4") == 0x0112
    assert peer.request(engine, None, reference) == 0x0115
    assert peer.request(engine, uid, []) == 0x0115
    malformed = Dataset()
    malformed.TransactionUID = uid
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()     # no SOP class
    malformed.ReferencedSOPSequence = [item]
    assert peer.request(engine, uid, [], dataset=malformed) == 0x0115
    assert peer.request(engine, uid, reference, title="NOCOMMIT") == 0x0124
    assert commitment_rows(engine, uid) == []
    time.sleep(0.3)
    assert peer.reports.empty()


def test_a_requester_not_in_the_known_ae_list_is_parked_dead(start_engine, tmp_path, modality) -> None:
    peer = modality()
    engine = engine_with(start_engine, tmp_path, peer, commitment_grace_seconds=0)
    transaction_uid = generate_uid()
    # --allow-any-ae lets STRANGER in, but nothing says where to send its report
    assert peer.request(engine, transaction_uid, [(CT, generate_uid())], title="STRANGER") == 0x0000
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] == "dead"], 10,
                   "status dead")[0]
    assert "STRANGER is not in the known-AE list" in row["last_error"]
    listing = run_swf("commitments", "--status", "dead", "--data-dir", str(engine.data_dir))
    assert transaction_uid in listing.stdout and "STRANGER" in listing.stdout


def test_an_active_transaction_uid_sent_again_fails_every_item_with_0x0131(start_engine, tmp_path, modality) -> None:
    peer = modality(listening=False)   # keeps the first request active (its report cannot be delivered yet)
    engine = engine_with(start_engine, tmp_path, peer, commitment_grace_seconds=0, commitment_retry_seconds=0.5,
                         commitment_max_retry_seconds=0.5)
    transaction_uid, first, second = generate_uid(), generate_uid(), generate_uid()
    assert peer.request(engine, transaction_uid, [(CT, first)]) == 0x0000
    assert peer.request(engine, transaction_uid, [(CT, second)]) == 0x0000
    peer.listen()
    reports = [peer.next_report(10), peer.next_report(10)]
    failures = {i.ReferencedSOPInstanceUID: i.FailureReason for r in reports for i in r.information.FailedSOPSequence}
    assert failures == {first: 0x0112, second: 0x0131}


# -- Orthanc (Debian package 'orthanc') as a real third-party storage commitment SCU -------------------
ORTHANC = shutil.which("Orthanc")


@dataclass
class OrthancPeer:
    process: subprocess.Popen
    http_port: int
    dicom_port: int
    log_path: Path

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def report(self, transaction_uid: str, timeout: float) -> dict:
        def done() -> dict | None:
            report = self.call("GET", f"/storage-commitment/{transaction_uid}")
            return report if report["Status"] != "Pending" else None
        try:
            return wait_for(done, timeout, "Orthanc's storage commitment report")
        except AssertionError:
            raise AssertionError("Orthanc got no report; its log:\n" + self.log_path.read_text()[-3000:]) from None


@pytest.fixture
def orthanc(tmp_path: Path) -> Any:
    """Orthanc on free ports; ``start(engine_port)`` once the engine runs (Orthanc must know where it is)."""
    require_tool(ORTHANC, "Orthanc (Debian package 'orthanc')")
    started: list[OrthancPeer] = []
    ports = (free_port(), free_port())

    def start(engine_port: int) -> OrthancPeer:
        http_port, dicom_port = ports
        folder = tmp_path / "orthanc"
        (folder / "db").mkdir(parents=True)
        config = {
            "Name": "SWF-TEST", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpServerEnabled": True, "HttpPort": http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomServerEnabled": True, "DicomAet": "ORTHANC",
            "DicomPort": dicom_port, "DicomCheckCalledAet": False, "DicomScuTimeout": 10, "Plugins": [],
            "SaveJobs": False,
            # Orthanc accepts the N-EVENT-REPORT only from a declared modality (lab README, pitfall 4)
            "DicomModalities": {"engine": {"AET": ENGINE_AE, "Host": "127.0.0.1", "Port": engine_port}},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        log_path = folder / "orthanc.log"
        process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=open(log_path, "w"),
                                   stderr=subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"})
        peer = OrthancPeer(process, http_port, dicom_port, log_path)
        started.append(peer)
        wait_for_port(http_port, process)
        wait_for_port(dicom_port, process)
        return peer

    start.ports = ports   # type: ignore[attr-defined]
    yield start
    for peer in started:   # a scratch instance: no need for its 3 s graceful shutdown
        peer.process.kill()
        peer.process.wait(10)


def engine_for_orthanc(start_engine, tmp_path: Path, orthanc: Any) -> tuple[EngineProcess, OrthancPeer]:
    _http, dicom = orthanc.ports
    engine = engine_with(start_engine, tmp_path, Modality("ORTHANC", dicom))
    return engine, orthanc(engine.dicom_port)


def test_orthanc_as_commitment_scu_gets_the_failure_report(start_engine, tmp_path, orthanc) -> None:
    engine, peer = engine_for_orthanc(start_engine, tmp_path, orthanc)
    missing = generate_uid()
    answer = peer.call("POST", "/modalities/engine/storage-commitment",
                       {"DicomInstances": [{"SOPClassUID": CT, "SOPInstanceUID": missing}]})
    report = peer.report(answer["ID"], 15)
    assert report["Status"] == "Failure", report
    assert [(f["SOPInstanceUID"], f["FailureReason"]) for f in report["Failures"]] == [(missing, 0x0112)]
    assert report.get("Success", []) == []
    assert commitment_rows(engine, answer["ID"])[0]["status"] == "delivered"


def test_orthanc_stores_then_commits_and_gets_success(start_engine, tmp_path, orthanc) -> None:
    engine, peer = engine_for_orthanc(start_engine, tmp_path, orthanc)
    assert engine_accepts(engine, CT), "the engine did not accept CT Image Storage from Orthanc"
    image = ct_image(generate_uid(), generate_uid())
    buffer = io.BytesIO()
    image.save_as(buffer, enforce_file_format=True)
    uploaded = peer.call("POST", "/instances", buffer.getvalue())
    job = peer.call("POST", "/modalities/engine/store",
                    {"Resources": [uploaded["ID"]], "Synchronous": True, "StorageCommitment": True})
    assert job["FailedInstancesCount"] == 0, job
    report = peer.report(job["StorageCommitmentTransactionUID"], 15)
    assert report["Status"] == "Success", report
    assert [s["SOPInstanceUID"] for s in report["Success"]] == [str(image.SOPInstanceUID)]


def engine_accepts(engine: EngineProcess, sop_class: str) -> bool:
    ae = AE(ae_title="PROBE")
    ae.add_requested_context(sop_class)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title=ENGINE_AE)
    try:
        return assoc.is_established and any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts)
    finally:
        if assoc.is_established:
            assoc.release()
