"""MLLP over Twisted (SWF.md 8.1): framing, the inbound server protocol and its factory.

The protocol only frames bytes and writes ACKs; what a message means is decided by the ``handler``
(``Ingestor`` on the store's writer thread), whose result arrives as a Deferred after the commit.
ACKs go out in the order the messages arrived, even when a sender pipelines several frames.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IAddress, IDelayedCall, IHandshakeListener
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from ..config import MllpConfig
from ..connection_caps import ConnectionCounts
from ..refusal_log import RefusalLog
from ..security_events import SecurityEvents
from ..tls.identity import certificate_names

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
MAX_PIPELINED = 64          # frames in flight per connection before we stop reading from it
OVERSIZE_HEAD_BYTES = 4096  # what is kept of an oversized frame, to read its MSH for the AR
REFUSAL_LOG_SECONDS = 60.0  # a refused host (or paused reading) is logged at most this often


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


class MLLPDecoder:
    """Splits a byte stream into MLLP frames; tolerant of splits, bursts and junk between frames.

    Each byte is searched once: a frame sent one byte at a time costs linear, not quadratic, time."""

    def __init__(self, max_message_bytes: int, on_frame: Callable[[bytes], None],
                 on_oversize: Callable[[bytes], None], on_junk: Callable[[bytes], None]):
        self.max_message_bytes = max_message_bytes
        self.on_frame = on_frame
        self.on_oversize = on_oversize
        self.on_junk = on_junk
        self.frames_started = 0   # tells a caller that a new frame began since it last looked
        self._buffer = bytearray()
        self._in_frame = False
        self._scanned = 0         # bytes of the frame in progress already searched for block markers
        self._oversize_head: bytes | None = None

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress."""
        return len(self._buffer)

    def clear(self) -> None:
        self._buffer = bytearray()
        self._in_frame = False

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
                self._scanned = 0
                self._oversize_head = None
                self.frames_started += 1
            end = self._buffer.find(END_BLOCK, self._scanned)
            restart = self._buffer.find(START_BLOCK, self._scanned, end if end >= 0 else len(self._buffer))
            if restart >= 0:
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
                elif len(self._buffer) - self._buffer.endswith(END_BLOCK[:1]) > self.max_message_bytes:
                    # (a trailing 0x1C may be the first half of the end block: a frame of exactly the
                    # limit whose end block is split over two reads is not oversized; found by make fuzz)
                    self._oversize_head = bytes(self._buffer[:OVERSIZE_HEAD_BYTES])
                    del self._buffer[:-1]
                self._scanned = max(0, len(self._buffer) - (len(END_BLOCK) - 1))
                return
            message = bytes(self._buffer[:end])
            del self._buffer[:end + len(END_BLOCK)]
            self._in_frame = False
            if self._oversize_head is not None or len(message) > self.max_message_bytes:
                head, self._oversize_head = self._oversize_head or message[:OVERSIZE_HEAD_BYTES], None
                self.on_oversize(head)
            else:
                self.on_frame(message)


