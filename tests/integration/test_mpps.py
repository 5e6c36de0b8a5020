"""MPPS SCP (RAD-6 / RAD-7) against the real engine process: the order arrives over MLLP, a pynetdicom
modality (there is no MPPS SCU in DCMTK, see lab/README.md) runs N-CREATE / N-SET, DCMTK findscu
checks the worklist, and the swf CLI shows what the engine recorded (SWF.md 6, 9 at 10:03-10:25)."""
from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID
from pynetdicom import AE, association, evt
from pynetdicom.sop_class import InstanceAvailabilityNotification, ModalityPerformedProcedureStep

from engine.config import Config
from engine.dicom.ae import DicomContext
from engine.dicom.directory import AEDirectory
from engine.dicom.services import mpps as mpps_service
from engine.store.database import Store
from tests.conftest import EngineProcess, run_swf

ACCESSION, STUDY = "ACC25030417", "2.25.196472841560937218203340981652004917121"
UID_1, UID_2, UID_3 = "2.25.287611", "2.25.287612", "2.25.287613"
ORDER = (b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS0000457|P|2.3.1||||||8859/1\n"
         b"PID|1||PAT4711^^^GENHOSP^MR||M\xdcLLER^ANNA^MARIA^^DR.||19780214|F\n"
         b"ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||1^once^^20250304100000^^R\n"
         b"OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest^99RAD||||||||||||||ACC25030417|RP-0417-1|SPS-0417-1"
         b"||||CT\n"
         b"ZDS|2.25.196472841560937218203340981652004917121^RIS^Application^DICOM\n")


# -- helpers -------------------------------------------------------------------------------------------
class Modality:
    """A pynetdicom MPPS SCU on one association; keeps every response's command set as received."""

    def __init__(self, port: int, title: str = "CT1_AE"):
        self.ae = AE(ae_title=title)
        self.ae.add_requested_context(ModalityPerformedProcedureStep)
        self.received: list[Dataset] = []
        self.assoc = self.ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE",
                                       evt_handlers=[(evt.EVT_DIMSE_RECV, self._received)])
        assert self.assoc.is_established

    def _received(self, event: Any) -> None:
        self.received.append(event.message.command_set)

    def create(self, dataset: Dataset, uid: str | None) -> tuple[Dataset, Dataset]:
        status, _ = self.assoc.send_n_create(dataset, ModalityPerformedProcedureStep, uid)
        return status, self.received[-1]

    def set(self, modification: Dataset, uid: str) -> tuple[Dataset, Dataset]:
        status, _ = self.assoc.send_n_set(modification, ModalityPerformedProcedureStep, uid)
        return status, self.received[-1]

    def close(self) -> None:
        self.assoc.release()


@pytest.fixture
def modalities():
    opened: list[Modality] = []

    def open_one(port: int, title: str = "CT1_AE") -> Modality:
        opened.append(Modality(port, title))
        return opened[-1]

    yield open_one
    for modality in opened:
        if modality.assoc.is_established:
            modality.close()


def in_progress(accession: str = ACCESSION, rp: str = "RP-0417-1", sps: str = "SPS-0417-1",
                study: str = STUDY) -> Dataset:
    item = Dataset()
    item.StudyInstanceUID = study
    item.AccessionNumber = accession
    item.RequestedProcedureID = rp
    item.ScheduledProcedureStepID = sps
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "MÜLLER^ANNA^MARIA^DR."
    ds.PatientID = "PAT4711"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS-8831"
    ds.PerformedStationAETitle = "CT1_AE"
    ds.PerformedProcedureStepStartDate = "20250304"
    ds.PerformedProcedureStepStartTime = "100312"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.PerformedSeriesSequence = []
    ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = []
    ds.ScheduledStepAttributesSequence = [item]
    return ds


