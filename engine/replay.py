"""``swf replay``: send the messages of a file over MLLP, one at a time, and tally the ACKs."""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .hl7.message import HL7ParseError, Message, decode_bytes
from .hl7.mllp import END_BLOCK, START_BLOCK, frame

_MSH_START = re.compile(rb"^MSH[^A-Za-z0-9\r\n]")


def split_messages(data: bytes) -> list[bytes]:
    """Messages of a file: MLLP frames, or text with CR / LF / CRLF segment ends and blank lines between."""
    if START_BLOCK in data:
        messages = []
        for chunk in data.split(START_BLOCK)[1:]:
            body = chunk.split(b"\x1c", 1)[0]
            body = b"\r".join(line for line in re.split(rb"\r\n|\n|\r", body) if line.strip())
            if body:
                messages.append(body)
        return messages
    messages: list[list[bytes]] = []
    current: list[bytes] | None = None
    for line in re.split(rb"\r\n|\n|\r", data):
        if not line.strip():
            current = None
            continue
        if _MSH_START.match(line) or current is None:
            current = []
            messages.append(current)
        current.append(line)
    return [b"\r".join(segments) for segments in messages if segments]


@dataclass
class ReplayResult:
    sent: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    no_answer: list[tuple[str, str]] = field(default_factory=list)  # (control id, why): sent, no ACK came back
    not_accepted: list[tuple[str, str, str]] = field(default_factory=list)  # (control id, code, text)
    not_connected: str = ""  # why no connection could be made ("connection refused to HOST:PORT")
    unsent: int = 0          # messages left unsent because of that

    def count(self, code: str) -> int:
        return self.codes.get(code, 0)

    @property
    def ok(self) -> bool:
        return not self.no_answer and not self.not_accepted and not self.not_connected


def control_id_of(raw: bytes) -> str:
    try:
        text, codec = decode_bytes(raw)
        return Message(text, codec).control_id or "(no MSH-10)"
    except HL7ParseError:
        return "(no MSH)"


class MLLPClient:
    """A blocking MLLP client: one message, then its ACK (the way most senders work)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, message: bytes) -> bytes:
        """Send one message and return the ACK's bytes; raises OSError on timeout or disconnect."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(frame(message))
        deadline = time.monotonic() + self.timeout
        while END_BLOCK not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the receiver")
            self.buffer += chunk
        answer, self.buffer = self.buffer.split(END_BLOCK, 1)
        return answer[answer.find(START_BLOCK) + 1:] if START_BLOCK in answer else answer


def connect_failure(exc: OSError, host: str, port: int, timeout: float) -> str:
    """Why a connection to the receiver could not be made, in the words an operator searches for."""
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused to {host}:{port}"
    if isinstance(exc, TimeoutError):
        return f"no connection to {host}:{port} within {timeout:g} s (connect timed out)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}: {exc.strerror or exc}"
    return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def replay(messages: Iterable[bytes], host: str, port: int, timeout: float = 30.0,
           on_answer: Callable[[], None] | None = None) -> ReplayResult:
    """Send each message and wait for its ACK.  When no connection can be made (nothing listens, or the
    receiver went away and does not come back) the rest is not sent: one reason, not one per message."""
    result = ReplayResult()
    client = MLLPClient(host, port, timeout)
    pending = list(messages)
    try:
        for index, raw in enumerate(pending):
            control_id = control_id_of(raw)
            if client.sock is None:
                try:
                    client.connect()
                except OSError as exc:
                    result.not_connected = connect_failure(exc, host, port, timeout)
                    result.unsent = len(pending) - index
                    break
            result.sent += 1
            try:
                answer = client.exchange(raw)
            except TimeoutError:
                result.no_answer.append((control_id, f"connected, no ACK within {timeout:g} s"))
                client.close()
                continue
            except OSError as exc:
                result.no_answer.append((control_id, f"connected, no ACK: {exc.strerror or exc}"))
                client.close()
                continue
            finally:
                if on_answer is not None:
                    on_answer()
            try:
                text, codec = decode_bytes(answer)
                ack = Message(text, codec)
                code = ack.get("MSA-1")
                reason = ack.get("ERR-8") or ack.get("MSA-3") or ack.get("ERR-1.4.2")
            except HL7ParseError:
                code, reason = "?", "unreadable ACK"
            result.codes[code] = result.codes.get(code, 0) + 1
            if code not in ("AA", "CA"):
                result.not_accepted.append((control_id, code, reason))
    finally:
        client.close()
    return result


def read_messages(path: Path) -> list[bytes]:
    return split_messages(path.read_bytes())
