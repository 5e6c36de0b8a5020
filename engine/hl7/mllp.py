"""MLLP over Twisted (SWF.md 8.1): framing, the inbound server protocol and its factory.

The protocol only frames bytes and writes ACKs; what a message means is decided by the ``handler``
(``Ingestor`` on the store's writer thread), whose result arrives as a Deferred after the commit.
ACKs go out in the order the messages arrived, even when a sender pipelines several frames.
"""
from __future__ import annotations

import logging
from typing import Callable

from twisted.internet import defer, protocol
from twisted.protocols.policies import TimeoutMixin

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
MAX_PIPELINED = 64          # frames in flight per connection before we stop reading from it
OVERSIZE_HEAD_BYTES = 4096  # what is kept of an oversized frame, to read its MSH for the AR


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


class MLLPDecoder:
    """Splits a byte stream into MLLP frames; tolerant of splits, bursts and junk between frames."""

    def __init__(self, max_message_bytes: int, on_frame: Callable[[bytes], None],
                 on_oversize: Callable[[bytes], None], on_junk: Callable[[bytes], None]):
        self.max_message_bytes = max_message_bytes
        self.on_frame = on_frame
        self.on_oversize = on_oversize
        self.on_junk = on_junk
        self._buffer = bytearray()
        self._in_frame = False
        self._oversize_head: bytes | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            if not self._in_frame:
                start = self._buffer.find(START_BLOCK)
                if start < 0:
                    self.on_junk(bytes(self._buffer))
                    self._buffer.clear()
                    return
                if start > 0:
                    junk = bytes(self._buffer[:start])
                    if junk.strip(b"\r\n"):
                        self.on_junk(junk)
                del self._buffer[:start + 1]
                self._in_frame = True
                self._oversize_head = None
            end = self._buffer.find(END_BLOCK)
            restart = self._buffer.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end):
                # A new start block before the end block: the partial frame is discarded.
                self.on_junk(bytes(self._buffer[:restart]))
                del self._buffer[:restart]
                self._in_frame = False
                continue
            if end < 0:
                if self._oversize_head is not None:
                    keep = len(END_BLOCK) - 1  # an end block may be split over reads
                    if len(self._buffer) > keep:
                        del self._buffer[:len(self._buffer) - keep]
                elif len(self._buffer) > self.max_message_bytes:
                    self._oversize_head = bytes(self._buffer[:OVERSIZE_HEAD_BYTES])
                    del self._buffer[:-1]
                return
            message = bytes(self._buffer[:end])
            del self._buffer[:end + len(END_BLOCK)]
            self._in_frame = False
            if self._oversize_head is not None or len(message) > self.max_message_bytes:
                head, self._oversize_head = self._oversize_head or message[:OVERSIZE_HEAD_BYTES], None
                self.on_oversize(head)
            else:
                self.on_frame(message)


class MLLPServerProtocol(protocol.Protocol, TimeoutMixin):
    factory: "MLLPServerFactory"

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.decoder = MLLPDecoder(self.factory.max_message_bytes, self._frame, self._oversize, self._junk)
        self._next_sequence = 0
        self._next_to_send = 0
        self._ready: dict[int, bytes | None] = {}
        self._paused = False
        self.setTimeout(self.factory.idle_timeout)
        self.factory.connections += 1

    def connectionLost(self, reason: object = None) -> None:
        self.setTimeout(None)
        self.factory.connections -= 1

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.decoder.feed(data)

    def timeoutConnection(self) -> None:
        log.info("MLLP connection from %s idle for %.0f s: closed", self.peer, self.factory.idle_timeout)
        self.transport.loseConnection()

    # -- frames -------------------------------------------------------------------------------
    def _frame(self, message: bytes) -> None:
        self._dispatch(self.factory.handle(message, self.peer))

    def _oversize(self, head: bytes) -> None:
        log.warning("MLLP frame from %s exceeds %d bytes: answered AR", self.peer, self.factory.max_message_bytes)
        self._dispatch(self.factory.handle_oversize(head, self.peer))

    def _junk(self, data: bytes) -> None:
        log.warning("MLLP: %d bytes outside a frame from %s discarded: %s", len(data), self.peer, data[:32].hex())

    def _dispatch(self, result: defer.Deferred) -> None:
        sequence = self._next_sequence
        self._next_sequence += 1
        if self._next_sequence - self._next_to_send >= MAX_PIPELINED and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        result.addCallbacks(lambda ack: self._answer(sequence, ack), lambda failure: self._failed(sequence, failure))

    def _answer(self, sequence: int, ack: bytes | None) -> None:
        self._ready[sequence] = ack
        while self._next_to_send in self._ready:
            ack_bytes = self._ready.pop(self._next_to_send)
            self._next_to_send += 1
            if ack_bytes is not None and self.transport is not None:
                self.transport.write(frame(ack_bytes))
        if self._paused and self._next_sequence - self._next_to_send < MAX_PIPELINED // 2:
            self._paused = False
            self.transport.resumeProducing()

    def _failed(self, sequence: int, failure: object) -> None:
        # The journal could not be written: no ACK, close, the sender resends (SWF.md 8.2).
        log.error("MLLP message from %s not stored (%s): connection closed without ACK", self.peer,
                  getattr(failure, "getErrorMessage", lambda: failure)())
        self.transport.loseConnection()


class MLLPServerFactory(protocol.Factory):
    protocol = MLLPServerProtocol

    def __init__(self, handle: Callable[[bytes, str], defer.Deferred],
                 handle_oversize: Callable[[bytes, str], defer.Deferred],
                 max_message_bytes: int = 1024 * 1024, idle_timeout: float = 300.0):
        self.handle = handle
        self.handle_oversize = handle_oversize
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.connections = 0
