"""Hostile or broken DICOM input over the wire (issue 11 items 3 and 4): every C-STORE and query gets a
status, nothing invalid is indexed, no traceback is logged, and the engine's peak RSS stays under
300 MB.  Data sets are crafted byte by byte on raw sockets (deflate bombs, PDVs without their last
fragment, malformed UIDs, deep nesting), on storage-only associations (the direct path) and on
associations that also propose the worklist (served by pynetdicom)."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import struct
import time
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (CTImageStorage, ModalityWorklistInformationFind,
                                  StudyRootQueryRetrieveInformationModelFind)

from tests.conftest import EngineProcess

# the hostile identifiers are built with pydicom on purpose: its warnings about them are expected
pytestmark = pytest.mark.filterwarnings("ignore:.*(exceeds the maximum length|Invalid value for VR):UserWarning")

CT = "1.2.840.10008.5.1.4.1.1.2"
MWL = str(ModalityWorklistInformationFind)
EXPLICIT, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"
STUDY, SERIES = "1.2.826.0.1.3680043.9.7781.1", "1.2.826.0.1.3680043.9.7781.2"
FRAGMENT = 65536
MAX_RSS_KB = 300 * 1024
PATHS = pytest.mark.parametrize("mixed", [False, True], ids=["direct", "pynetdicom"])


# -- encoding --------------------------------------------------------------------------------------
def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def associate_rq(calling: str, contexts: list[tuple[str, str]]) -> bytes:
    body = struct.pack(">HH", 1, 0) + b"SWF_ENGINE".ljust(16) + calling.encode().ljust(16) + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for number, (abstract, syntax) in enumerate(contexts):
        body += _item(0x20, bytes((1 + 2 * number, 0, 0, 0)) + _item(0x30, abstract.encode()) +
                      _item(0x40, syntax.encode()))
    body += _item(0x50, _item(0x51, struct.pack(">I", 1 << 20)) + _item(0x52, b"1.2.826.0.1.3680043.9.7781"))
    return struct.pack(">BxI", 1, len(body)) + body


def command(elements: dict[int, bytes]) -> bytes:
    """An Implicit VR Little Endian command set, group length first."""
    body = b"".join(struct.pack("<HHI", 0, element, len(value)) + value for element, value in sorted(elements.items()))
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def store_command(sop_instance: bytes, sop_class: str = CT) -> bytes:
    return command({0x0002: _even(sop_class.encode(), b"\0"), 0x0100: struct.pack("<H", 1),
                    0x0110: struct.pack("<H", 7), 0x0700: struct.pack("<H", 0), 0x0800: struct.pack("<H", 0),
                    0x1000: _even(sop_instance, b"\0")})


def element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element."""
    group, number = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2s2xI", group, number, vr, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def identity(sop_instance: bytes, study: bytes = STUDY.encode(), series: bytes = SERIES.encode()) -> bytes:
    """SOP class and instance, patient, study and series: the start of a CT data set."""
    return b"".join((element(0x00080016, b"UI", _even(CT.encode(), b"\0")),
                     element(0x00080018, b"UI", _even(sop_instance, b"\0")),
                     element(0x00080060, b"CS", b"CT"), element(0x00100020, b"LO", b"PLIMITS "),
                     element(0x0020000D, b"UI", _even(study, b"\0")),
                     element(0x0020000E, b"UI", _even(series, b"\0"))))


@lru_cache(maxsize=None)
def deflate_bomb(inflated_mib: int) -> bytes:
    """A deflated data set: its identity, then an OB element of ``inflated_mib`` MiB of zeros.  (After a
    full flush deflate starts afresh, so one compressed MiB of zeros can be repeated.)"""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    header = identity(b"1.2.826.0.1.3680043.9.7781.3.99") + struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB",
                                                                         inflated_mib << 20)
    start = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    mebibyte = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return start + mebibyte * inflated_mib + compressor.flush()


def nested_sequences(depth: int) -> bytes:
    """(0040,A730) Content Sequence items nested ``depth`` levels, all of undefined length."""
    opening = struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000,
                                                                                      0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return opening * depth + closing * depth


