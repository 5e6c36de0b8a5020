"""Inputs from public bug reports against other HL7 / DICOM stacks, sent over the real wire to a running
engine: each gets its answer, nothing crashes or hangs, and the engine still serves a modality (C-ECHO) and
an HL7 sender (ORM answered AA) afterwards.  The same inputs seed the fuzz targets (tests/fuzz)."""
from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.conftest import EngineProcess
from tests.fuzz import dicom_bytes as db
from tests.hostile import END, START, mllp_connect, msa, orm, read_frame
from tests.integration.test_dicom_input_limits import RawAssociation, identity, indexed

ABORT = 0x07


def still_serving(engine: EngineProcess, cid: str) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    with mllp_connect(engine.mllp_port) as sock:
        sock.sendall(START + orm(cid) + END)
        assert msa(read_frame(sock))[1] == "AA"
    assert engine.process.poll() is None
    assert "Traceback" not in engine.log()


def first_pdu(sock: socket.socket) -> int:
    """The type of the first PDU the engine answers with (0: it closed without one)."""
    header = sock.recv(6, socket.MSG_WAITALL)
    return header[0] if header else 0


def test_nhapi_196_one_character_msh2_is_answered(start_engine) -> None:
    """nHapi #196: ``MSH|^|||||||^A|||2.2\\r^AA`` made the parser throw; here it gets an AR."""
    engine = start_engine()
    with mllp_connect(engine.mllp_port) as sock:
        sock.sendall(START + b"MSH|^|||||||^A|||2.2\r^AA" + END)
        answer = read_frame(sock)
    assert msa(answer)[1] == "AR"
    still_serving(engine, "NHAPI196")


def test_dicom_rs_260_pdv_item_length_under_two_is_aborted(start_engine) -> None:
    """dicom-rs #260: a P-DATA-TF whose PDV item length is below 2 (no room for its header)."""
    engine = start_engine()
    for length in (0, 1):
        association = RawAssociation(engine)
        association.sock.sendall(db.pdu(0x04, struct.pack(">IBB", length, 1, 3)))
        kind, _ = association.read_pdu()
        assert kind == ABORT
        association.close()
    still_serving(engine, "DICOMRS260")


def test_io_dicom_40_gigabyte_item_lengths_are_aborted_unallocated(start_engine) -> None:
    """io-dicom #40: an A-ASSOCIATE-RQ whose items declare lengths far past the PDU (and a PDU length of
    ~4 GB): one A-ABORT, nothing allocated."""
    engine = start_engine()
    request = bytearray(db.associate_rq())
    struct.pack_into(">H", request, 74 + 2, 0xFFFF)                     # the application context item
    for pdu_length in (len(request) - 6, 0xFFFFFFF0):
        struct.pack_into(">I", request, 2, pdu_length)
        with socket.create_connection(("127.0.0.1", engine.dicom_port), timeout=10) as sock:
            sock.sendall(bytes(request))
            assert first_pdu(sock) == ABORT
    still_serving(engine, "IODICOM40")


def test_fo_dicom_1678_http_request_line_on_the_dicom_port(start_engine) -> None:
    """fo-dicom #1678: an HTTP request (a health checker, a browser) on the DICOM port."""
    engine = start_engine()
    with socket.create_connection(("127.0.0.1", engine.dicom_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
        assert first_pdu(sock) == ABORT
    still_serving(engine, "FODICOM1678")


@pytest.mark.parametrize("mixed", [False, True], ids=["direct", "pynetdicom"])
def test_uids_with_dot_dot_slash_are_refused_and_write_no_file(start_engine, mixed: bool) -> None:
    """``../`` in the SOP Instance UID (0x0117) or in the Study / Series UID (0xA900): no file, nothing indexed."""
    engine = start_engine()
    association = RawAssociation(engine, mixed=mixed)
    peer = "%s:%d" % association.sock.getsockname()[:2]   # where the engine sees the association come from
    assert association.store(b"../../../../tmp/x", identity(b"../../../../tmp/x")) == 0x0117
    good = b"1.2.826.0.1.3680043.9.7781.3.7"
    assert association.store(good, identity(good, study=b"../../..", series=b"../x")) == 0xA900
    association.release()
    assert indexed(engine) == set()
    assert not [path for path in Path(engine.data_dir).rglob("*.dcm")]
    # each raised on the engine's security event bus (the ATNA trail's Security Alert), with the peer and the
    # calling AE
    assert f"security: uid-refused from {peer}: Affected SOP Instance UID: malformed UID '../../../../tmp/x'" \
        " (RAWSCU)" in engine.log()
    assert f"security: uid-refused from {peer}: C-STORE 1.2.826.0.1.3680043.9.7781.3.7: StudyInstanceUID:" \
        " malformed UID" in engine.log()
    assert not list(Path(engine.data_dir).parent.glob("tmp/x*")) and not Path("/tmp/x.dcm").exists()
    still_serving(engine, f"DOTDOT{int(mixed)}")


@pytest.mark.parametrize("accepted", [False, True], ids=["default", "accept_uid_leading_zeros"])
def test_a_uid_with_a_leading_zero_is_refused_unless_the_site_accepts_them(start_engine, tmp_path: Path,
                                                                           accepted: bool) -> None:
    """PS3.5 9.1 forbids ``.03``: refused (0x0117, no file) by default; a site with such modalities opts in."""
    config = tmp_path / "zeros.yaml"
    config.write_text(f"dicom:\n  accept_uid_leading_zeros: {str(accepted).lower()}\n")
    engine = start_engine("--config", str(config))
    association = RawAssociation(engine)
    legacy = b"1.2.826.0.1.3680043.9.7781.03.7"
    assert association.store(legacy, identity(legacy)) == (0x0000 if accepted else 0x0117)
    association.release()
    assert indexed(engine) == ({legacy.decode()} if accepted else set())
    assert bool(list(Path(engine.data_dir).rglob("*.dcm"))) == accepted
    if not accepted:
        assert "leading zero (PS3.5 9.1)" in engine.log()
