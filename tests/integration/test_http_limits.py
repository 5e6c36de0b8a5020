"""Request bodies are refused from the headers (issue 11 item 9): twisted.web would spool any body to a
temporary file and wait for all of it.  While each input runs, an ORM on another connection is ACKed."""
from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.hostile import AckProbe


def answer(sock: socket.socket, timeout: float = 3) -> tuple[bytes, float]:
    """The response head the engine sent (up to the blank line) and how long it took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    response = b""
    try:
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return response.partition(b"\r\n\r\n")[0], time.monotonic() - started


def request(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(head.encode())
    return sock


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(start_engine) -> None:
    engine = start_engine()
    with AckProbe(engine.mllp_port) as probe:
        for length in (10**20, 10**9, 65537):
            with request(engine.http_port, f"POST /health HTTP/1.1\r\nHost: e\r\nContent-Length: {length}\r\n\r\n") as sock:
                head, seconds = answer(sock)
                assert head.startswith(b"HTTP/1.1 413 "), (length, head)
                assert seconds < 1, (length, seconds)
    probe.assert_all_acked_within(1.0, at_least=1)
    assert "over http.max_body_bytes (65536): answered 413" in engine.log()


def test_a_chunked_body_is_refused_once_it_passes_the_limit(start_engine) -> None:
    engine = start_engine()
    chunk = b"P" * 16384
    with request(engine.http_port, "POST /health HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n") as sock:
        try:
            for _ in range(8):                        # 128 KiB, and no last chunk
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass                                      # the engine closed once the limit was passed
        head, _ = answer(sock)
    assert head.startswith(b"HTTP/1.1 413 "), head


def test_requests_within_the_limit_are_served(start_engine, tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("http: {max_body_bytes: 100}\n")
    engine = start_engine("--config", str(path))
    with request(engine.http_port, "GET /health HTTP/1.1\r\nHost: e\r\nContent-Length: 100\r\n\r\n" + "x" * 100) as sock:
        assert answer(sock)[0].startswith(b"HTTP/1.1 200 ")
    with request(engine.http_port, "GET /health HTTP/1.1\r\nHost: e\r\nContent-Length: 101\r\n\r\n") as sock:
        assert answer(sock)[0].startswith(b"HTTP/1.1 413 ")


def test_a_silent_http_connection_is_closed(start_engine, tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("http: {idle_timeout: 1}\n")
    engine = start_engine("--config", str(path))
    with socket.create_connection(("127.0.0.1", engine.http_port), timeout=5) as sock:
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 4
