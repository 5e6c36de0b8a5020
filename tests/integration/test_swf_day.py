"""One patient's whole Scheduled Workflow day against the real engine (SWF.md 9), with real peers:
python-hl7's mllp_send as the HIS/RIS, DCMTK findscu and storescu as the modality's worklist and storage
clients, pynetdicom as MPPS and storage commitment SCU, and an MLLP receiver standing in for the RIS.

ADT A04 + ORM NW -> worklist item -> MPPS IN PROGRESS -> RIS gets ORC-5 IP -> images stored ->
commitment N-ACTION -> N-EVENT-REPORT success -> MPPS COMPLETED -> RIS gets ORC-5 CM -> the order's history.
Variants: the RIS is down for the day (everything arrives afterwards, in order) and the engine is killed
mid-day (nothing lost, nothing doubled).
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, ModalityPerformedProcedureStep, StorageCommitmentPushModel

from tests.conftest import ROOT, free_port, run_swf
from tests.mllp_receiver import Receiver

STUDY = "2.25.196472841560937218203340981652004917121"
ACCESSION = "ACC25030417"
DAY = ("MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304081502||ADT^A04^ADT_A01|HIS0000123|P|2.5.1||||||UNICODE UTF-8\n"
       "EVN|A04|20250304081500\n"
       "PID|1||PAT4711^^^GENHOSP^MR||MÜLLER^ANNA^MARIA^^DR.||19780214|F\n"
       "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V20250304-17\n"
       "\n"
       "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS0000457|P|2.3.1||||||UNICODE UTF-8\n"
       "PID|1||PAT4711^^^GENHOSP^MR||MÜLLER^ANNA^MARIA^^DR.||19780214|F\n"
       "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V20250304-17\n"
       "ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||1^once^^20250304100000^^R\n"
       "OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest with contrast^99RAD^CTCH-P1^Chest CT^99RAD|||||||||"
       "|||2345^GREY^MEREDITH^^^DR||ACC25030417|RP-0417-1|SPS-0417-1||||CT\n"
       f"ZDS|{STUDY}^RIS^Application^DICOM\n")
DCMTK = {**os.environ, "TCP_NODELAY": "1"}


def start_day(start_engine, tmp_path: Path, ris_address: str, modality_port: int, data_dir: Path | None = None):
    config = tmp_path / "engine.yaml"
    config.write_text(f"dicom:\n  commitment_grace_seconds: 2\n  commitment_retry_seconds: 0.5\n"
                      f"  aes:\n    CT1_AE: {{host: 127.0.0.1, port: {modality_port}}}\n")
    routes = tmp_path / "routes"
    if not routes.exists():
        import shutil

        shutil.copytree(ROOT / "routes", routes)
        text = (routes / "05-destinations.yaml").read_text().replace(
            "    receiving_application: RIS\n",
            "    receiving_application: RIS\n    retry_seconds: 0.3\n    max_retry_seconds: 1\n", 1)
        (routes / "05-destinations.yaml").write_text(text)
    return start_engine("--config", str(config), routes=routes, data_dir=data_dir,
                        env={"SWF_RIS_ADDRESS": ris_address})


def send_hl7_with_mllp_send(engine, tmp_path: Path) -> None:
    day = tmp_path / "day.hl7"
    day.write_text(DAY, encoding="utf-8")
    sent = subprocess.run([str(ROOT / ".venv" / "bin" / "mllp_send"), "--loose", "-f", str(day), "-p",
                           str(engine.mllp_port), "127.0.0.1"], capture_output=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count(b"MSA|AA|") == 2, sent.stdout


def worklist(engine, tmp_path: Path) -> str:
    result = subprocess.run(
        ["findscu", "-W", "-v", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
         "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT1_AE",
         "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20250304",
         "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
         "-k", "AccessionNumber", "-k", "PatientName", "-k", "StudyInstanceUID"],
        capture_output=True, text=True, env=DCMTK, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def mpps(engine, uid: str, status: str) -> int:
    ae = AE(ae_title="CT1_AE")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    try:
        if status == "IN PROGRESS":
            item = Dataset()
            item.StudyInstanceUID, item.AccessionNumber = STUDY, ACCESSION
            item.RequestedProcedureID, item.ScheduledProcedureStepID = "RP-0417-1", "SPS-0417-1"
            ds = Dataset()
            ds.PatientName, ds.PatientID, ds.Modality = "MULLER^ANNA", "PAT4711", "CT"
            ds.PerformedProcedureStepID, ds.PerformedStationAETitle = "PPS-8831", "CT1_AE"
            ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = "20250304", "100312"
            ds.PerformedProcedureStepStatus = "IN PROGRESS"
            ds.PerformedProcedureStepEndDate = ds.PerformedProcedureStepEndTime = None
            ds.PerformedSeriesSequence = []
            ds.ScheduledStepAttributesSequence = [item]
            result, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        else:
            ds = Dataset()
            ds.PerformedProcedureStepStatus = status
            ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = "20250304", "101945"
            series = Dataset()
            series.SeriesInstanceUID, series.ProtocolName = STUDY + ".1", "CHEST_C"
            series.ReferencedImageSequence = []
            ds.PerformedSeriesSequence = [series]
            result, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
    finally:
        assoc.release()
    return int(result.Status)


def write_images(folder: Path, count: int) -> list[tuple[str, str]]:
    folder.mkdir()
    references = []
    for number in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid(prefix="2.25.")
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, STUDY + ".1"
        ds.PatientID, ds.PatientName, ds.AccessionNumber, ds.Modality = "PAT4711", "MULLER^ANNA", ACCESSION, "CT"
        ds.InstanceNumber = number + 1
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = bytes(128)
        ds.save_as(folder / f"ct{number}.dcm", enforce_file_format=True)
        references.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return references


def commit(engine, modality_port: int, references: list[tuple[str, str]]) -> Dataset:
    reports: queue.Queue = queue.Queue()

    def on_report(event: Any) -> tuple[int, None]:
        reports.put((event.request.EventTypeID, event.event_information))
        return 0x0000, None

    listener = AE(ae_title="CT1_AE")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    server = listener.start_server(("127.0.0.1", modality_port), block=False,
                                   evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        requester = AE(ae_title="CT1_AE")
        requester.add_requested_context(StorageCommitmentPushModel)
        assoc = requester.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
        assert assoc.is_established
        request = Dataset()
        request.TransactionUID = generate_uid(prefix="2.25.")
        items = []
        for sop_class, sop_instance in references:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
            items.append(item)
        request.ReferencedSOPSequence = items
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
        assoc.release()
        assert int(status.Status) == 0x0000
        event_type, information = reports.get(timeout=30)
        assert event_type == 1 and len(information.ReferencedSOPSequence) == len(references)
        assert "FailedSOPSequence" not in information
        return information
    finally:
        server.shutdown()


def test_the_whole_day(start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    modality_port = free_port()
    engine = start_day(start_engine, tmp_path, ris.address, modality_port)
    send_hl7_with_mllp_send(engine, tmp_path)
    found = worklist(engine, tmp_path)
    assert "Find Response: 1 (Pending)" in found and "Find Response: 2 (Pending)" not in found
    assert ACCESSION in found and "SPS-0417-1" in found
    uid = generate_uid(prefix="2.25.")
    assert mpps(engine, uid, "IN PROGRESS") == 0x0000
    [in_progress] = ris.wait_for(1)
    assert (in_progress.get("ORC-1"), in_progress.get("ORC-5"), in_progress.get("OBR-18")) == ("SC", "IP", ACCESSION)
    assert in_progress.get("OBR-7") == "20250304100312" and in_progress.get("ZDS-1.1") == STUDY
    assert "Find Response: 1 (Pending)" not in worklist(engine, tmp_path)  # started: no longer offered
    references = write_images(tmp_path / "images", 3)
    stored = subprocess.run(["storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "+sd", "127.0.0.1",
                             str(engine.dicom_port), str(tmp_path / "images")], capture_output=True, text=True,
                            env=DCMTK, timeout=60)
    assert stored.returncode == 0, stored.stderr
    commit(engine, modality_port, references)
    assert mpps(engine, uid, "COMPLETED") == 0x0000
    completed = ris.wait_for(2)[1]
    assert (completed.get("ORC-1"), completed.get("ORC-5"), completed.get("OBR-25")) == ("SC", "CM", "R")
    assert completed.get("OBR-8") == "20250304101945"
    history = run_swf("orders", ACCESSION, "--data-dir", str(engine.data_dir)).stdout
    assert "status CM" in history
    for step in ("order NW", "MPPS", "commitment", "COMPLETED"):
        assert step in history, f"{step!r} missing from:\n{history}"
    assert "delivered" in run_swf("outbox", "--all", "--data-dir", str(engine.data_dir)).stdout
    ris.close()


def test_ris_down_all_day_then_everything_in_order(start_engine, tmp_path: Path) -> None:
    ris_port, modality_port = free_port(), free_port()
    engine = start_day(start_engine, tmp_path, f"127.0.0.1:{ris_port}", modality_port)
    send_hl7_with_mllp_send(engine, tmp_path)
    uid = generate_uid(prefix="2.25.")
    assert mpps(engine, uid, "IN PROGRESS") == 0x0000
    assert mpps(engine, uid, "COMPLETED") == 0x0000
    time.sleep(1)
    assert "pending" in run_swf("outbox", "--data-dir", str(engine.data_dir)).stdout
    ris = Receiver(ris_port)
    received = ris.wait_for(2, timeout=20)
    assert [m.get("ORC-5") for m in received] == ["IP", "CM"]
    ris.close()


def test_engine_killed_mid_day_loses_and_doubles_nothing(start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    modality_port = free_port()
    engine = start_day(start_engine, tmp_path, ris.address, modality_port)
    send_hl7_with_mllp_send(engine, tmp_path)
    uid = generate_uid(prefix="2.25.")
    assert mpps(engine, uid, "IN PROGRESS") == 0x0000
    ris.wait_for(1)
    # Kill once the engine has recorded the ACK: a crash in the milliseconds between the RIS's ACK and that
    # record resends the message with the same MSH-10 (at-least-once; the RIS sees a duplicate control ID).
    deadline = time.monotonic() + 10
    while "delivered" not in run_swf("outbox", "--all", "--data-dir", str(engine.data_dir)).stdout:
        assert time.monotonic() < deadline, "the IP status was never recorded as delivered"
        time.sleep(0.1)
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait(10)
    engine = start_day(start_engine, tmp_path, ris.address, modality_port, data_dir=engine.data_dir)
    send_hl7_with_mllp_send(engine, tmp_path)  # the HIS resends after the outage: duplicates, same ACKs
    assert mpps(engine, uid, "COMPLETED") == 0x0000
    received = ris.wait_for(2)
    time.sleep(1)
    assert [m.get("ORC-5") for m in ris.messages] == ["IP", "CM"] and len(ris.attempts) == 2
    orders = run_swf("orders", "--data-dir", str(engine.data_dir)).stdout.strip().splitlines()
    assert len(orders) == 2 and "CM" in orders[1]
    assert received[1].get("OBR-18") == ACCESSION
