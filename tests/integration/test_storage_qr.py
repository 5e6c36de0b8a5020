"""Storage SCP and Query/Retrieve SCP against the real engine process with DCMTK peers (RAD-8, RAD-9,
RAD-11): storescu sends CT, a GSPS and a JPEG baseline instance (pixel data left encapsulated); the
files and the index are checked; findscu queries each level; movescu moves the study to a pynetdicom
Storage SCP declared in the config; getscu fetches it; an order replayed over MLLP first gets linked."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES

from engine.store.files import read_part10
from tests.conftest import EngineProcess, free_port, run_swf

STUDY = "2.25.310472841560937218203340981652004917121"
CT_SERIES, PR_SERIES, JPEG_SERIES = STUDY + ".1", STUDY + ".2", STUDY + ".3"
CT_1, CT_2, PR_1, JPEG_1 = STUDY + ".1.1", STUDY + ".1.2", STUDY + ".2.1", STUDY + ".3.1"
CT, GSPS, SC = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.7"
ORDER = (b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS0000911|P|2.3.1||||||8859/1\n"
         b"PID|1||PAT0911^^^GENHOSP^MR||DOE^JANE||19800101|F\n"
         b"ORC|NW|PLC-911^HIS|FIL-911^RIS||SC||1^once^^20250304100000^^R\n"
         b"OBR|1|PLC-911^HIS|FIL-911^RIS|CTCHEST^CT chest^99RAD||||||||||||||ACC0911|RP-0911|SPS-0911||||CT\n"
         b"ZDS|" + STUDY.encode() + b"^RIS^Application^DICOM\n")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


# -- data ---------------------------------------------------------------------------------------------
def _base(sop_class: str, sop: str, series: str, modality: str, number: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.StudyDate, ds.StudyTime = "20250304", "101500"
    ds.AccessionNumber = "ACC0911"
    ds.Modality = modality
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "DOE^JANE", "PAT0911", "19800101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", {"CT": 1, "PR": 2, "OT": 3}[modality], number
    return ds


def _image(ds: Dataset, size: int = 64) -> Dataset:
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes((i * 7) % 251 for i in range(size * size * 2))
    return ds


def _save(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def make_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ct1": _save(_image(_base(CT, CT_1, CT_SERIES, "CT", 1)), folder / "ct1.dcm"),
             "ct2": _save(_image(_base(CT, CT_2, CT_SERIES, "CT", 2)), folder / "ct2.dcm")}
    pr = _base(GSPS, PR_1, PR_SERIES, "PR", 1)
    pr.ContentLabel, pr.ContentDescription, pr.ContentCreatorName = "ANNOTATION", "window", "HOUSE^GREGORY"
    pr.PresentationCreationDate, pr.PresentationCreationTime = "20250304", "103000"
    referenced = Dataset()
    referenced.SeriesInstanceUID = CT_SERIES
    image = Dataset()
    image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = CT, CT_1
    referenced.ReferencedImageSequence = Sequence([image])
    pr.ReferencedSeriesSequence = Sequence([referenced])
    files["pr"] = _save(pr, folder / "pr.dcm")
    jpeg = _base(SC, JPEG_1, JPEG_SERIES, "OT", 1)
    jpeg.ConversionType = "WSD"
    jpeg.AccessionNumber = ""          # so only its Study Instance UID can link it to the order
    jpeg.Rows = jpeg.Columns = 8
    jpeg.SamplesPerPixel, jpeg.PhotometricInterpretation = 1, "MONOCHROME2"
    jpeg.BitsAllocated, jpeg.BitsStored, jpeg.HighBit, jpeg.PixelRepresentation = 8, 8, 7, 0
    # not a decodable JPEG: the engine must keep the encapsulated bytes as they came, never look inside
    jpeg.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(200)) + b"\xff\xd9"])
    jpeg["PixelData"].VR = "OB"
    files["jpeg"] = _save(jpeg, folder / "jpeg.dcm", JPEGBaseline8Bit)
    return files


# -- peers --------------------------------------------------------------------------------------------
class StorageSCP:
    """A pynetdicom Storage SCP (the C-MOVE destination) keeping every received data set."""

    def __init__(self, title: str = "DEST"):
        self.received: dict[str, Dataset] = {}
        self.lock = threading.Lock()
        ae = AE(ae_title=title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: Any) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self.lock:
            self.received[dataset.SOPInstanceUID] = dataset
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def destination() -> Iterator[StorageSCP]:
    scp = StorageSCP()
    yield scp
    scp.close()


def dcmtk(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


def storescu(engine: EngineProcess, *files: Path, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return dcmtk("storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", *options, "127.0.0.1", str(engine.dicom_port),
                 *map(str, files))


def findscu(engine: EngineProcess, out: Path, *keys: str, model: str = "-S") -> list[Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    result = dcmtk("findscu", model, "-aet", "VIEWER", "-aec", "SWF_ENGINE", "-X", "-od", str(out),
                   "127.0.0.1", str(engine.dicom_port), *[a for k in keys for a in ("-k", k)])
    assert result.returncode == 0, result.stdout + result.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def database(engine: EngineProcess) -> sqlite3.Connection:
    connection = sqlite3.connect(engine.data_dir / "swf.sqlite")
    connection.row_factory = sqlite3.Row
    return connection


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    return path


def same_dataset(received: Dataset, sent: Path) -> bool:
    original = dcmread(sent)
    return received == original and received.get("PixelData") == original.get("PixelData")


# -- tests --------------------------------------------------------------------------------------------
def test_store_query_move_get_and_link(start_engine, tmp_path: Path, destination: StorageSCP) -> None:
    config = write_config(tmp_path, f"dicom: {{aes: {{DEST: {{host: 127.0.0.1, port: {destination.port}}}}}}}\n")
    engine = start_engine("--config", str(config))
    order = tmp_path / "order.hl7"
    order.write_bytes(ORDER)
    replay = run_swf("replay", str(order), "--to", engine.address, "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    files = make_files(tmp_path / "send")

    sent = storescu(engine, files["ct1"], files["ct2"], files["pr"])
    assert sent.returncode == 0 and not sent.stderr.strip(), sent.stdout + sent.stderr
    sent = storescu(engine, files["jpeg"], options=("-xy",))
    assert sent.returncode == 0, sent.stdout + sent.stderr

    # files: study/series/instance layout, data set bytes exactly as sent, transfer syntax kept
    storage = engine.data_dir / "dicom"
    expected = {CT_1: (CT_SERIES, "ct1"), CT_2: (CT_SERIES, "ct2"), PR_1: (PR_SERIES, "pr"),
                JPEG_1: (JPEG_SERIES, "jpeg")}
    for sop, (series, name) in expected.items():
        stored = storage / STUDY / series / f"{sop}.dcm"
        assert stored.is_file(), sorted(str(p) for p in storage.rglob("*"))
        original = dcmread(files[name])
        transfer_syntax, body = read_part10(stored)
        assert transfer_syntax == original.file_meta.TransferSyntaxUID
        assert files[name].read_bytes().endswith(body)
        assert dcmread(stored) == original
    assert not list(storage.rglob("*.tmp"))
    assert dcmread(storage / STUDY / JPEG_SERIES / f"{JPEG_1}.dcm").PixelData == dcmread(files["jpeg"]).PixelData

    # index: every instance linked to the order's requested procedure by its Study Instance UID
    with database(engine) as db:
        rows = db.execute("SELECT i.sop_instance_uid, i.requested_procedure_ref, r.accession_number, i.path,"
                          " i.received_from FROM instances i LEFT JOIN requested_procedures r"
                          " ON r.id = i.requested_procedure_ref ORDER BY i.sop_instance_uid").fetchall()
    assert [(r["sop_instance_uid"], r["accession_number"], r["received_from"]) for r in rows] == [
        (uid, "ACC0911", "CT1_AE") for uid in sorted(expected)]
    assert rows[0]["path"] == f"{STUDY}/{CT_SERIES}/{CT_1}.dcm"

    # C-FIND at each level
    [study] = findscu(engine, tmp_path / "find-study", "QueryRetrieveLevel=STUDY", "AccessionNumber=ACC0911",
                      "StudyInstanceUID", "PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                      "NumberOfStudyRelatedInstances", "StudyDescription")
    assert (study.StudyInstanceUID, study.PatientName, study.NumberOfStudyRelatedInstances,
            study.NumberOfStudyRelatedSeries) == (STUDY, "DOE^JANE", 4, 3)
    assert sorted(study.ModalitiesInStudy) == ["CT", "OT", "PR"] and study.StudyDescription in ("", None)
    assert (study.InstanceAvailability, study.RetrieveAETitle, study.QueryRetrieveLevel) == (
        "ONLINE", "SWF_ENGINE", "STUDY")
    series = findscu(engine, tmp_path / "find-series", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY}",
                     "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")
    assert {(s.SeriesInstanceUID, s.Modality, s.NumberOfSeriesRelatedInstances) for s in series} == {
        (CT_SERIES, "CT", 2), (PR_SERIES, "PR", 1), (JPEG_SERIES, "OT", 1)}
    images = findscu(engine, tmp_path / "find-image", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY}",
                     f"SeriesInstanceUID={CT_SERIES}", "SOPInstanceUID", "InstanceNumber", "SOPClassUID")
    assert [(i.SOPInstanceUID, i.InstanceNumber, i.SOPClassUID) for i in images] == [(CT_1, 1, CT), (CT_2, 2, CT)]
    assert findscu(engine, tmp_path / "find-none", "QueryRetrieveLevel=STUDY", "AccessionNumber=NOPE") == []
    warned = dcmtk("findscu", "-v", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
                   "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyDescription=chest", "-k", "StudyInstanceUID")
    assert "Pending: WarningUnsupportedOptionalKeys" in warned.stdout + warned.stderr   # 0xFF01
    patients = findscu(engine, tmp_path / "find-patient", "QueryRetrieveLevel=PATIENT", "PatientID=PAT0911",
                       "NumberOfPatientRelatedInstances", model="-P")
    assert [(p.PatientID, p.NumberOfPatientRelatedInstances) for p in patients] == [("PAT0911", 4)]
    bad = dcmtk("findscu", "-v", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
                "-k", "QueryRetrieveLevel=SERIES", "-k", "SeriesInstanceUID")
    assert "DataSetDoesNotMatchSOPClass" in bad.stdout + bad.stderr   # 0xA900: a SERIES query names its study

    # C-MOVE to a known AE; an unknown destination is 0xA801
    moved = dcmtk("movescu", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "-aem", "DEST", "127.0.0.1",
                  str(engine.dicom_port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert set(destination.received) == set(expected)
    for sop, (_, name) in expected.items():
        assert same_dataset(destination.received[sop], files[name]), sop
    assert destination.received[JPEG_1].file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    unknown = dcmtk("movescu", "-v", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "-aem", "NOBODY", "127.0.0.1",
                    str(engine.dicom_port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}")
    assert "Refused: MoveDestinationUnknown" in unknown.stdout + unknown.stderr   # 0xA801

    # C-GET of one series back over the same association (getscu takes the Storage SCP role)
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    got = dcmtk("getscu", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "-od", str(fetched), "127.0.0.1",
                str(engine.dicom_port), "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={STUDY}",
                "-k", f"SeriesInstanceUID={CT_SERIES}")
    assert got.returncode == 0, got.stdout + got.stderr
    received = {dcmread(p).SOPInstanceUID: p for p in fetched.iterdir()}
    assert set(received) == {CT_1, CT_2}
    assert all(dcmread(received[uid]) == dcmread(files[name]) for uid, name in ((CT_1, "ct1"), (CT_2, "ct2")))


def test_transfer_syntax_choice_within_one_context(start_engine) -> None:
    """One context offering several syntaxes: lossless compressed is taken as it is, but an SCU is never
    asked to compress lossily for us (uncompressed beats JPEG baseline)."""
    engine = start_engine()
    ae = AE(ae_title="PROBE")
    ae.add_requested_context(CT, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    ae.add_requested_context(SC, [RLELossless, ExplicitVRLittleEndian])
    ae.add_requested_context(GSPS, ["1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    accepted = {str(cx.abstract_syntax): str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    assoc.release()
    assert accepted == {CT: ExplicitVRLittleEndian, SC: RLELossless, GSPS: "1.2.840.10008.1.2"}


def test_duplicates_follow_the_configured_policy(start_engine, tmp_path: Path) -> None:
    files = make_files(tmp_path / "send")
    changed = dcmread(files["ct1"])
    changed.SeriesDescription = "second copy"
    second = _save(changed, tmp_path / "ct1-again.dcm")

    engine = start_engine()                                   # default: ignore
    assert storescu(engine, files["ct1"]).returncode == 0
    again = storescu(engine, second)
    assert again.returncode == 0, again.stdout + again.stderr          # a duplicate is answered success
    stored = engine.data_dir / "dicom" / STUDY / CT_SERIES / f"{CT_1}.dcm"
    assert "SeriesDescription" not in dcmread(stored)
    with database(engine) as db:
        assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1
    engine.process.terminate()
    engine.process.wait(10)

    config = write_config(tmp_path, "dicom: {duplicate_policy: overwrite}\n")
    engine = start_engine("--config", str(config), data_dir=tmp_path / "var-overwrite")
    assert storescu(engine, files["ct1"]).returncode == 0
    assert storescu(engine, second).returncode == 0
    stored = engine.data_dir / "dicom" / STUDY / CT_SERIES / f"{CT_1}.dcm"
    assert dcmread(stored).SeriesDescription == "second copy"
    [images] = [findscu(engine, tmp_path / "find", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY}",
                        f"SeriesInstanceUID={CT_SERIES}", "SOPInstanceUID")]
    assert [i.SOPInstanceUID for i in images] == [CT_1]
    with database(engine) as db:
        assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1
