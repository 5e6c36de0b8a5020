"""A small MLLP receiver for tests: stands in for a RIS or an archive, records what it gets, answers
with the ACK code the test chooses (AA by default).  Real sockets on 127.0.0.1."""
from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from typing import Callable

from engine.hl7.message import Message, decode_bytes


class Receiver:
    def __init__(self, port: int = 0, answer: Callable[[Message], str] = lambda message: "AA",
                 tls: ssl.SSLContext | None = None):
        self.messages: list[Message] = []
        self.tls_refused: list[str] = []   # TLS handshakes that failed (with ``tls``: a TLS receiver)
        self.client_certificates: list[dict] = []
        self.raw: list[bytes] = []
        self.attempts: list[str] = []  # control IDs of every message received, accepted or not
        self.answer = answer
        self.lock = threading.Lock()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls is not None:
                    try:
                        self.request = tls.wrap_socket(self.request, server_side=True)
                    except (ssl.SSLError, OSError) as exc:
                        with receiver.lock:
                            receiver.tls_refused.append(str(exc))
                        return
                    with receiver.lock:
                        receiver.client_certificates.append(self.request.getpeercert() or {})
                buffer = b""
                while True:
                    try:
                        chunk = self.request.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\x1c\r" in buffer:
                        frame, buffer = buffer.split(b"\x1c\r", 1)
                        raw = frame[frame.find(b"\x0b") + 1:]
                        text, codec = decode_bytes(raw, "latin-1")
                        message = Message(text, codec)
                        code = receiver.answer(message)
                        with receiver.lock:
                            receiver.attempts.append(message.control_id)
                            if code == "AA":
                                receiver.messages.append(message)
                                receiver.raw.append(raw)
                        if code == "silent":
                            continue
                        ack = f"MSH|^~\\&|RIS|H|SWF|R|20250101||ACK|A{time.time_ns()}|P|2.3.1\rMSA|{code}|{message.control_id}\r"
                        self.request.sendall(b"\x0b" + ack.encode() + b"\x1c\r")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_for(self, count: int, timeout: float = 15) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"received {len(self.messages)} of {count} messages in {timeout} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
