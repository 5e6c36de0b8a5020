"""Helpers for tests that send hostile input to a running engine: a probe that keeps ORMs flowing on a
connection of its own (from another loopback address) and times each ACK, and the engine's memory."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

START, END = b"\x0b", b"\x1c\r"


def orm(cid: str, modality: str = "CT") -> bytes:
    return (f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{cid}|P|2.3.1\r"
            f"PID|1||PAT-{cid}^^^GENHOSP^MR||DOE^JANE\r"
            f"ORC|NW|P-{cid}^HIS|F-{cid}^RIS||SC||1^once^^20250304100000^^R\r"
            f"OBR|1|P-{cid}^HIS|F-{cid}^RIS|CT1^CT head^99RAD||||||||||||||A-{cid}|RP-{cid}|S-{cid}||||"
            f"{modality}").encode()


def mllp_connect(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A connection to the engine's MLLP port on 127.0.0.1 from ``source`` (any 127.x address)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_frame(sock: socket.socket) -> bytes:
    """One MLLP frame's content (for one request and its answer); ConnectionError when the peer closes first."""
    buffer = b""
    while END not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(buffer)} bytes")
        buffer += chunk
    return buffer.split(END, 1)[0].lstrip(START)


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` MLLP frames' contents (pipelined ACKs may arrive together in one read)."""
    buffer = b""
    while buffer.count(END) < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buffer.count(END)} of {count} frames")
        buffer += chunk
    return [part.lstrip(START) for part in buffer.split(END)[:count]]


def msa(ack: bytes) -> list[str]:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment.decode().split("|")
    raise AssertionError(f"no MSA in {ack!r}")


class AckProbe:
    """Sends an ORM every ``interval`` seconds on one connection opened at start and records how long each
    ACK took (None: no AA, or the connection failed).  Use as a context manager around the hostile input."""

    def __init__(self, port: int, source: str = "127.0.0.2", interval: float = 0.2, prefix: str = "PROBE"):
        self.port, self.source, self.interval, self.prefix = port, source, interval, prefix
        self.delays: list[float | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "AckProbe":
        self._sock = mllp_connect(self.port, self.source, timeout=5)
        self._sock.sendall(START + orm(f"{self.prefix}0") + END)   # connected and answered before the load
        assert msa(read_frame(self._sock))[1] == "AA"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _run(self) -> None:
        number = 1
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._sock.sendall(START + orm(f"{self.prefix}{number}") + END)
                ok = msa(read_frame(self._sock))[1] == "AA"
                self.delays.append(time.monotonic() - started if ok else None)
            except OSError:
                self.delays.append(None)
                return
            number += 1
            self._stop.wait(self.interval)

    def assert_all_acked_within(self, seconds: float, at_least: int = 3) -> None:
        assert len(self.delays) >= at_least, f"only {len(self.delays)} probe ORMs answered"
        slow = [d for d in self.delays if d is None or d > seconds]
        assert not slow, f"{len(slow)} of {len(self.delays)} probe ORMs not ACKed AA within {seconds} s: {slow[:5]}"


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values