def final(status: str = "COMPLETED", reason: str = "") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20250304"
    ds.PerformedProcedureStepEndTime = "101945"
    series = Dataset()
    series.SeriesInstanceUID = STUDY + ".1"
    series.ProtocolName = "CHEST_C"
    series.ReferencedImageSequence = []
    ds.PerformedSeriesSequence = [series]
    if reason:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = reason, "DCM", "Incorrect worklist entry"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [code]
    return ds


def attribute_identifiers(command_set: Dataset) -> set[Tag]:
    """(0000,1005) as it came over the wire (pynetdicom's SCU drops it from N-CREATE status datasets)."""
    assert "AttributeIdentifierList" in command_set, command_set
    value = command_set.AttributeIdentifierList
    return {Tag(t) for t in (value if isinstance(value, list) or type(value).__name__ == "MultiValue" else [value])}


def replay_order(engine: EngineProcess, tmp_path: Path) -> None:
    sample = tmp_path / "order.hl7"
    sample.write_bytes(ORDER)
    replay = run_swf("replay", str(sample), "--to", engine.address, "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def worklist_matches(engine: EngineProcess, accession: str = ACCESSION) -> int:
    """DCMTK findscu -W for the accession (default worklist: SCHEDULED/ARRIVED/READY steps only)."""
    found = subprocess.run(
        ["findscu", "-W", "-v", "-sr", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
         "-k", f"AccessionNumber={accession}", "-k", "PatientID",
         "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID"],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=30)
    output = found.stdout + found.stderr
    assert found.returncode == 0, output
    assert "Received Final Find Response (Success)" in output, output
    return output.count("(Pending)")


def swf(engine: EngineProcess, *args: str) -> str:
    shown = run_swf(*args, "--data-dir", str(engine.data_dir))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return shown.stdout


# -- the day of SWF.md 9 -------------------------------------------------------------------------------
def test_in_progress_completed_then_late_n_set_and_duplicate(start_engine, tmp_path: Path, modalities) -> None:
    engine = start_engine()
    replay_order(engine, tmp_path)
    assert worklist_matches(engine) == 1
    modality = modalities(engine.dicom_port)

    status, _ = modality.create(in_progress(), UID_1)                       # 10:03 RAD-6
    assert status.Status == 0x0000
    assert worklist_matches(engine) == 0                                    # the item left the worklist
    shown = swf(engine, "orders", ACCESSION)
    assert "status IP" in shown and "STARTED" in shown
    assert f"MPPS IN PROGRESS     {UID_1} on CT1_AE" in shown

    status, _ = modality.set(final(), UID_1)                                # 10:20 RAD-7
    assert status.Status == 0x0000
    shown = swf(engine, "orders", ACCESSION)
    assert "status CM" in shown and "MPPS COMPLETED" in shown and "order IP -> CM" in shown

    status, command = modality.set(final(), UID_1)                          # 10:25 late N-SET
    assert status.Status == 0x0110
    assert status.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    assert status.ErrorID == 0xA710 and command.ErrorID == 0xA710

    status, _ = modality.create(in_progress(), UID_1)                       # duplicate N-CREATE
    assert status.Status == 0x0111

    detail = swf(engine, "mpps", UID_1)
    assert f"MPPS {UID_1}  COMPLETED  scheduled" in detail
    assert "SPS SPS-0417-1" in detail and "COMPLETED" in detail and "series 1" in detail
    versions = detail.split("versions:")[1]
    assert "N-CREATE  IN PROGRESS" in versions and "N-SET     COMPLETED" in versions
    assert versions.count("N-") == 2                                        # the refused ones left no trace
    assert "status CM" in swf(engine, "orders", ACCESSION)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")   # the malformed UID, on purpose
def test_refusals_name_the_attributes(start_engine, modalities, monkeypatch) -> None:
    engine = start_engine()
    modality = modalities(engine.dicom_port)

    missing = in_progress()
    del missing.PerformedProcedureStepID, missing.Modality
    del missing.ScheduledStepAttributesSequence[0].StudyInstanceUID
    status, command = modality.create(missing, UID_1)
    assert status.Status == 0x0120
    assert attribute_identifiers(command) == {Tag("PerformedProcedureStepID"), Tag("Modality"),
                                              Tag("StudyInstanceUID")}

    empty = in_progress()
    empty.PerformedStationAETitle = None
    status, command = modality.create(empty, UID_1)
    assert status.Status == 0x0121 and attribute_identifiers(command) == {Tag("PerformedStationAETitle")}

    completed_at_create = in_progress()
    completed_at_create.PerformedProcedureStepStatus = "COMPLETED"
    status, _ = modality.create(completed_at_create, UID_1)
    assert status.Status == 0x0106

    status, _ = modality.set(final(), UID_1)                                # nothing was created above
    assert status.Status == 0x0112

    status, _ = modality.create(in_progress(), "1.2.3.abc")
    assert status.Status == 0x0117

    assert modality.create(in_progress(accession="", rp="", sps=""), UID_1)[0].Status == 0x0000
    not_allowed = final()
    not_allowed.PatientID = "PAT9999"
    status, command = modality.set(not_allowed, UID_1)
    assert status.Status == 0x0105 and attribute_identifiers(command) == {Tag("PatientID")}
    wrong_status = final()
    wrong_status.PerformedProcedureStepStatus = "FINISHED"
    assert modality.set(wrong_status, UID_1)[0].Status == 0x0106
    no_series = final()
    no_series.PerformedSeriesSequence = []
    status, command = modality.set(no_series, UID_1)
    assert status.Status == 0x0121 and attribute_identifiers(command) == {Tag("PerformedSeriesSequence")}

    # an attribute list pydicom cannot decode: (0054,0081) US with 3 bytes, appended after the encoding
    real_encode = association.encode
    broken = struct.pack("<HHI", 0x0054, 0x0081, 3) + b"\x01\x02\x03"
    monkeypatch.setattr(association, "encode", lambda ds, *args: real_encode(ds, *args) + broken)
    status, _ = modality.create(in_progress(), UID_2)
    assert status.Status == 0x0110 and "cannot be decoded" in status.ErrorComment
    monkeypatch.setattr(association, "encode", real_encode)

    listed = swf(engine, "mpps")
    assert UID_1 in listed and UID_2 not in listed                          # only the accepted one exists
    assert "IN PROGRESS   UNSCHEDULED" in listed                            # every refused N-SET left it as it was


def test_unscheduled_is_listed_and_wrong_entry_is_offered_again(start_engine, tmp_path: Path, modalities) -> None:
    engine = start_engine()
    replay_order(engine, tmp_path)
    modality = modalities(engine.dicom_port)

    unscheduled = in_progress(accession="", rp="", sps="", study="2.25.99887766")
    assert modality.create(unscheduled, UID_1)[0].Status == 0x0000
    listed = swf(engine, "mpps", "--unscheduled")
    assert UID_1 in listed and "UNSCHEDULED" in listed and "CT1_AE" in listed
    assert "linked steps: none (unscheduled)" in swf(engine, "mpps", UID_1)
    assert worklist_matches(engine) == 1                                    # the order is untouched

    assert modality.create(in_progress(), UID_2)[0].Status == 0x0000
    assert worklist_matches(engine) == 0
    listed = swf(engine, "mpps")
    assert f"IN PROGRESS   scheduled    CT1_AE           PPS-8831         {ACCESSION}" in listed
    assert UID_2 in listed and "UNSCHEDULED" in listed

    # the technologist picked the wrong worklist entry: DISCONTINUED with 110514 puts it back
    assert modality.set(final("DISCONTINUED", reason="110514"), UID_2)[0].Status == 0x0000
    assert worklist_matches(engine) == 1
    shown = swf(engine, "orders", ACCESSION)
    assert "status SC" in shown and "SCHEDULED" in shown and "STARTED -> SCHEDULED" in shown
    assert "DISCONTINUED  scheduled" in swf(engine, "mpps")


def test_omitted_affected_sop_instance_uid_is_assigned_and_returned(start_engine, tmp_path: Path,
                                                                    modalities) -> None:
    engine = start_engine()
    replay_order(engine, tmp_path)
    modality = modalities(engine.dicom_port)
    status, command = modality.create(in_progress(), None)
    assert status.Status == 0x0000
    assigned = str(command.AffectedSOPInstanceUID)
    assert UID(assigned).is_valid and assigned.startswith("2.25.")
    assert modality.set(final(), assigned)[0].Status == 0x0000              # the modality goes on with it
    assert f"MPPS {assigned}  COMPLETED  scheduled" in swf(engine, "mpps", assigned)
    assert "status CM" in swf(engine, "orders", ACCESSION)


# -- the handler on its own pynetdicom server: access control and an unavailable database ----------------
def serve_mpps(tmp_path: Path, directory: AEDirectory, store: Store) -> tuple[Any, int]:
    service = mpps_service.create(DicomContext(Config(data_dir=str(tmp_path / "var")), store, directory))
    ae = AE(ae_title="SWF_ENGINE")
    for context in service.contexts():
        ae.add_supported_context(context.abstract_syntax, context.transfer_syntax)
    ae.add_supported_context(InstanceAvailabilityNotification)     # another N-CREATE SOP class, not ours
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=service.handlers())
    return server, server.server_address[1]


