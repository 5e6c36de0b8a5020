"""What ``make fuzz`` found, each over the real wire against a running engine with the input that showed
it (tests/fuzz/regressions.py runs the same inputs through their fuzz targets in-process)."""
from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import pytest
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.api_client import Api
from tests.fuzz import findings as regressions
from tests.hostile import END, START, mllp_connect, msa, orm, read_frame
from tests.integration.test_dicom_input_limits import EXPLICIT, RawAssociation, _even, command, element, identity, \
    indexed

QR_FIND = str(StudyRootQueryRetrieveInformationModelFind)
MPPS = "1.2.840.10008.3.1.2.3.3"
IMPLICIT = "1.2.840.10008.1.2"


@pytest.mark.parametrize("mixed", [False, True], ids=["direct", "pynetdicom"])
def test_a_specific_character_set_with_a_nul_byte_is_stored(start_engine, mixed: bool) -> None:
    """header target: (0008,0005) ``ISO_IR\\0100`` made the header reader raise ValueError (0xC211 and a
    traceback on the direct path); an undefined term means the default repertoire, as for an unknown name."""
    engine = start_engine()
    association = RawAssociation(engine, mixed=mixed)
    uid = b"1.2.826.0.1.3680043.9.7781.3.41"
    data = element(0x00080005, b"CS", regressions.NUL_CHARSET) + identity(uid)
    assert association.store(uid, data) == 0x0000
    association.release()
    assert indexed(engine) == {uid.decode()}
    assert "Traceback" not in engine.log()


def test_modalities_in_study_of_backslashes_only_matches_all(start_engine) -> None:
    """qr target: ModalitiesInStudy ``\\\\`` (separators, no value) built ``AND ()``: 0xC000 and a
    traceback.  No value is a universal match."""
    engine = start_engine()
    association = RawAssociation(engine, abstract=QR_FIND, syntax=EXPLICIT)
    identifier = (element(0x00080052, b"CS", b"STUDY ") + element(0x00080061, b"CS", regressions.BACKSLASHES)
                  + element(0x0020000D, b"UI", b""))
    assert association.find(QR_FIND, identifier) == 0x0000
    association.release()
    assert "Traceback" not in engine.log()


def test_an_mpps_data_set_nested_fifty_levels_deep_is_refused_at_once(start_engine) -> None:
    """mpps target: an N-CREATE whose sequences nest 50 levels made pydicom's writer build gigabytes of
    error text for minutes (the modality got no answer, the engine's memory grew); now 0x0110 at once."""
    engine = start_engine()
    association = RawAssociation(engine, abstract=MPPS, syntax=IMPLICIT)
    association.pdv(0x03, command({0x0002: _even(MPPS.encode(), b"\0"), 0x0100: struct.pack("<H", 0x0140),
                                   0x0110: struct.pack("<H", 5), 0x0800: struct.pack("<H", 0),
                                   0x1000: b"2.25.1414"}))
    started = time.monotonic()
    association.send_data_set(regressions.DEEP_MPPS)
    assert association.status() == 0x0110
    assert time.monotonic() - started < 5
    association.release()
    assert "Traceback" not in engine.log()


def test_a_rules_mode_that_is_a_list_is_a_problem_at_its_line(start_engine) -> None:
    """rules target: ``mode: []`` raised TypeError (unhashable): the check answered ``posted rules:0:
    unhashable type`` instead of the problem at its line."""
    engine = start_engine()
    api = Api(engine.http_port, document={})
    status, answer, _ = api.call("POST", "/api/v1/rules/check", json.dumps({"fuzz.yaml": regressions.MODE_LIST}).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 200 and answer["ok"] is False
    assert answer["problems"] == [{"file": "fuzz.yaml", "line": 4, "reason": "mode must be broker or filler, not []"}]


def test_a_content_type_with_a_vertical_tab_is_answered_400(start_engine) -> None:
    """http target: a POST whose Content-Type holds 0x0B raised ValueError inside twisted.web: no answer,
    the connection dropped and an unhandled error logged."""
    engine = start_engine()
    with socket.create_connection(("127.0.0.1", engine.http_port), timeout=10) as sock:
        sock.sendall(regressions.VERTICAL_TAB_REQUEST)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert "Unhandled Error" not in engine.log() and "Traceback" not in engine.log()


def test_a_frame_of_exactly_the_limit_with_its_end_block_split_is_accepted(start_engine, tmp_path: Path) -> None:
    """mllp target: with the 0x1C of the end block in one read and the CR in the next, a frame of exactly
    ``mllp.max_message_bytes`` counted the 0x1C and was refused as too large (AR)."""
    limit = 2048
    config = tmp_path / "engine.yaml"
    config.write_text(f"mllp: {{max_message_bytes: {limit}}}\n")
    engine = start_engine("--config", str(config))
    message = orm("EXACT1")
    message += b"\rNTE|1||" + b"x" * (limit - len(message) - 8)
    assert len(message) == limit
    with mllp_connect(engine.mllp_port) as sock:
        sock.sendall(START + message + END[:1])
        time.sleep(0.5)                              # the engine reads the 0x1C alone
        sock.sendall(END[1:])
        assert msa(read_frame(sock))[1] == "AA"
