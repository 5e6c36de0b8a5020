"""The health page over HTTP (issue 11 item 8, issue 10 item 2): answered from a snapshot kept off the
reactor thread, so polling it never delays an HL7 ACK; unknown paths answer 404."""
from __future__ import annotations

import json
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.hostile import END, START, AckProbe, mllp_connect, msa, orm, read_frame


def http_get(port: int, path: str, timeout: float = 20) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: engine\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def health(port: int) -> dict:
    status, body = http_get(port, "/health")
    assert status == 200, (status, body)
    return json.loads(body)


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    return str(path)


def test_only_the_health_path_answers(start_engine) -> None:
    engine = start_engine()
    assert health(engine.http_port)["status"] == "ok"
    for path in ("/x", "/healthz", "/health/x", "/api/v1/nothing"):
        status, _ = http_get(engine.http_port, path)
        assert status == 404, path


def test_health_counts_scheduled_steps_without_a_station(start_engine, tmp_path) -> None:
    engine = start_engine("--config", config(tmp_path, "http: {health_max_age: 0.1}\n"))
    assert health(engine.http_port)["steps_without_station"] == 0
    with mllp_connect(engine.mllp_port) as sock:
        for cid, modality in (("ROOMCT", "CT"), ("NOROOM1", "XA"), ("NOROOM2", "XA")):
            sock.sendall(START + orm(cid, modality) + END)
            assert msa(read_frame(sock))[1:3] == ["AA", cid]
    deadline = time.monotonic() + 5
    while (body := health(engine.http_port))["steps_without_station"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert body["steps_without_station"] == 2 and body["journal"] == {"applied": 3}, body


def fill_journal(data_dir: Path, rows: int) -> None:
    """Journal rows written straight into the (stopped) engine's SQLite file."""
    with sqlite3.connect(data_dir / "swf.sqlite") as db:
        db.executemany("INSERT INTO journal (received_at, control_id, payload_hash, raw, status) VALUES (?, ?, ?, ?, ?)",
                       ((f"2026-01-01T00:00:{n % 60:02d}", f"FILL{n}", f"{n:064x}", b"MSH|^~\\&|",
                         ("applied", "rejected", "duplicate")[n % 3]) for n in range(rows)))


def test_a_thousand_parallel_health_requests_do_not_delay_acks(start_engine) -> None:
    first = start_engine()
    first.process.terminate()
    first.process.wait(10)
    fill_journal(first.data_dir, 60_000)
    engine = start_engine(data_dir=first.data_dir)
    started = time.monotonic()
    with AckProbe(engine.mllp_port, interval=0.02) as probe, ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: http_get(engine.http_port, "/health")[0], range(1000)))
    elapsed = time.monotonic() - started
    print(f"1000 GET /health in {elapsed:.1f} s; slowest probe ACK {max(d or 99 for d in probe.delays):.3f} s")
    assert statuses == [200] * 1000
    probe.assert_all_acked_within(1.0)
    assert health(engine.http_port)["journal"]["applied"] >= 20_000
