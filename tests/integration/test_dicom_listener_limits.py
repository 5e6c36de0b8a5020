"""The DICOM listener under hostile or broken peers (issue 11 items 1-2): garbage, idle TCP connections,
partial headers, malformed A-ASSOCIATE-RQs, 4 GB PDU lengths, idle associations from one host.

Throughout each input, a C-ECHO from another loopback address (127.0.0.2) is answered within 1 s, the
engine's RSS stays under 300 MB, and once the hostile peer has left the engine does not spin.
"""
from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from tests.conftest import EngineProcess

MODALITY_ADDRESS = "127.0.0.2"       # the well-behaved modality: another host than the hostile one
RSS_LIMIT_KB = 300 * 1024
REQUEST_TIMEOUT = 2.0                # dicom.association_request_timeout in these tests
PER_PEER = 8                         # dicom.max_associations_per_peer in these tests
ABORT = 0x07


def engine_status(engine: EngineProcess, field: str) -> int:
    """A number field of /proc/PID/status (VmRSS in kB, Threads)."""
    for line in Path(f"/proc/{engine.process.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(engine: EngineProcess) -> float:
    fields = Path(f"/proc/{engine.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100     # utime + stime, in clock ticks of 10 ms


def cpu_busy(engine: EngineProcess, seconds: float = 2.0) -> float:
    """CPU seconds the engine used per wall second over ``seconds``."""
    before = cpu_seconds(engine)
    time.sleep(seconds)
    return (cpu_seconds(engine) - before) / seconds


def echo_seconds(engine: EngineProcess) -> float:
    """How long a C-ECHO from the other host takes, association to release (10 s when never answered)."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    started = time.monotonic()
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE", bind_address=(MODALITY_ADDRESS, 0))
    try:
        assert assoc.is_established, "the modality's association was not accepted"
        status = assoc.send_c_echo()
        assert status and status.Status == 0x0000
    finally:
        assoc.release() if assoc.is_established else assoc.abort()
    return time.monotonic() - started


def assert_modality_served(engine: EngineProcess) -> None:
    seconds = echo_seconds(engine)
    assert seconds < 1.0, f"C-ECHO from {MODALITY_ADDRESS} took {seconds:.2f} s"
    rss = engine_status(engine, "VmRSS")
    assert rss < RSS_LIMIT_KB, f"engine RSS {rss // 1024} MB"


def connect(engine: EngineProcess, count: int, first_bytes: bytes = b"", source: str = "127.0.0.1"
            ) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", engine.dicom_port), timeout=5, source_address=(source, 0))
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def answer(sock: socket.socket, timeout: float) -> bytes:
    """Everything the engine sent until it closed the connection (raises socket.timeout when it did not)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def associate_rq(calling: bytes = b"HOSTILE", contexts: int = 1, overrun: int = 0) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification; ``overrun`` adds that much to the first item's length."""
    variable = struct.pack(">BxH", 0x10, len(b"1.2.840.10008.3.1.1.1") + overrun) + b"1.2.840.10008.3.1.1.1"
    for number in range(contexts):
        abstract = struct.pack(">BxH", 0x30, 17) + b"1.2.840.10008.1.1"
        transfer = struct.pack(">BxH", 0x40, 17) + b"1.2.840.10008.1.2"
        body = bytes((2 * number + 1, 0, 0, 0)) + abstract + transfer
        variable += struct.pack(">BxH", 0x20, len(body)) + body
    user = struct.pack(">BxHI", 0x51, 4, 16384)
    variable += struct.pack(">BxH", 0x50, len(user)) + user
    body = struct.pack(">HH", 1, 0) + b"SWF_ENGINE".ljust(16) + calling.ljust(16) + bytes(32) + variable
    return struct.pack(">BxI", 0x01, len(body)) + body


@pytest.fixture
def engine(start_engine, tmp_path: Path) -> Iterator[EngineProcess]:
    config = tmp_path / "limits.yaml"
    config.write_text(f"dicom:\n  association_request_timeout: {REQUEST_TIMEOUT}\n"
                      f"  max_associations_per_peer: {PER_PEER}\n  network_timeout: 4\n")
    yield start_engine("--config", str(config))


def hold_under(engine: EngineProcess, hostile: list[socket.socket], probes: int = 3) -> None:
    """While the hostile connections stay open, the modality is served (several times, spread out)."""
    for _ in range(probes):
        assert_modality_served(engine)
        time.sleep(0.3)


def test_http_request_lines_get_one_abort_and_one_log_line_each(engine: EngineProcess) -> None:
    hostile = connect(engine, 40, b"GET /health HTTP/1.1\r\nHost: pacs\r\n\r\n")
    try:
        hold_under(engine, hostile)
        for sock in hostile:
            assert answer(sock, 3).startswith(bytes((ABORT,)))      # A-ABORT, then the engine closed
    finally:
        close_all(hostile)
    time.sleep(0.3)
    log = engine.log()
    assert "Unknown PDU type" not in log
    assert log.count("is not an A-ASSOCIATE-RQ") == 40
    assert cpu_busy(engine) < 0.2


def hostile_hosts(count: int) -> list[str]:
    """Loopback addresses other than the modality's, for inputs that need more than one peer's share."""
    return [f"127.0.1.{number}" for number in range(1, count + 1)]


def test_idle_tcp_connections_take_no_association_slot_and_are_dropped(engine: EngineProcess) -> None:
    hostile = []
    try:
        hostile = connect(engine, 50)                     # one host: beyond its share closed at once
        for host in hostile_hosts(12):                    # 96 more waiting, from other hosts
            hostile += connect(engine, PER_PEER, source=host)
        hold_under(engine, hostile)
        started = time.monotonic()
        for sock in hostile:         # beyond the per-peer cap closed at once, the others after the timeout
            assert answer(sock, REQUEST_TIMEOUT + 5) == b""
        assert time.monotonic() - started < REQUEST_TIMEOUT + 3
        assert_modality_served(engine)
    finally:
        close_all(hostile)
    assert "connections refused" in engine.log()


def test_incomplete_headers_do_not_spin(engine: EngineProcess) -> None:
    hostile = connect(engine, 100, bytes.fromhex("010000000064"))   # 8 wait, the others are closed at once
    for host in hostile_hosts(12):                                   # 96 more waiting, none polled
        hostile += connect(engine, PER_PEER, bytes.fromhex("010000000064"), source=host)
    try:
        assert_modality_served(engine)
        assert cpu_busy(engine, 1.0) < 0.3
    finally:
        close_all(hostile)
    assert cpu_busy(engine) < 0.2
    assert_modality_served(engine)


def test_item_lengths_that_overrun_the_pdu_are_aborted_and_leave_no_thread(engine: EngineProcess) -> None:
    threads_before = engine_status(engine, "Threads")
    for _ in range(50):
        hostile = connect(engine, PER_PEER, associate_rq(overrun=5000))
        try:
            for sock in hostile:
                assert answer(sock, 3).startswith(bytes((ABORT,)))
        finally:
            close_all(hostile)
    assert_modality_served(engine)
    time.sleep(0.5)
    assert engine_status(engine, "Threads") <= threads_before + 2
    assert cpu_busy(engine) < 0.2


def test_a_4_gb_pdu_length_is_aborted_before_it_is_allocated(engine: EngineProcess) -> None:
    request = associate_rq()
    hostile = connect(engine, 2, bytes.fromhex("0100FFFFFFFF") + request[6:])
    try:
        for sock in hostile:
            assert answer(sock, 3).startswith(bytes((ABORT,)))
        assert_modality_served(engine)
    finally:
        close_all(hostile)


@pytest.mark.parametrize("sop_class", [Verification, ModalityWorklistInformationFind],
                         ids=["direct path", "pynetdicom path"])
def test_a_4_gb_pdu_on_an_established_association_is_aborted(engine: EngineProcess, sop_class: str) -> None:
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    sock = assoc.dul.socket.socket
    sock.sendall(bytes.fromhex("0400FFFFFFFF") + bytes(1000))
    deadline = time.monotonic() + 3
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted
    assert_modality_served(engine)


def test_one_host_cannot_take_every_association_and_idle_ones_are_released(engine: EngineProcess) -> None:
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = 5
    held = [ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE") for _ in range(36)]
    try:
        established = [assoc for assoc in held if assoc.is_established]
        assert len(established) == PER_PEER        # the others were closed at connect
        assert "connections refused from 127.0.0.1" in engine.log()
        hold_under(engine, [])
        deadline = time.monotonic() + 4 + 3           # dicom.network_timeout: 4
        while any(assoc.is_established for assoc in established) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(assoc.is_established for assoc in established), "idle associations were kept"
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.abort()
    assert cpu_busy(engine) < 0.2


def test_slots_go_to_whole_requests_only_and_the_rest_are_rejected(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "slots.yaml"
    config.write_text("dicom:\n  max_associations: 4\n  association_request_timeout: 5\n")
    engine = start_engine("--config", str(config))
    waiting = []
    for host in hostile_hosts(3):                  # 30 connections that never associate: no slot taken
        waiting += connect(engine, 10, source=host)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityWorklistInformationFind)
    try:
        held = [ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE", bind_address=(host, 0))
                for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")]
        assert [assoc.is_established for assoc in held] == [True] * 4 + [False]
        assert held[4].is_rejected                 # A-ASSOCIATE-RJ: local limit exceeded
        held[0].release()
        time.sleep(0.3)
        again = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE", bind_address=("127.0.0.6", 0))
        assert again.is_established                # the slot came back when the association ended
        again.release()
    finally:
        close_all(waiting)
        for assoc in held:
            if assoc.is_established:
                assoc.abort()
    assert "refused: 4 associations open" in engine.log()


def test_the_engine_stops_promptly_with_associations_and_connections_open(engine: EngineProcess) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityWorklistInformationFind)
    worklist = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    ae_direct = AE(ae_title="MODALITY")
    ae_direct.add_requested_context(Verification)
    direct = ae_direct.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    waiting = connect(engine, 3, bytes.fromhex("0100"))
    try:
        assert worklist.is_established and direct.is_established
        started = time.monotonic()
        engine.process.terminate()
        engine.process.wait(8)
        assert time.monotonic() - started < 5
        time.sleep(0.2)
        assert worklist.is_aborted and direct.is_aborted
    finally:
        close_all(waiting)