@implementer(IHandshakeListener)
class MLLPServerProtocol(protocol.Protocol, TimeoutMixin):
    """One MLLP connection, plain or inside TLS (``engine/tls/listener.py``); over TLS, the names of the
    client certificate go with each message so that ``mllp.senders`` can be checked."""

    factory: "MLLPServerFactory"
    presented: tuple[str, ...] = ()   # the client certificate's names, once the TLS handshake is done

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.host = str(getattr(peer, "host", "?"))
        self.peer = f"{self.host}:{getattr(peer, 'port', '?')}"
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.decoder = MLLPDecoder(self.factory.max_message_bytes, self._frame, self._oversize, self._junk)
        self._next_sequence = 0
        self._next_to_send = 0
        self._ready: dict[int, bytes | None] = {}
        self._pipeline_full = False   # MAX_PIPELINED frames unanswered: stop reading until half are
        self.throttled = False        # the factory holds too many unanswered bytes: stop reading
        self._reading_paused = False
        self._closed = False
        self._frame_timer: IDelayedCall | None = None
        self.setTimeout(self.factory.idle_timeout)
        self.factory.opened(self.host)

    def handshakeCompleted(self) -> None:
        certificate = self.transport.getPeerCertificate()
        if certificate is not None:
            self.presented = certificate_names(certificate.to_cryptography())
            log.debug("MLLP TLS connection from %s presents %s", self.peer, ", ".join(self.presented))

    def connectionLost(self, reason: object = None) -> None:
        self.setTimeout(None)
        self._closed = True
        self._release()
        self.factory.closed(self.host)

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self.resetTimeout()
        held, started = self.decoder.buffered, self.decoder.frames_started
        self.decoder.feed(data)
        grown = self.decoder.buffered - held
        self.factory.buffered_bytes += grown
        if grown > 0 and self.factory.buffered_bytes > self.factory.max_buffered_bytes:
            self.factory.note_refusal(self.host, f"frames in progress hold over {self.factory.max_buffered_bytes} "
                                                 f"bytes in total (mllp.max_buffered_bytes); {self.peer} closed")
            self._abort()
            return
        self._watch_frame(started)

    def timeoutConnection(self) -> None:
        log.info("MLLP connection from %s idle for %.0f s: closed", self.peer, self.factory.idle_timeout)
        self.transport.loseConnection()

    # -- limits ---------------------------------------------------------------------------------
    def _watch_frame(self, frames_started_before: int) -> None:
        """A frame must end within ``frame_timeout`` of its start block, however slowly its bytes trickle."""
        if not self.decoder.in_frame or self.factory.frame_timeout <= 0:
            self._cancel_frame_timer()
        elif self._frame_timer is None or self.decoder.frames_started != frames_started_before:
            self._cancel_frame_timer()
            self._frame_timer = reactor.callLater(self.factory.frame_timeout, self._frame_timed_out)

    def _frame_timed_out(self) -> None:
        self._frame_timer = None
        log.warning("MLLP frame from %s not ended within %.0f s of its start block (%d bytes so far): "
                    "connection closed", self.peer, self.factory.frame_timeout, self.decoder.buffered)
        self._abort()

    def _cancel_frame_timer(self) -> None:
        if self._frame_timer is not None:
            if self._frame_timer.active():
                self._frame_timer.cancel()
            self._frame_timer = None

    def _release(self) -> None:
        """Give back what the frame in progress held (once)."""
        self._cancel_frame_timer()
        self.factory.buffered_bytes -= self.decoder.buffered
        self.decoder.clear()

    def _abort(self) -> None:
        self._closed = True
        self._release()
        self.transport.abortConnection()

    # -- frames -------------------------------------------------------------------------------
    def _frame(self, message: bytes) -> None:
        self._dispatch(self.factory.handle(message, self.peer, self.presented), len(message))

    def _oversize(self, head: bytes) -> None:
        log.warning("MLLP frame from %s exceeds %d bytes: answered AR", self.peer, self.factory.max_message_bytes)
        self._dispatch(self.factory.handle_oversize(head, self.peer), len(head))

    def _junk(self, data: bytes) -> None:
        log.warning("MLLP: %d bytes outside a frame from %s discarded: %s", len(data), self.peer, data[:32].hex())

    def _dispatch(self, result: defer.Deferred, size: int) -> None:
        """Hand a frame on; reading stops while this connection, or all together, wait for too many ACKs."""
        sequence = self._next_sequence
        self._next_sequence += 1
        if self._next_sequence - self._next_to_send >= MAX_PIPELINED:
            self._pipeline_full = True
        self.factory.hold_unanswered(self, size)
        self.update_reading()

        def settled(outcome: object) -> object:
            self.factory.release_unanswered(size)
            return outcome

        result.addBoth(settled).addCallbacks(lambda ack: self._answer(sequence, ack),
                                             lambda failure: self._failed(sequence, failure))

    def update_reading(self) -> None:
        """Pause or resume reading from the socket as the two reasons to wait say."""
        pause = self._pipeline_full or self.throttled
        if pause != self._reading_paused and not self._closed:
            self._reading_paused = pause
            if pause:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def _answer(self, sequence: int, ack: bytes | None) -> None:
        self._ready[sequence] = ack
        while self._next_to_send in self._ready:
            ack_bytes = self._ready.pop(self._next_to_send)
            self._next_to_send += 1
            if ack_bytes is not None and self.transport is not None:
                self.transport.write(frame(ack_bytes))
        if self._pipeline_full and self._next_sequence - self._next_to_send < MAX_PIPELINED // 2:
            self._pipeline_full = False
            self.update_reading()

    def _failed(self, sequence: int, failure: object) -> None:
        # The journal could not be written: no ACK, close, the sender resends (SWF.md 8.2).
        log.error("MLLP message from %s not stored (%s): connection closed without ACK", self.peer,
                  getattr(failure, "getErrorMessage", lambda: failure)())
        self.transport.loseConnection()


