"""MLLP framing and durability against the real engine process over 127.0.0.1 (SWF.md 8.1, 8.2)."""
from __future__ import annotations

import signal
import socket
import threading
import time

from tests.conftest import run_swf

START, END = b"\x0b", b"\x1c\r"


def order(cid: str, placer: str | None = None) -> bytes:
    placer = placer or f"P-{cid}"
    return (f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{cid}|P|2.3.1\r"
            f"PID|1||PAT-{cid}^^^GENHOSP^MR||DOE^JANE\r"
            f"ORC|NW|{placer}^HIS|F-{placer}^RIS||SC||1^once^^20250304100000^^R\r"
            f"OBR|1|{placer}^HIS|F-{placer}^RIS|CT1^CT head^99RAD||||||||||||||A-{cid}|RP-{cid}|S-{cid}||||CT").encode()


def connect(engine) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", engine.mllp_port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_acks(sock: socket.socket, count: int) -> list[bytes]:
    buffer = b""
    while buffer.count(END) < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {buffer.count(END)} of {count} ACKs"
        buffer += chunk
    return [frame.lstrip(START) for frame in buffer.split(END) if frame]


def msa(ack: bytes) -> list[str]:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment.decode().split("|")
    raise AssertionError(f"no MSA in {ack!r}")


def test_pipelined_frames_in_one_write_are_acked_in_order(start_engine) -> None:
    engine = start_engine()
    with connect(engine) as sock:
        sock.sendall(b"".join(START + order(f"PIPE{i}") + END for i in range(30)))
        acks = read_acks(sock, 30)
    assert [msa(a)[1:3] for a in acks] == [["AA", f"PIPE{i}"] for i in range(30)]


def test_frame_split_into_single_bytes_and_junk_between_frames(start_engine) -> None:
    engine = start_engine()
    with connect(engine) as sock:
        data = b"garbage before\r\n" + START + order("SPLIT1") + END + b"noise" + START + order("SPLIT2") + END
        for byte in data:
            sock.send(bytes([byte]))
        acks = read_acks(sock, 2)
    assert [msa(a)[1:3] for a in acks] == [["AA", "SPLIT1"], ["AA", "SPLIT2"]]
    assert "outside a frame" in engine.log()


def test_new_start_block_discards_the_partial_frame(start_engine) -> None:
    engine = start_engine()
    with connect(engine) as sock:
        sock.sendall(START + order("HALF")[:60] + START + order("WHOLE") + END)
        [ack] = read_acks(sock, 1)
    assert msa(ack)[1:3] == ["AA", "WHOLE"]


def test_oversized_frame_gets_ar_and_the_connection_stays_usable(start_engine) -> None:
    engine = start_engine("--max-message-bytes", "2000")
    big = order("BIG1") + b"\rNTE|1||" + b"x" * 5000
    with connect(engine) as sock:
        sock.sendall(START + big + END + START + order("AFTER") + END)
        acks = read_acks(sock, 2)
    assert msa(acks[0])[1:3] == ["AR", "BIG1"] and b"too large" in acks[0]
    assert msa(acks[1])[1:3] == ["AA", "AFTER"]
    journal = run_swf("journal", "--data-dir", str(engine.data_dir), "--status", "rejected").stdout
    assert "BIG1" in journal


def test_malformed_message_gets_answered_and_connection_goes_on(start_engine) -> None:
    engine = start_engine()
    with connect(engine) as sock:
        sock.sendall(START + b"PID|1||X" + END + START + order("OK1") + END)
        acks = read_acks(sock, 2)
    assert msa(acks[0])[1] == "AR" and b"ERR|" in acks[0]
    assert msa(acks[1])[1:3] == ["AA", "OK1"]


def test_idle_connections_are_closed(start_engine) -> None:
    engine = start_engine("--idle-timeout", "0.5")
    with connect(engine) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert time.monotonic() - started < 5
    assert "idle" in engine.log()


def test_many_concurrent_connections(start_engine) -> None:
    engine = start_engine()
    failures: list[str] = []

    def client(number: int) -> None:
        try:
            with connect(engine) as sock:
                for i in range(10):
                    cid = f"C{number}-{i}"
                    sock.sendall(START + order(cid) + END)
                    code, control = msa(read_acks(sock, 1)[0])[1:3]
                    if (code, control) != ("AA", cid):
                        failures.append(f"{cid}: {code} {control}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(f"client {number}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    listing = run_swf("journal", "--data-dir", str(engine.data_dir), "--status", "applied", "--limit", "1000").stdout
    assert len([line for line in listing.splitlines() if line.startswith("#")]) == 240


def test_every_acked_message_survives_a_kill(start_engine) -> None:
    engine = start_engine()
    with connect(engine) as sock:
        sock.sendall(b"".join(START + order(f"K{i}") + END for i in range(100)))
        acks = read_acks(sock, 100)
    assert all(msa(a)[1] == "AA" for a in acks)
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait(10)
    restarted = start_engine(data_dir=engine.data_dir)
    listing = run_swf("orders", "--data-dir", str(restarted.data_dir), "--limit", "1000").stdout
    assert len(listing.strip().splitlines()) == 1 + 100
    with connect(restarted) as sock:  # a resend after the crash is recognised as a duplicate
        sock.sendall(START + order("K7") + END)
        [ack] = read_acks(sock, 1)
    assert msa(ack)[1:3] == ["AA", "K7"]
    duplicates = run_swf("journal", "--data-dir", str(restarted.data_dir), "--status", "duplicate").stdout
    assert [line.split()[4] for line in duplicates.splitlines() if line.startswith("#")] == ["duplicate"]
