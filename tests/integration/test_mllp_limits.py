"""The MLLP listener's caps over the wire (issue 11 item 5): connections per peer and in total, bytes held
for unfinished frames, and a time limit for a frame that has started but not ended.  While each hostile
input runs, an ORM on a connection of its own is ACKed within 1 s and the engine's peak RSS stays bounded."""
from __future__ import annotations

import json
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.hostile import END, START, AckProbe, memory_mb, mllp_connect, msa, orm, read_frame, read_frames

PARTIAL_MIB = START + orm("PARTIAL") + b"\rNTE|1||" + b"P" * 1_040_000    # 1 MiB, no end block


def config(tmp_path: Path, **mllp: object) -> str:
    path = tmp_path / "engine.yaml"
    path.write_text("mllp:\n" + "".join(f"  {key}: {value}\n" for key, value in mllp.items()))
    return str(path)


def health(engine) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{engine.http_port}/health", timeout=5) as response:
        return json.loads(response.read())


def wait_for_no_connection(engine, timeout: float = 5) -> None:
    """Until the engine has seen the start-up check of its port (a connection) close."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not health(engine)["mllp"]["connections"]:
                return
        except OSError:       # the HTTP listener opens just after the MLLP one
            pass
        time.sleep(0.05)
    raise TimeoutError("the engine still counts an MLLP connection")


def closed_at_once(sock: socket.socket, within: float = 2.0) -> bool:
    """Whether the engine closed ``sock`` (EOF or reset) within ``within`` seconds without a byte."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connections_over_the_per_peer_cap_are_refused_counted_and_logged_once(start_engine, tmp_path) -> None:
    engine = start_engine("--config", config(tmp_path, max_connections_per_peer=3))
    # From 127.0.0.3: the start-up check of the port (from 127.0.0.1) may still count as open.
    kept = [mllp_connect(engine.mllp_port, source="127.0.0.3") for _ in range(3)]
    refused = [mllp_connect(engine.mllp_port, source="127.0.0.3") for _ in range(10)]
    try:
        assert all(closed_at_once(sock) for sock in refused)
        for number, sock in enumerate(kept):          # the first three work as before
            sock.sendall(START + orm(f"KEPT{number}") + END)
            assert msa(read_frame(sock))[1:3] == ["AA", f"KEPT{number}"]
        with mllp_connect(engine.mllp_port, source="127.0.0.2") as other:   # another host is not affected
            other.sendall(START + orm("OTHERHOST") + END)
            assert msa(read_frame(other))[1] == "AA"
    finally:
        for sock in kept + refused:
            sock.close()
    assert health(engine)["mllp"]["refused"] == 10
    lines = [line for line in engine.log().splitlines() if "mllp.max_connections_per_peer" in line]
    assert len(lines) == 1 and "127.0.0.3" in lines[0], lines
    assert "security: connection-refused from 127.0.0.3:" in lines[0]   # one audited event, not ten


def test_connections_over_the_total_cap_are_refused(start_engine, tmp_path) -> None:
    engine = start_engine("--config", config(tmp_path, max_connections=4))
    wait_for_no_connection(engine)
    with AckProbe(engine.mllp_port) as probe:         # one of the four, opened before the others
        others = [mllp_connect(engine.mllp_port, source=f"127.0.0.{10 + n}") for n in range(8)]
        try:
            results = [closed_at_once(sock, 1.0) for sock in others]
            assert results == [False] * 3 + [True] * 5
            time.sleep(1)
        finally:
            for sock in others:
                sock.close()
    probe.assert_all_acked_within(1.0)
    assert "(mllp.max_connections)" in engine.log()


def closed_while_trickling(sock: socket.socket, limit: float) -> float | None:
    """Send one byte every 0.1 s; the seconds until the engine closed the connection (None: not within ``limit``)."""
    started = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - started < limit:
        try:
            sock.sendall(b"P")
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_a_frame_that_never_ends_is_dropped_although_its_bytes_keep_coming(start_engine, tmp_path) -> None:
    engine = start_engine("--config", config(tmp_path, frame_timeout=1, idle_timeout=300))
    with mllp_connect(engine.mllp_port) as sock:
        sock.sendall(START + orm("SLOW")[:40])
        closed_after = closed_while_trickling(sock, limit=6)
    assert closed_after is not None and closed_after < 3, closed_after
    assert "not ended within 1 s of its start block" in engine.log()
    with mllp_connect(engine.mllp_port) as sock:      # a frame that ends in time is untouched
        sock.sendall(START + orm("INTIME")[:40])
        time.sleep(0.5)
        sock.sendall(orm("INTIME")[40:] + END)
        assert msa(read_frame(sock))[1:3] == ["AA", "INTIME"]


def test_a_thousand_partial_one_mib_frames_stay_under_300_mb(start_engine) -> None:
    """1,000 connections from 40 loopback addresses, each sending a 1 MiB frame without its end block."""
    engine = start_engine()
    before = memory_mb(engine.process.pid)
    hostile: list[socket.socket] = []
    started = time.monotonic()
    with AckProbe(engine.mllp_port) as probe:
        try:
            for number in range(1000):
                try:
                    sock = mllp_connect(engine.mllp_port, source=f"127.0.1.{10 + number % 40}", timeout=2)
                    hostile.append(sock)
                    sock.sendall(PARTIAL_MIB)
                except OSError:
                    pass                             # refused or dropped by a cap: what is expected
            time.sleep(1)
        finally:
            after = memory_mb(engine.process.pid)
            for sock in hostile:
                sock.close()
    elapsed = time.monotonic() - started
    print(f"RSS before {before['VmRSS']:.0f} MB, peak {after['VmHWM']:.0f} MB, {elapsed:.1f} s")
    probe.assert_all_acked_within(1.0)
    assert after["VmHWM"] < 300, after
    figures = health(engine)["mllp"]
    assert figures["refused"] > 0 and figures["buffered_bytes"] < 64 * 1024 * 1024
    assert "mllp.max_buffered_bytes" in engine.log()


def test_pipelined_whole_messages_wait_in_tcp_not_in_memory(start_engine) -> None:
    """16 connections each pipelining eight 1 MB messages without reading an ACK: reading pauses while
    mllp.max_unanswered_bytes wait for the journal, so memory stays bounded and the probe is served."""
    engine = start_engine()
    messages = {n: b"".join(START + orm(f"W{n}-{i}") + b"\rNTE|1||" + b"P" * 1_000_000 + END for i in range(8))
                for n in range(16)}
    senders = [mllp_connect(engine.mllp_port, source=f"127.0.2.{n + 1}", timeout=30) for n in messages]
    with AckProbe(engine.mllp_port) as probe, ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda n: senders[n].sendall(messages[n]), messages))
        acks = list(pool.map(lambda n: [msa(ack)[1] for ack in read_frames(senders[n], 8)], messages))
    peak = memory_mb(engine.process.pid)["VmHWM"]
    for sock in senders:
        sock.close()
    print(f"peak RSS {peak:.0f} MB; slowest probe ACK {max(d or 99 for d in probe.delays):.2f} s")
    assert acks == [["AA"] * 8] * 16
    assert peak < 300
    probe.assert_all_acked_within(1.0)