# -- a raw association -----------------------------------------------------------------------------
class RawAssociation:
    """A requestor on a plain socket: sends what the test crafts, reads the engine's answers."""

    def __init__(self, engine: EngineProcess, syntax: str = EXPLICIT, mixed: bool = False, calling: str = "RAWSCU",
                 abstract: str = CT):
        contexts = [(abstract, syntax)] + ([(MWL, EXPLICIT)] if mixed else [])
        self.sock = socket.create_connection(("127.0.0.1", engine.dicom_port), timeout=15)
        self.sock.sendall(associate_rq(calling, contexts))
        kind, body = self.read_pdu()
        assert kind == 2, f"association not accepted (PDU type {kind})"
        assert self._context_result(body) == 0, "first context not accepted"

    @staticmethod
    def _context_result(body: bytes) -> int:
        offset = 68
        while offset < len(body):
            kind, length = struct.unpack_from(">BxH", body, offset)
            if kind == 0x21 and body[offset + 4] == 1:
                return body[offset + 6]
            offset += 4 + length
        return -1

    def read_pdu(self) -> tuple[int, bytes]:
        header = self._exactly(6)
        kind, length = struct.unpack(">BxI", header)
        return kind, self._exactly(length)

    def _exactly(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed by the engine")
            data += chunk
        return bytes(data)

    def pdv(self, control: int, data: bytes, context_id: int = 1) -> None:
        self.sock.sendall(struct.pack(">BxIIBB", 4, len(data) + 6, len(data) + 2, context_id, control) + data)

    def send_data_set(self, data: bytes, last: bool = True) -> None:
        for start in range(0, len(data), FRAGMENT):
            final = last and start + FRAGMENT >= len(data)
            self.pdv(0x02 if final else 0x00, data[start:start + FRAGMENT])

    def send_zeros(self, megabytes: int) -> None:
        """``megabytes`` MiB of data-set fragments, none of them the last."""
        zeros = bytes(FRAGMENT)
        for _ in range(megabytes * (1 << 20) // FRAGMENT):
            self.pdv(0x00, zeros)

    def store(self, sop_instance: bytes, data: bytes) -> int:
        self.pdv(0x03, store_command(sop_instance))
        self.send_data_set(data)
        return self.status()

    def find(self, sop_class: str, identifier: bytes) -> int:
        """A C-FIND request; the status of its final response."""
        self.pdv(0x03, command({0x0002: _even(sop_class.encode(), b"\0"), 0x0100: struct.pack("<H", 0x0020),
                                0x0110: struct.pack("<H", 9), 0x0700: struct.pack("<H", 0),
                                0x0800: struct.pack("<H", 0)}))
        self.send_data_set(identifier)
        while True:
            status = self.status()
            if status not in (0xFF00, 0xFF01):
                return status

    def status(self) -> int:
        """The Status (0000,0900) of the next response (its data set, if any, is skipped)."""
        received = b""
        while True:
            kind, body = self.read_pdu()
            assert kind == 4, f"PDU type {kind} instead of the C-STORE response"
            offset = 0
            while offset < len(body):
                length, _context, control = struct.unpack_from(">IBB", body, offset)
                if control & 0x01:
                    received += body[offset + 6: offset + 4 + length]
                offset += 4 + length
                if control == 0x03:
                    return _status_of(received)

    def release(self) -> None:
        self.sock.sendall(struct.pack(">BxI", 5, 4) + bytes(4))
        kind, _ = self.read_pdu()
        assert kind == 6
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def _status_of(command_set: bytes) -> int:
    offset = 0
    while offset + 8 <= len(command_set):
        _group, number, length = struct.unpack_from("<HHI", command_set, offset)
        if number == 0x0900:
            return struct.unpack_from("<H", command_set, offset + 8)[0]
        offset += 8 + length
    raise AssertionError("no Status in the response")


# -- observing the engine --------------------------------------------------------------------------
def peak_rss_kb(engine: EngineProcess) -> int:
    """VmHWM: the highest resident set size of the engine process so far."""
    for line in Path(f"/proc/{engine.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def indexed(engine: EngineProcess) -> set[str]:
    with sqlite3.connect(engine.data_dir / "swf.sqlite") as connection:
        return {row[0] for row in connection.execute("SELECT sop_instance_uid FROM instances")}


def configured(start_engine, tmp_path: Path, dicom: str = "{}") -> EngineProcess:
    config = tmp_path / "engine.yaml"
    config.write_text(f"dicom: {dicom}\n")
    return start_engine("--config", str(config))


def assert_clean(engine: EngineProcess) -> None:
    assert "Traceback" not in engine.log()
    assert peak_rss_kb(engine) < MAX_RSS_KB, f"peak RSS {peak_rss_kb(engine) // 1024} MB"


def wait_for_log(engine: EngineProcess, text: str, timeout: float = 10, since: int = 0) -> None:
    """Wait for ``text`` in the engine's log past character ``since`` (what this test's request wrote)."""
    deadline = time.monotonic() + timeout
    while text not in engine.log()[since:]:
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def shared_engine(start_module_engine) -> EngineProcess:
    """One engine on the default configuration for the tests that check only the answer to what they
    sent, the log lines it wrote and that the instance was not indexed (the memory tests keep their own:
    they read the process's peak RSS)."""
    return start_module_engine()


@pytest.fixture
def engine(shared_engine: EngineProcess) -> Iterator[tuple[EngineProcess, int]]:
    """The shared engine and where its log stood when this test began; no traceback by the end."""
    since = len(shared_engine.log())
    yield shared_engine, since
    assert "Traceback" not in shared_engine.log()[since:]


# -- item 3: memory ----------------------------------------------------------------------------------
def test_a_deflate_bomb_is_inflated_in_bounded_memory(start_engine) -> None:
    """~1 MB body inflating to a 1 GiB OB element, default configuration: stored as received (it is a
    valid data set under the 2 GiB default), without holding the inflated bytes in memory."""
    engine = start_engine()
    association = RawAssociation(engine, DEFLATED)
    assert association.store(b"1.2.826.0.1.3680043.9.7781.3.99", deflate_bomb(1024)) == 0x0000
    association.release()
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7781.3.99"}
    assert_clean(engine)


@PATHS
def test_a_deflate_bomb_over_the_instance_limit_is_out_of_resources(start_engine, tmp_path: Path,
                                                                    mixed: bool) -> None:
    engine = configured(start_engine, tmp_path, "{max_instance_bytes: 67108864}")
    association = RawAssociation(engine, DEFLATED, mixed)
    assert association.store(b"1.2.826.0.1.3680043.9.7781.3.99", deflate_bomb(256)) == 0xA700
    association.release()
    assert indexed(engine) == set()
    assert "1.2.826.0.1.3680043.9.7781.3.99 from RAWSCU refused" in engine.log()
    assert_clean(engine)


@PATHS
def test_a_data_set_over_the_instance_limit_is_out_of_resources(start_engine, tmp_path: Path, mixed: bool) -> None:
    """96 MiB of data-set fragments against a 32 MiB limit: nothing past the limit is kept, the last
    fragment is answered 0xA700, and the association goes on to store the next instance."""
    engine = configured(start_engine, tmp_path, "{max_instance_bytes: 33554432}")
    association = RawAssociation(engine, mixed=mixed)
    association.pdv(0x03, store_command(b"1.2.826.0.1.3680043.9.7781.3.1"))
    association.send_data_set(identity(b"1.2.826.0.1.3680043.9.7781.3.1"), last=False)
    association.send_zeros(96)
    association.pdv(0x02, struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", 0))
    assert association.status() == 0xA700
    small = identity(b"1.2.826.0.1.3680043.9.7781.3.2")
    assert association.store(b"1.2.826.0.1.3680043.9.7781.3.2", small) == 0x0000
    association.release()
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7781.3.2"}
    assert_clean(engine)


@PATHS
def test_data_set_fragments_without_the_last_are_not_held_in_memory(start_engine, mixed: bool) -> None:
    """400 MiB of fragments, never the last one, default configuration: spooled to a scratch file, freed
    when the peer goes; meanwhile another association stores and is answered."""
    engine = start_engine()
    association = RawAssociation(engine, mixed=mixed)
    association.pdv(0x03, store_command(b"1.2.826.0.1.3680043.9.7781.3.1"))
    association.send_data_set(identity(b"1.2.826.0.1.3680043.9.7781.3.1"), last=False)
    association.send_zeros(400)
    other = RawAssociation(engine, calling="OTHER")
    assert other.store(b"1.2.826.0.1.3680043.9.7781.3.3", identity(b"1.2.826.0.1.3680043.9.7781.3.3")) == 0x0000
    other.release()
    association.close()
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7781.3.3"}
    assert_clean(engine)


@PATHS
def test_a_large_instance_is_stored_whole(start_engine, mixed: bool) -> None:
    """24 MiB of pixel data from a pynetdicom SCU: through the scratch file, byte for byte into the store."""
    engine = start_engine()
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, "1.2.826.0.1.3680043.9.7781.3.8"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = STUDY, SERIES, "PLIMITS", "CT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, 48
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * (24 * 4096)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ae = AE(ae_title="BIGSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    if mixed:
        ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    association = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE", max_pdu=262144)
    assert association.is_established
    try:
        assert association.send_c_store(ds).Status == 0x0000
    finally:
        association.release()
    assert indexed(engine) == {ds.SOPInstanceUID}
    stored = dcmread(next((engine.data_dir / "dicom").rglob(f"{ds.SOPInstanceUID}.dcm")))
    assert stored.PixelData == ds.PixelData and stored.NumberOfFrames == 48
    assert_clean(engine)


def test_storescu_is_told_out_of_resources_and_goes_on(start_engine, tmp_path: Path) -> None:
    """DCMTK storescu, 8 MiB limit: the 12 MiB file is refused 0xA700, the small one after it stored."""
    engine = configured(start_engine, tmp_path, "{max_instance_bytes: 8388608}")
    files = []
    for number, frames in ((10, 24), (11, 1)):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"1.2.826.0.1.3680043.9.7781.3.{number}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = STUDY, SERIES, "PLIMITS", "CT"
        ds.Rows, ds.Columns, ds.NumberOfFrames, ds.BitsAllocated = 512, 512, frames, 16
        ds.PixelData = bytes(512 * 512 * 2 * frames)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(tmp_path / f"{number}.dcm", enforce_file_format=True)
        files.append(str(tmp_path / f"{number}.dcm"))
    sent = subprocess.run(["storescu", "-v", "-nh", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1",
                           str(engine.dicom_port), *files], env={**os.environ, "TCP_NODELAY": "1"},
                          capture_output=True, text=True, timeout=30)
    assert "Refused: OutOfResources" in sent.stderr, sent.stderr    # 0xA700
    assert indexed(engine) == {"1.2.826.0.1.3680043.9.7781.3.11"}
    assert "1.2.826.0.1.3680043.9.7781.3.10 from CT1_AE refused: data set of" in engine.log()
    assert_clean(engine)


def test_an_endless_query_identifier_ends_the_association(engine) -> None:
    """Any message other than a C-STORE with over 16 MiB of data set (here a worklist identifier that never
    ends) is not buffered on: A-ABORT."""
    engine, since = engine
    association = RawAssociation(engine, abstract=MWL, calling="FINDSCU")
    association.pdv(0x03, command({0x0002: _even(MWL.encode(), b"\0"), 0x0100: struct.pack("<H", 0x0020),
                                   0x0110: struct.pack("<H", 9), 0x0700: struct.pack("<H", 0),
                                   0x0800: struct.pack("<H", 0)}))
    association.sock.settimeout(5)
    try:
        association.send_zeros(64)
        kind, _ = association.read_pdu()
    except TimeoutError:
        raise AssertionError("the engine kept reading") from None
    except OSError:
        pass                 # reset while sending: the engine closed after its A-ABORT
    else:
        assert kind == 7     # A-ABORT
    wait_for_log(engine, "DICOM association from FINDSCU aborted: a C_FIND_RQ over 16777216 bytes", since=since)
    assert_clean(engine)


# -- item 4: no traceback, UIDs checked ------------------------------------------------------------
NOT_UIDS = [b"1.2.\xe9", b"1" * 65, b"1." + b"2" * 198, b"..", b".", b"/abs", b"$HOME", b"1..2", b"1.2."]


@PATHS
@pytest.mark.parametrize("uid", NOT_UIDS, ids=lambda uid: repr(uid)[2:14])
def test_a_sop_instance_uid_that_is_no_uid_is_refused(engine, mixed: bool, uid: bytes) -> None:
    """0x0117 Invalid SOP Instance (PS3.7 C.4.2: the UID violates the UID construction rules), logged with
    the calling AE and the UID (pynetdicom decodes non-ASCII bytes as Latin-1, the direct path replaces them)."""
    engine, since = engine
    association = RawAssociation(engine, mixed=mixed)
    assert association.store(uid, identity(uid)) == 0x0117
    association.release()
    shown = uid.decode("latin-1" if mixed else "ascii", "replace")[:80]
    wait_for_log(engine, f"C-STORE {shown!r} from RAWSCU refused: Affected SOP Instance UID", since=since)
    assert not indexed(engine) & {uid.decode("latin-1")}


@PATHS
@pytest.mark.parametrize("field", ["study", "series"])
def test_a_study_or_series_uid_that_is_no_uid_is_refused(engine, mixed: bool, field: str) -> None:
    engine, since = engine
    association = RawAssociation(engine, mixed=mixed)
    uid = b"1.2.826.0.1.3680043.9.7781.3.5"
    bad = {field: b"../../etc"}
    assert association.store(uid, identity(uid, **bad)) == 0xA900
    association.release()
    assert uid.decode() not in indexed(engine)
    wait_for_log(engine, f"{uid.decode()} from RAWSCU refused: {field.capitalize()}InstanceUID: malformed UID", since=since)


@PATHS
def test_deeply_nested_sequences_cannot_be_understood(engine, mixed: bool) -> None:
    engine, since = engine
    association = RawAssociation(engine, mixed=mixed)
    uid = b"1.2.826.0.1.3680043.9.7781.3.6"
    data = identity(uid) + nested_sequences(2000)
    assert association.store(uid, data) == 0xC000
    ok = b"1.2.826.0.1.3680043.9.7781.3.7"
    assert association.store(ok, identity(ok) + nested_sequences(20)) == 0x0000
    association.release()
    assert ok.decode() in indexed(engine) and uid.decode() not in indexed(engine)
    wait_for_log(engine, "sequences nested deeper than", since=since)


@pytest.mark.parametrize("sop_class,level", [(MWL, b""), (str(StudyRootQueryRetrieveInformationModelFind), b"STUDY ")],
                         ids=["worklist", "study-root"])
def test_a_query_nested_too_deep_to_decode_is_refused(engine, sop_class: str, level: bytes) -> None:
    engine, since = engine
    association = RawAssociation(engine, abstract=sop_class, calling="FINDSCU")
    identifier = (element(0x00080052, b"CS", level) if level else b"") + element(0x00100020, b"LO", b"PX")
    assert association.find(sop_class, identifier + nested_sequences(2000)) == 0xA900
    assert association.find(sop_class, identifier) == 0x0000          # the association goes on
    association.release()
    wait_for_log(engine, "identifier: sequences nested too deep to decode", since=since)
    assert any("from FINDSCU" in line for line in engine.log()[since:].splitlines() if "nested too deep" in line)


def _find(engine: EngineProcess, sop_class: str, identifier: Dataset) -> list[int]:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(sop_class)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    association = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert association.is_established
    try:
        return [status.Status for status, _ in association.send_c_find(identifier, sop_class) if status]
    finally:
        association.release()


def test_a_worklist_pattern_too_long_to_match_is_refused(engine) -> None:
    engine, since = engine
    query = Dataset()
    query.PatientID = "*A" * 30000
    query.PatientName = ""
    step = Dataset()
    step.Modality = ""
    query.ScheduledProcedureStepSequence = [step]
    assert _find(engine, MWL, query) == [0xA900]
    wait_for_log(engine, "wildcard value of 60000 characters", since=since)


@pytest.mark.parametrize("key,value,logged", [
    ("PatientID", "*A" * 30000, "wildcard value of 60000 characters"),
    ("StudyInstanceUID", "1.2.\u00e9", "StudyInstanceUID: malformed UID"),
    ("StudyInstanceUID", "\\".join(f"1.2.{n}" for n in range(5000)), "list of 5000 values"),
])
def test_a_study_query_it_cannot_serve_is_refused(engine, key: str, value: str, logged: str) -> None:
    engine, since = engine
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    setattr(query, key, value)
    query.PatientName = ""
    assert _find(engine, str(StudyRootQueryRetrieveInformationModelFind), query) == [0xA900]
    wait_for_log(engine, logged, since=since)
