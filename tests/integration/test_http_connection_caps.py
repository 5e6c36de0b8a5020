"""HTTP listener caps (issue 14, hostile input): connections per peer address and in total, a deadline for
a whole request (a trickling sender resets the idle timeout but not this), and header sizes; each refusal
is counted in /metrics and logged once per peer per minute, and other clients are still served."""
from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.conftest import EngineProcess


def configured(start_engine, tmp_path: Path, http: str) -> EngineProcess:
    config = tmp_path / "engine.yaml"
    config.write_text(f"http: {http}\n")
    return start_engine("--config", str(config))


def connect(engine: EngineProcess, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", engine.http_port), timeout=5, source_address=(source, 0))


def closed_at_once(sock: socket.socket) -> bool:
    """True when the engine closes the connection without an answer (within 2 s)."""
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def get(engine: EngineProcess, path: str, source: str = "127.0.0.2") -> bytes:
    with connect(engine, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def metric(engine: EngineProcess, name: str) -> float:
    for line in get(engine, "/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_connections_over_the_per_peer_cap_are_refused_counted_and_logged_once(start_engine, tmp_path) -> None:
    engine = configured(start_engine, tmp_path, "{max_connections_per_peer: 3}")
    connections = [connect(engine, "127.0.0.3") for _ in range(8)]
    assert sum(closed_at_once(sock) for sock in connections) == 5      # which ones: the order of accept
    assert get(engine, "/health").startswith(b"HTTP/1.1 200")          # another host is served
    assert metric(engine, "swf_http_connections_refused_total") == 5
    assert engine.log().count("HTTP connections open from 127.0.0.3 (http.max_connections_per_peer)") == 1
    for sock in connections:
        sock.close()


def test_connections_over_the_total_cap_are_refused(start_engine, tmp_path) -> None:
    engine = configured(start_engine, tmp_path, "{max_connections: 3}")
    time.sleep(0.5)                       # the fixture's probe connection is closed on the engine's side too
    connections = [connect(engine, f"127.0.0.{10 + n}") for n in range(4)]
    assert sum(closed_at_once(sock) for sock in connections) == 1
    for sock in connections:
        sock.close()
    time.sleep(0.3)
    assert get(engine, "/health").startswith(b"HTTP/1.1 200")          # served again once below the cap
    assert "HTTP connections open (http.max_connections): new connection from 127.0.0." in engine.log()


def test_a_trickling_sender_is_dropped_at_the_request_deadline(start_engine, tmp_path) -> None:
    """One byte every 0.4 s keeps resetting the 60 s idle timeout; the request deadline (2 s) still ends it."""
    engine = configured(start_engine, tmp_path, "{request_timeout: 2, idle_timeout: 60}")
    with connect(engine, "127.0.0.4") as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        started, dropped = time.monotonic(), False
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"X")
            except OSError:
                dropped = True
                break
            time.sleep(0.4)
        assert dropped or closed_at_once(sock)
    assert time.monotonic() - started < 5
    assert "HTTP connection from 127.0.0.4" in engine.log() and "(http.request_timeout)" in engine.log()
    assert get(engine, "/health").startswith(b"HTTP/1.1 200")


def test_a_slow_handler_is_not_cut_by_the_request_deadline(start_engine, tmp_path) -> None:
    """The deadline covers receiving the request only: a whole request is answered however long it takes
    to send it in pieces within the deadline."""
    engine = configured(start_engine, tmp_path, "{request_timeout: 3}")
    with connect(engine, "127.0.0.5") as sock:
        for part in (b"GET /health HTTP/1.1\r\n", b"Host: localhost\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(part)
            time.sleep(0.5)
        assert sock.recv(12) == b"HTTP/1.1 200"


def test_request_headers_over_the_caps_are_refused(start_engine) -> None:
    """twisted.web's caps, relied on: over 16 KiB of headers in total or 500 of them is answered 400; one
    line over 16 KiB closes the connection (twisted.web does not read further to answer it)."""
    engine = start_engine()
    for headers in (b"X-A: b\r\n" * 600, (b"X-A: " + b"b" * 1000 + b"\r\n") * 20):
        with connect(engine, "127.0.0.6") as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
            assert sock.recv(12) == b"HTTP/1.1 400"
    with connect(engine, "127.0.0.6") as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert closed_at_once(sock)
    assert get(engine, "/health").startswith(b"HTTP/1.1 200")
