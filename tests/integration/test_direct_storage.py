"""The direct storage path (dicom/wire/direct_storage.py) against real SCUs: DCMTK storescu / echoscu and
pynetdicom.  Storage-only associations are served directly; everything else still reaches pynetdicom."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, ModalityWorklistInformationFind, Verification

from tests.conftest import EngineProcess

DIRECT = "engine.dicom.wire.direct_storage: DICOM association from"
VIA_PYNETDICOM = "engine.dicom.ae: DICOM association from"


def ct_instance(number: int, series: str | None = "1.2.826.0.1.3680043.9.7777.2") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"1.2.826.0.1.3680043.9.7777.3.{number}"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7777.1"
    if series:
        ds.SeriesInstanceUID = series
    ds.PatientName, ds.PatientID, ds.Modality, ds.AccessionNumber = "DIRECT^PATH", "PDIRECT", "CT", "ACCDIRECT"
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * 8
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def dcmtk(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=60)


def indexed(engine: EngineProcess) -> set[str]:
    with sqlite3.connect(engine.data_dir / "swf.sqlite") as connection:
        return {row[0] for row in connection.execute("SELECT sop_instance_uid FROM instances")}


def associate(engine: EngineProcess, calling: str, *also: str, called: str = "SWF_ENGINE") -> Any:
    """A pynetdicom association proposing CT storage (and ``also`` these SOP classes)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    for sop_class in also:
        ae.add_requested_context(sop_class)
    return ae.associate("127.0.0.1", engine.dicom_port, ae_title=called)


def test_storescu_and_echoscu_are_served_directly(start_engine, tmp_path: Path) -> None:
    engine = start_engine()
    files = [write(ct_instance(n), tmp_path / f"ct{n}.dcm") for n in range(1, 6)]
    sent = dcmtk("storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
                 *map(str, files))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert indexed(engine) == {f"1.2.826.0.1.3680043.9.7777.3.{n}" for n in range(1, 6)}
    assert all((engine.data_dir / "dicom").rglob(f"1.2.826.0.1.3680043.9.7777.3.{n}.dcm") for n in range(1, 6))
    echo = dcmtk("echoscu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port))
    assert echo.returncode == 0, echo.stdout + echo.stderr
    assert engine.log().count(f"{DIRECT} CT1_AE") == 2
    assert VIA_PYNETDICOM not in engine.log()


def test_statuses_on_the_direct_path(start_engine) -> None:
    engine = start_engine()
    assoc = associate(engine, "MOD1")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ct_instance(11)).Status == 0x0000
        assert assoc.send_c_store(ct_instance(11)).Status == 0x0000          # duplicate: ignored, still success
        refused = assoc.send_c_store(ct_instance(12, series=None))
        assert refused.Status == 0xA900 and "SeriesInstanceUID missing" in refused.ErrorComment
    finally:
        assoc.release()
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7777.3.11"}
    assert f"{DIRECT} MOD1" in engine.log() and "C-STORE 1.2.826.0.1.3680043.9.7777.3.12 from MOD1 refused" in engine.log()


def test_mixed_associations_still_go_to_pynetdicom(start_engine) -> None:
    engine = start_engine()
    assoc = associate(engine, "MOD2", ModalityWorklistInformationFind, Verification)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ct_instance(21)).Status == 0x0000
        query = Dataset()
        query.PatientName = "*"
        statuses = [status.Status for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)]
        assert statuses[-1] == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert f"{VIA_PYNETDICOM} MOD2" in engine.log() and f"{DIRECT} MOD2" not in engine.log()
    assert "1.2.826.0.1.3680043.9.7777.3.21" in indexed(engine)


def test_a_broken_peer_is_aborted_and_the_engine_carries_on(start_engine) -> None:
    engine = start_engine()
    assoc = associate(engine, "BROKEN")
    assert assoc.is_established
    assoc.dul.socket.socket.sendall(b"\x09\x00\x00\x00\x00\x02\x00\x00")   # PDU type 9 does not exist
    deadline = time.monotonic() + 10
    while not assoc.is_aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted
    assert "DICOM association from BROKEN aborted: unexpected PDU type 0x09" in engine.log()
    assoc = associate(engine, "MOD3")
    assert assoc.is_established and assoc.send_c_store(ct_instance(31)).Status == 0x0000
    assoc.release()


def test_wrong_called_ae_unknown_callers_and_missing_permission_are_refused(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("dicom: {aes: {CT1_AE: {permissions: [store]}, VIEWER: {permissions: [echo]}}}\n")
    engine = start_engine("--config", str(config), allow_any_ae=False)
    assert associate(engine, "STRANGER").is_rejected
    assert associate(engine, "CT1_AE", called="NOT_US").is_rejected
    assoc = associate(engine, "CT1_AE")
    assert assoc.is_established and assoc.send_c_store(ct_instance(41)).Status == 0x0000
    assoc.release()
    viewer = associate(engine, "VIEWER")                 # known, but without the store permission
    assert viewer.is_established
    refused = viewer.send_c_store(ct_instance(42))
    viewer.release()
    assert refused.Status == 0x0124 and "VIEWER may not store" in refused.ErrorComment
    assert f"{DIRECT} CT1_AE" in engine.log() and f"{DIRECT} VIEWER" in engine.log()
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7777.3.41"}


def test_the_direct_path_can_be_turned_off(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("dicom: {direct_storage: false}\n")
    engine = start_engine("--config", str(config))
    sent = dcmtk("storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
                 str(write(ct_instance(51), tmp_path / "ct51.dcm")))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7777.3.51"}
    assert f"{VIA_PYNETDICOM} CT1_AE" in engine.log() and DIRECT not in engine.log()


def test_data_sets_spanning_many_small_pdus_arrive_whole(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("dicom: {max_pdu_bytes: 4096}\n")
    engine = start_engine("--config", str(config))
    big = ct_instance(61)
    big.Rows = big.Columns = 256
    big.PixelData = bytes(i % 253 for i in range(256 * 256 * 2))          # 128 KiB: 32+ PDUs of 4 KiB
    path = write(big, tmp_path / "big.dcm")
    sent = dcmtk("storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port), str(path))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [stored] = (engine.data_dir / "dicom").rglob("1.2.826.0.1.3680043.9.7777.3.61.dcm")
    assert dcmread(stored).PixelData == big.PixelData
    assert f"{DIRECT} CT1_AE" in engine.log()


def test_many_instances_on_one_association_each_answered_for_itself(start_engine) -> None:
    """Each response names its own SOP instance and message ID (the SCU checks both)."""
    engine = start_engine()
    assoc = associate(engine, "MOD4")
    uids = []
    try:
        for n in range(20):
            ds = ct_instance(100 + n)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="1.2.826.0.1.3680043.9.7777.4.")
            uids.append(ds.SOPInstanceUID)
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert set(uids) <= indexed(engine)


def test_the_engine_stops_promptly_with_an_idle_direct_association_open(start_engine) -> None:
    engine = start_engine()
    idle = associate(engine, "MOD10")
    assert idle.is_established
    started = time.monotonic()
    engine.process.terminate()
    engine.process.wait(20)
    assert time.monotonic() - started < 10          # not the 60 s network timeout
    deadline = time.monotonic() + 5
    while idle.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert idle.is_aborted