def test_calling_ae_without_mpps_permission_is_refused(tmp_path: Path, modalities) -> None:
    directory = AEDirectory.from_config({"CT1_AE": {"permissions": ["echo", "worklist"]}, "CT2_AE": {}}, False)
    store = Store(f"sqlite:///{tmp_path / 'swf.sqlite'}")
    server, port = serve_mpps(tmp_path, directory, store)
    try:
        refused = modalities(port, "CT1_AE")
        assert refused.create(in_progress(), UID_1)[0].Status == 0x0124
        assert refused.set(final(), UID_1)[0].Status == 0x0124
        allowed = modalities(port, "CT2_AE")                                # all permissions by default
        assert allowed.create(in_progress(), UID_1)[0].Status == 0x0000
        assert refused.set(final(), UID_1)[0].Status == 0x0124
        assert store.read(lambda txn: txn.one("SELECT calling_ae_title, status FROM performed_steps")) == {
            "calling_ae_title": "CT2_AE", "status": "IN PROGRESS"}
        # the N-CREATE handler serves the MPPS SOP class only
        other = AE(ae_title="CT2_AE")
        other.add_requested_context(InstanceAvailabilityNotification)
        notifier = other.associate("127.0.0.1", port, ae_title="SWF_ENGINE")
        assert notifier.is_established
        status, _ = notifier.send_n_create(in_progress(), InstanceAvailabilityNotification, UID_2)
        notifier.release()
        assert status.Status == 0x0118
        assert store.read(lambda txn: txn.one("SELECT COUNT(*) AS n FROM performed_steps"))["n"] == 1
    finally:
        server.shutdown()
        store.close()


def test_database_unavailable_is_a_resource_limitation(tmp_path: Path, modalities) -> None:
    store = Store(f"sqlite:///{tmp_path / 'swf.sqlite'}")
    server, port = serve_mpps(tmp_path, AEDirectory(allow_any=True), store)
    try:
        modality = modalities(port)
        assert modality.create(in_progress(), UID_1)[0].Status == 0x0000
        store.close()                                                        # the database goes away
        status, _ = modality.create(in_progress(), UID_3)
        assert status.Status == 0x0213 and "retry" in status.ErrorComment
        assert modality.set(final(), UID_1)[0].Status == 0x0213
    finally:
        server.shutdown()
        store.close()