class MLLPServerFactory(protocol.Factory):
    """Builds one protocol per accepted connection, within the connection caps, and keeps the totals
    (connections per host, bytes held for frames in progress, refusals) that the caps and /health read."""

    protocol = MLLPServerProtocol

    def __init__(self, handle: Callable[[bytes, str, tuple[str, ...]], defer.Deferred],
                 handle_oversize: Callable[[bytes, str], defer.Deferred], limits: MllpConfig = MllpConfig(),
                 security_events: SecurityEvents | None = None):
        self.handle = handle
        self.handle_oversize = handle_oversize
        self.max_message_bytes = limits.max_message_bytes
        self.idle_timeout = limits.idle_timeout
        self.frame_timeout = limits.frame_timeout
        self.caps = ConnectionCounts("mllp", limits.max_connections, limits.max_connections_per_peer)
        self.max_buffered_bytes = limits.max_buffered_bytes
        self.max_unanswered_bytes = limits.max_unanswered_bytes
        self.buffered_bytes = 0     # held for frames in progress (partial)
        self.unanswered_bytes = 0   # of whole frames handed on and not yet answered by the store
        self._throttled: set[MLLPServerProtocol] = set()
        self._throttle_logged_at = -REFUSAL_LOG_SECONDS
        self.refused = 0
        self._refusals = RefusalLog(log, REFUSAL_LOG_SECONDS, security_events)

    def buildProtocol(self, addr: IAddress) -> protocol.Protocol | None:
        """None (Twisted then closes the socket at once) when a connection cap is reached."""
        host = str(getattr(addr, "host", "?"))
        refusal = self.caps.refusal(host)
        if refusal is not None:
            self.note_refusal(host, refusal)
            return None
        return super().buildProtocol(addr)

    @property
    def connections(self) -> int:
        return self.caps.total

    def opened(self, host: str) -> None:
        self.caps.opened(host)

    def closed(self, host: str) -> None:
        self.caps.closed(host)

    def hold_unanswered(self, connection: MLLPServerProtocol, size: int) -> None:
        """Count a frame handed on; past ``max_unanswered_bytes`` the connection that sent it stops reading
        (TCP then holds the sender back) until the store has answered half of what waits."""
        self.unanswered_bytes += size
        if self.unanswered_bytes > self.max_unanswered_bytes and not connection.throttled:
            now = time.monotonic()
            if now - self._throttle_logged_at >= REFUSAL_LOG_SECONDS:
                self._throttle_logged_at = now
                log.info("MLLP: %d bytes of messages wait for the store (mllp.max_unanswered_bytes): reading "
                         "paused on %s and any connection that sends more", self.unanswered_bytes, connection.peer)
            connection.throttled = True
            self._throttled.add(connection)

    def release_unanswered(self, size: int) -> None:
        """A frame was answered; below half the limit every throttled connection reads again."""
        self.unanswered_bytes -= size
        if self._throttled and self.unanswered_bytes <= self.max_unanswered_bytes // 2:
            throttled, self._throttled = self._throttled, set()
            for connection in throttled:
                connection.throttled = False
                connection.update_reading()

    def note_refusal(self, host: str, reason: str) -> None:
        """Count a refused or dropped connection; log it at most once per host per ``REFUSAL_LOG_SECONDS``."""
        self.refused += 1
        self._refusals.refused(host, reason)
