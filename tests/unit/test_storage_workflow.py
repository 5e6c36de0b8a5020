"""Storage and Q/R without sockets: the raw header reader, the file store, indexing and linking
(RAD-8/9), and availability matching at every level (RAD-11), on a real SQLite store."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode

from engine.dicom.wire import header as header_module
from engine.dicom.wire.header import HeaderError, read_header
from engine.store.files import FileStore, encode_file_meta, ensure_durable, path_component, read_part10
from engine.workflow import availability
from engine.workflow import storage as workflow
from engine.workflow.availability import PATIENT_ROOT, STUDY_ROOT, QueryError, QueryRequest
from tests.conftest import Pipeline
from tests.unit.test_workflow import orm

CT, GSPS = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.11.1"
IMPLICIT, EXPLICIT, BIG, DEFLATED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                     "1.2.840.10008.1.2.1.99")


def instance_dataset(sop: str, study: str = "1.2.3.4.5", series: str = "1.2.3.4.5.1", number: int = 1,
                     sop_class: str = CT, modality: str = "CT", **extra: Any) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyDate = "20250304"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.Modality = modality
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.PatientName = "MÜLLER^ANNA"
    ds.PatientID = "PAT4711"
    ds.PatientBirthDate = "19780214"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "S1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def encoded(ds: Dataset, transfer_syntax: str = EXPLICIT) -> bytes:
    return encode(ds, transfer_syntax == IMPLICIT, transfer_syntax != BIG, transfer_syntax == DEFLATED)


def request_item(**values: str) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


# -- header reader ----------------------------------------------------------------------------------
@pytest.mark.parametrize("transfer_syntax", [IMPLICIT, EXPLICIT, BIG, DEFLATED])
def test_header_reader_reads_every_encoding_like_pydicom(transfer_syntax: str) -> None:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "P1", "99RAD"
    item = request_item(RequestedProcedureID="RP-1", ScheduledProcedureStepID="SPS-1", AccessionNumber="ACC1")
    item.ScheduledProtocolCodeSequence = Sequence([code])    # nested sequence inside the item
    second = request_item(RequestedProcedureID="RP-2")
    ds = instance_dataset("1.2.9.1", RequestAttributesSequence=Sequence([item, second]), Rows=512, Columns=256,
                          PixelData=b"\x00\x01" * 16, BitsAllocated=16)
    ds["PixelData"].VR = "OW"
    data = encoded(ds, transfer_syntax)
    fast = read_header(data, transfer_syntax)
    plain = data if transfer_syntax != DEFLATED else __import__("zlib").decompress(data, -15)
    slow = header_module._with_pydicom(plain, transfer_syntax == IMPLICIT, transfer_syntax == BIG)
    assert fast == slow
    assert fast["PatientName"] == "MÜLLER^ANNA" and fast["Rows"] == 512 and fast["Columns"] == 256
    assert fast["RequestAttributesSequence"] == [
        {"RequestedProcedureID": "RP-1", "ScheduledProcedureStepID": "SPS-1", "AccessionNumber": "ACC1"},
        {"RequestedProcedureID": "RP-2"}]


def test_header_reader_handles_undefined_lengths_latin1_and_falls_back(monkeypatch) -> None:
    ds = instance_dataset("1.2.9.2", sop_class=GSPS, modality="PR", SpecificCharacterSet="ISO_IR 100",
                          ReferencedSeriesSequence=Sequence([request_item(SeriesInstanceUID="1.2.3.4.5.1"),
                                                             request_item(SeriesInstanceUID="1.2.3.4.5.2")]))
    ds.PatientName = "MÜLLER^ANNA"
    ds["ReferencedSeriesSequence"].is_undefined_length = True
    for item in ds.ReferencedSeriesSequence:
        item.is_undefined_length_sequence_item = True
    data = encode(ds, False, True)
    assert b"\xfe\xff\xdd\xe0" in data   # really written with a sequence delimitation item
    assert "MÜLLER".encode("latin-1") in data
    header = read_header(data, EXPLICIT)
    assert header["PatientName"] == "MÜLLER^ANNA"
    assert [i["SeriesInstanceUID"] for i in header["ReferencedSeriesSequence"]] == ["1.2.3.4.5.1", "1.2.3.4.5.2"]
    calls = []
    monkeypatch.setattr(header_module, "_fast", lambda *a: (calls.append(1), (_ for _ in ()).throw(
        header_module._Surprise("test")))[1])
    assert read_header(data, EXPLICIT) == header and calls == [1]   # the pydicom path gives the same
    monkeypatch.undo()
    for garbage in (b"\x08\x00\x18\x00UI\xff\x7fgarbage", b"\xff" * 7, encoded(ds)[:-3]):
        with pytest.raises(HeaderError):
            read_header(garbage, EXPLICIT)


# -- file store -------------------------------------------------------------------------------------
def test_file_store_writes_part10_atomically_and_refuses_odd_uids(tmp_path: Path) -> None:
    files = FileStore(tmp_path / "dicom")
    ds = instance_dataset("1.2.9.3")
    data = encoded(ds)
    relative = files.relative_path("1.2.3.4.5", "1.2.3.4.5.1", "1.2.9.3")
    assert relative == "1.2.3.4.5/1.2.3.4.5.1/1.2.9.3.dcm"
    pending = files.write_pending(relative, encode_file_meta(CT, "1.2.9.3", EXPLICIT, "CT1_AE"), data)
    final = tmp_path / "dicom" / relative
    assert not final.exists() and pending.temp.exists() and pending.temp.parent == final.parent
    pending.place()
    assert final.exists() and not pending.temp.exists()
    read = dcmread(final)
    assert read.file_meta.TransferSyntaxUID == EXPLICIT and read.file_meta.SourceApplicationEntityTitle == "CT1_AE"
    assert read.file_meta.MediaStorageSOPInstanceUID == "1.2.9.3" and read == ds
    assert read_part10(final) == (EXPLICIT, data)
    ensure_durable(final, tmp_path / "dicom")
    files.ensure_durable(relative)
    again = files.write_pending(relative, encode_file_meta(CT, "1.2.9.3", EXPLICIT), b"\x00" * 8)
    again.discard()
    assert not again.temp.exists() and read_part10(final)[1] == data
    assert path_component("../../etc") != "../../etc" and "/" not in path_component("1.2/3")
    assert path_component("1.2.3") == "1.2.3" and path_component("1..2").startswith("x")


# -- indexing and linking ---------------------------------------------------------------------------
def received(ds: Dataset, transfer_syntax: str = EXPLICIT, path: str = "") -> workflow.ReceivedInstance:
    data = encoded(ds, transfer_syntax)
    header = read_header(data, transfer_syntax)
    return workflow.ReceivedInstance.from_header(header, transfer_syntax_uid=transfer_syntax,
                                                 path=path or f"x/{ds.SOPInstanceUID}.dcm", size_bytes=len(data),
                                                 received_from="CT1_AE")


def index(pipeline: Pipeline, instance: workflow.ReceivedInstance, policy: str = "ignore") -> tuple[Any, list[str]]:
    placed: list[str] = []
    result = pipeline.store.write(lambda txn: workflow.index_instance(txn, instance, policy,
                                                                      lambda: placed.append(instance.path)))
    return result, placed


def test_instances_link_by_study_uid_request_attributes_or_accession(pipeline: Pipeline) -> None:
    assert pipeline.send(orm("O1", accession="ACC1", study="1.2.3.4.5", sps="SPS-1")).ack_code == "AA"
    assert pipeline.send(orm("O2", placer="PLC-2", accession="ACC2", study="1.2.3.9.9", sps="SPS-2")).ack_code == "AA"
    procedures = {r["accession_number"]: r["id"] for r in pipeline.read("SELECT * FROM requested_procedures")}
    by_study, _ = index(pipeline, received(instance_dataset("1.2.9.10", AccessionNumber="ZZZ")))
    assert by_study.requested_procedure_ref == procedures["ACC1"] and by_study.outcome == "stored"
    item = request_item(RequestedProcedureID="RP-ACC2", ScheduledProcedureStepID="SPS-2")
    by_request, _ = index(pipeline, received(instance_dataset("1.2.9.11", study="7.7.7", series="7.7.7.1",
                                                                AccessionNumber="ACC2",
                                                                RequestAttributesSequence=Sequence([item]))))
    assert by_request.requested_procedure_ref == procedures["ACC2"]
    wrong_sps = request_item(RequestedProcedureID="RP-ACC2", ScheduledProcedureStepID="NOPE", AccessionNumber="ACC9")
    unlinked, _ = index(pipeline, received(instance_dataset("1.2.9.12", study="7.7.8", series="7.7.8.1",
                                                             AccessionNumber="ACC9",
                                                             RequestAttributesSequence=Sequence([wrong_sps]))))
    assert unlinked.requested_procedure_ref is None
    by_accession, _ = index(pipeline, received(instance_dataset("1.2.9.13", study="7.7.9", series="7.7.9.1",
                                                                 AccessionNumber="ACC2")))
    assert by_accession.requested_procedure_ref == procedures["ACC2"]
    events = pipeline.read("SELECT kind, subject, order_ref FROM events WHERE kind = 'series.stored' ORDER BY id")
    assert [(e["subject"], e["order_ref"] is not None) for e in events] == [
        ("ACC1", True), ("ACC2", True), ("ACC9", False), ("ACC2", True)]
    late = workflow.ReceivedInstance.from_header({"StudyInstanceUID": "5.5.5", "SeriesInstanceUID": "5.5.5.1",
                                                  "SOPInstanceUID": "1.2.9.14", "SOPClassUID": CT},
                                                 transfer_syntax_uid=EXPLICIT, path="p", size_bytes=1)
    index(pipeline, late)
    moved = pipeline.store.write(lambda txn: workflow.link_waiting_instances(txn, procedures["ACC1"], "5.5.5"))
    assert moved == 1


def test_duplicates_follow_the_policy(pipeline: Pipeline) -> None:
    first, placed = index(pipeline, received(instance_dataset("1.2.9.20", SeriesDescription="first")))
    assert first.outcome == "stored" and placed
    again, placed = index(pipeline, received(instance_dataset("1.2.9.20", SeriesDescription="second")))
    assert (again.outcome, again.instance_ref, placed) == ("ignored", first.instance_ref, [])
    [row] = pipeline.read("SELECT * FROM instances")
    assert '"first"' in row["attributes"]
    replaced, placed = index(pipeline, received(instance_dataset("1.2.9.20", SeriesDescription="second",
                                                                 Modality="MR")), "overwrite")
    assert (replaced.outcome, replaced.instance_ref) == ("replaced", first.instance_ref) and placed
    [row] = pipeline.read("SELECT * FROM instances")
    assert '"second"' in row["attributes"] and row["modality"] == "MR"
    assert len(pipeline.read("SELECT * FROM events WHERE kind = 'series.stored'")) == 1
    with pytest.raises(ValueError):
        index(pipeline, received(instance_dataset("1.2.9.21")), "keep-both")


# -- availability (Q/R) -----------------------------------------------------------------------------
@pytest.fixture
def archive(pipeline: Pipeline) -> Pipeline:
    """Two studies of one patient: CT (2 series, 3 images) + a PR referencing the CT series; an MR study
    of another patient; a presentation state of a third study referencing the CT series."""
    for sop, series, number in (("1.1.1", "1.1.10", 1), ("1.1.2", "1.1.10", 2), ("1.1.3", "1.1.11", 1)):
        index(pipeline, received(instance_dataset(sop, study="1.1", series=series, number=number)))
    index(pipeline, received(instance_dataset("1.1.4", study="1.1", series="1.1.12", sop_class=GSPS, modality="PR",
                                              ReferencedSeriesSequence=Sequence([request_item(
                                                  SeriesInstanceUID="1.1.10")]))))
    index(pipeline, received(instance_dataset("2.1.1", study="2.1", series="2.1.10", modality="MR", PatientID="P2",
                                              PatientName="SMITH^JOHN", StudyDate="20250310", StudyTime="0830",
                                              AccessionNumber="ACC2", StudyID="S2")))
    index(pipeline, received(instance_dataset("3.1.1", study="3.1", series="3.1.10", sop_class=GSPS, modality="PR",
                                              AccessionNumber="ACC3", StudyDate="20250311",
                                              ReferencedSeriesSequence=Sequence([request_item(
                                                  SeriesInstanceUID="1.1.11")]))))
    return pipeline


def find(p: Pipeline, level: str, model: str = STUDY_ROOT, **keys: str) -> list[dict[str, Any]]:
    return [m.attributes for m in p.store.read(lambda txn: availability.find(txn, QueryRequest(level, keys, model)))]


def test_study_level_counts_and_matching(archive: Pipeline) -> None:
    studies = {m["StudyInstanceUID"]: m for m in find(archive, "STUDY")}
    assert set(studies) == {"1.1", "2.1", "3.1"}
    ct = studies["1.1"]
    # 4 own instances + the PR of study 3.1 that references series 1.1.11 (RAD-9)
    assert (ct["NumberOfStudyRelatedInstances"], ct["NumberOfStudyRelatedSeries"]) == (5, 4)
    assert ct["ModalitiesInStudy"] == "CT\\PR" and ct["PatientName"] == "MÜLLER^ANNA"
    assert "InstanceNumber" not in ct and "SeriesInstanceUID" not in ct
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", PatientName="müller*")] == ["1.1", "3.1"]
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", StudyDate="20250305-")] == ["2.1", "3.1"]
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", StudyTime="0800-0900")] == ["2.1"]
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", ModalitiesInStudy="MR")] == ["2.1"]
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", AccessionNumber="ACC?")] == ["1.1", "2.1", "3.1"]
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", AccessionNumber="*3")] == ["3.1"]
    assert find(archive, "STUDY", AccessionNumber="ACC_") == []      # '_' is no wildcard in DICOM
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", StudyInstanceUID="1.1\\2.1")] == ["1.1", "2.1"]
    assert find(archive, "STUDY", StudyID="S2", PatientID="PAT4711") == []
    assert availability.unmatched_keys(QueryRequest("STUDY", {"StudyDescription": "x", "AccessionNumber": "A",
                                                              "Modality": "CT", "PatientName": ""})) == [
        "StudyDescription", "Modality"]
    assert availability.unmatched_keys(QueryRequest("IMAGE", {"StudyInstanceUID": "1", "SeriesInstanceUID": "2",
                                                              "SOPInstanceUID": "3", "InstanceNumber": "*"})) == []
    with pytest.raises(QueryError):
        find(archive, "STUDY", StudyDate="2025-03-04")
    with pytest.raises(QueryError):
        find(archive, "PATIENT")          # no PATIENT level in Study Root


def test_series_and_image_levels_are_hierarchical(archive: Pipeline) -> None:
    series = {m["SeriesInstanceUID"]: m for m in find(archive, "SERIES", StudyInstanceUID="1.1")}
    assert {k: v["NumberOfSeriesRelatedInstances"] for k, v in series.items()} == {
        "1.1.10": 2, "1.1.11": 1, "1.1.12": 1, "3.1.10": 1}
    assert series["1.1.10"]["Modality"] == "CT" and "SOPInstanceUID" not in series["1.1.10"]
    assert [m["SeriesInstanceUID"] for m in find(archive, "SERIES", StudyInstanceUID="1.1", Modality="PR")] == [
        "1.1.12", "3.1.10"]
    images = find(archive, "IMAGE", StudyInstanceUID="1.1", SeriesInstanceUID="1.1.10")
    assert [(m["SOPInstanceUID"], m["InstanceNumber"]) for m in images] == [("1.1.1", "1"), ("1.1.2", "2")]
    assert images[0]["AvailableTransferSyntaxUID"] == EXPLICIT and images[0]["SOPClassUID"] == CT
    assert [m["SOPInstanceUID"] for m in find(archive, "IMAGE", StudyInstanceUID="1.1", SeriesInstanceUID="1.1.10",
                                              InstanceNumber="2")] == ["1.1.2"]
    with pytest.raises(QueryError):
        find(archive, "SERIES")                                   # no Study Instance UID
    with pytest.raises(QueryError):
        find(archive, "IMAGE", StudyInstanceUID="1.1")            # no Series Instance UID


def test_patient_root_and_retrieve(archive: Pipeline) -> None:
    patients = {m["PatientID"]: m for m in find(archive, "PATIENT", PATIENT_ROOT)}
    assert patients["PAT4711"]["NumberOfPatientRelatedStudies"] == 2
    assert patients["PAT4711"]["NumberOfPatientRelatedInstances"] == 5
    assert [m["StudyInstanceUID"] for m in find(archive, "STUDY", PATIENT_ROOT, PatientID="P2")] == ["2.1"]
    with pytest.raises(QueryError):
        find(archive, "STUDY", PATIENT_ROOT)                       # no Patient ID
    study = QueryRequest("STUDY", {"StudyInstanceUID": "1.1"})
    items = archive.store.read(lambda txn: availability.retrieve(txn, study))
    assert sorted(i.sop_instance_uid for i in items) == ["1.1.1", "1.1.2", "1.1.3", "1.1.4", "3.1.1"]
    items = archive.store.read(lambda txn: availability.retrieve(txn, QueryRequest(
        "IMAGE", {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.10", "SOPInstanceUID": "1.1.2"})))
    assert [(i.sop_instance_uid, i.path) for i in items] == [("1.1.2", "x/1.1.2.dcm")]
    with pytest.raises(QueryError):
        archive.store.read(lambda txn: availability.retrieve(txn, QueryRequest("STUDY", {})))


def test_hidden_instances_are_never_offered(archive: Pipeline) -> None:
    hidden = archive.store.write(lambda txn: workflow.hide_instances(txn, series_instance_uids=["1.1.10"],
                                                                     sop_instance_uids=["1.1.99"]))
    assert hidden == 2
    ct = {m["StudyInstanceUID"]: m for m in find(archive, "STUDY")}["1.1"]
    assert ct["NumberOfStudyRelatedInstances"] == 3
    assert "1.1.10" not in {m["SeriesInstanceUID"] for m in find(archive, "SERIES", StudyInstanceUID="1.1")}
    late, _ = index(archive, received(instance_dataset("1.1.99", study="1.1", series="1.1.11", number=2)))
    assert late.hidden
    assert find(archive, "IMAGE", StudyInstanceUID="1.1", SeriesInstanceUID="1.1.11", SOPInstanceUID="1.1.99") == []
    assert not any(i.sop_instance_uid in ("1.1.1", "1.1.99") for i in archive.store.read(
        lambda txn: availability.retrieve(txn, QueryRequest("STUDY", {"StudyInstanceUID": "1.1"}))))


def test_storage_dir_layout_default(tmp_path: Path) -> None:
    from engine.config import Config

    assert Config(data_dir=str(tmp_path)).storage_dir == tmp_path / "dicom"
    assert os.path.basename(FileStore(tmp_path).relative_path("1.2", "1.2.3", "1.2.3.4")) == "1.2.3.4.dcm"


# -- the C-STORE handler's statuses (SWF.md RAD-8) ---------------------------------------------------
class _Fake:
    def __init__(self, **values: Any):
        self.__dict__.update(values)


def store_event(ds: Dataset, calling: str = "CT1_AE", transfer_syntax: str = EXPLICIT, data: bytes | None = None,
                sop_instance: str | None = None) -> Any:
    from io import BytesIO

    request = _Fake(DataSet=BytesIO(encoded(ds, transfer_syntax) if data is None else data),
                    AffectedSOPInstanceUID=sop_instance or ds.SOPInstanceUID, AffectedSOPClassUID=ds.SOPClassUID)
    return _Fake(assoc=_Fake(requestor=_Fake(ae_title=calling, address="127.0.0.1", port=40104)), request=request,
                 context=_Fake(transfer_syntax=transfer_syntax))


@pytest.fixture
def storage_service(pipeline: Pipeline, tmp_path: Path):
    from engine.dicom.ae import DicomContext
    from engine.dicom.directory import AEDirectory
    from engine.dicom.services.storage import StorageService

    pipeline.config.dicom.storage_dir = str(tmp_path / "dicom")
    directory = AEDirectory.from_config({"CT1_AE": {"permissions": ["store"]}, "VIEWER": {"permissions": ["query"]}},
                                        allow_any=False)
    service = StorageService(DicomContext(pipeline.config, pipeline.store, directory))
    service.start()
    return service


def _status(result: Any) -> int:
    return result if isinstance(result, int) else result.Status


def test_store_handler_statuses(storage_service, pipeline: Pipeline, tmp_path: Path, monkeypatch) -> None:
    import errno

    ds = instance_dataset("1.2.9.30")
    assert storage_service.on_store(store_event(ds)) == 0x0000
    stored = tmp_path / "dicom" / "1.2.3.4.5" / "1.2.3.4.5.1" / "1.2.9.30.dcm"
    assert dcmread(stored) == ds
    assert pipeline.read("SELECT path, received_from FROM instances") == [
        {"path": "1.2.3.4.5/1.2.3.4.5.1/1.2.9.30.dcm", "received_from": "CT1_AE"}]
    assert storage_service.on_store(store_event(ds)) == 0x0000                     # duplicate: ignored
    assert _status(storage_service.on_store(store_event(ds, calling="VIEWER"))) == 0x0124
    assert _status(storage_service.on_store(store_event(ds, data=b"\xff" * 9))) == 0xC000
    assert _status(storage_service.on_store(store_event(ds, sop_instance="1.2.9.99"))) == 0xA900
    no_series = instance_dataset("1.2.9.31")
    del no_series.SeriesInstanceUID
    assert _status(storage_service.on_store(store_event(no_series))) == 0xA900

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_service.files, "write_pending", disk_full)
    refused = storage_service.on_store(store_event(instance_dataset("1.2.9.32")))
    assert _status(refused) == 0xA700 and "disk full" in refused.ErrorComment
    monkeypatch.undo()

    def broken(txn: Any, *args: Any) -> Any:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(workflow, "index_instance", broken)
    assert _status(storage_service.on_store(store_event(instance_dataset("1.2.9.33")))) == 0xA700
    # nothing acknowledged that is not indexed: no file, no leftover temporary file
    assert not list((tmp_path / "dicom").rglob("1.2.9.33*")) and not list((tmp_path / "dicom").rglob("*.tmp"))
    assert [r["sop_instance_uid"] for r in pipeline.read("SELECT sop_instance_uid FROM instances")] == ["1.2.9.30"]


def test_store_handler_restores_a_lost_file_and_overwrites_in_order(storage_service, pipeline: Pipeline,
                                                                     tmp_path: Path) -> None:
    ds = instance_dataset("1.2.9.40")
    assert storage_service.on_store(store_event(ds)) == 0x0000
    stored = tmp_path / "dicom" / "1.2.3.4.5" / "1.2.3.4.5.1" / "1.2.9.40.dcm"
    stored.unlink()                                            # lost after its row committed
    changed = instance_dataset("1.2.9.40", SeriesDescription="second")
    assert storage_service.on_store(store_event(changed)) == 0x0000
    assert dcmread(stored) == changed                          # restored from the next copy
    assert '"second"' in pipeline.read("SELECT attributes FROM instances")[0]["attributes"]
    assert storage_service.on_store(store_event(ds)) == 0x0000
    assert dcmread(stored) == changed                          # intact: the duplicate is ignored
    storage_service.policy = "overwrite"
    assert storage_service.on_store(store_event(ds)) == 0x0000
    assert dcmread(stored) == ds
    [row] = pipeline.read("SELECT size_bytes, attributes FROM instances")
    assert row["size_bytes"] == stored.stat().st_size and "second" not in row["attributes"]
    assert not list((tmp_path / "dicom").rglob("*.tmp"))


def test_images_stored_before_their_order_are_linked_when_it_arrives(pipeline: Pipeline) -> None:
    early = workflow.ReceivedInstance.from_header({"StudyInstanceUID": "6.6.6", "SeriesInstanceUID": "6.6.6.1",
                                                   "SOPInstanceUID": "1.2.9.20", "SOPClassUID": CT},
                                                  transfer_syntax_uid=EXPLICIT, path="p", size_bytes=1)
    stored, _ = index(pipeline, early)
    assert stored.requested_procedure_ref is None
    assert pipeline.send(orm("O6", accession="ACC6", study="6.6.6", sps="SPS-6")).ack_code == "AA"
    [row] = pipeline.read("SELECT requested_procedure_ref FROM instances WHERE sop_instance_uid = '1.2.9.20'")
    assert row["requested_procedure_ref"] is not None
    assert "images linked" in [r["kind"] for r in pipeline.read("SELECT kind FROM order_history")]


def test_the_storage_workflow_returns_one_outcome_per_instance_and_the_scp_maps_it(pipeline: Pipeline,
                                                                                   tmp_path: Path) -> None:
    import errno

    from engine.dicom.services.storage import StorageService
    from engine.store.incoming import IncomingDataSet

    files = FileStore(tmp_path / "dicom")
    storage = workflow.InstanceStorage(pipeline.store, files, commit_timeout=10)

    def store(ds: Dataset, policy: str = "ignore") -> workflow.StoreOutcome:
        data = IncomingDataSet(1 << 24, tmp_path)
        data.write(encoded(ds))
        try:
            with data.view() as view:
                header = read_header(view, EXPLICIT)
            return storage.store_received(header, EXPLICIT, "CT1_AE", data, policy)
        finally:
            data.close()

    ds = instance_dataset("1.2.9.50")
    stored = store(ds)
    assert (stored.result.outcome, stored.refusal, stored.reason) == ("stored", "", "")
    assert stored.result.path == "1.2.3.4.5/1.2.3.4.5.1/1.2.9.50.dcm"
    assert dcmread(files.absolute(stored.result.path)) == ds
    assert store(ds).result.outcome == "ignored"
    assert store(ds, "overwrite").result.outcome == "replaced"
    assert StorageService._status(stored) == 0x0000

    def failing(number: int) -> Any:
        def write_pending(*args: Any) -> Any:
            raise OSError(number, os.strerror(number))
        return write_pending

    for policy in ("ignore", "overwrite"):
        files.write_pending = failing(errno.ENOSPC)  # type: ignore[method-assign]
        full = store(instance_dataset("1.2.9.51"), policy)
        assert (full.result, full.refusal, full.reason) == (None, workflow.DISK_FULL, "out of resources: disk full")
        files.write_pending = failing(errno.EIO)  # type: ignore[method-assign]
        broken = store(instance_dataset("1.2.9.52"), policy)
        assert (broken.refusal, broken.reason) == (workflow.NOT_WRITTEN, f"cannot write: {os.strerror(errno.EIO)}")
        del files.write_pending
    refused = StorageService._status(full)
    assert (refused.Status, refused.ErrorComment) == (0xA700, "out of resources: disk full")
    pipeline.store.close()                                            # the index cannot be written
    unindexed = store(instance_dataset("1.2.9.53"))
    assert unindexed.refusal == workflow.NOT_INDEXED and unindexed.reason.startswith("cannot index the instance")
    assert StorageService._status(unindexed).Status == 0xA700
    assert not list((tmp_path / "dicom").rglob("1.2.9.5[123]*")) and not list((tmp_path / "dicom").rglob("*.tmp"))
