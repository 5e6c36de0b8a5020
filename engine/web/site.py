"""A twisted.web Site whose requests cannot make the engine hold large bodies.

twisted.web spools any request body over 100 kB to a temporary file and waits for all of it, however
large its Content-Length.  The engine's pages take no bodies worth keeping (``http.max_body_bytes``),
the API's JSON bodies up to ``http.api_max_body_bytes``.  A declared length over the path's limit is
answered 413 from the headers, before any body byte is read; a chunked body is counted as it arrives
and refused the same way once it passes the limit.

``ConnectionCaps`` wraps the site for the listener: at most ``http.max_connections`` connections in total
and ``http.max_connections_per_peer`` from one address (over a cap the connection is closed at once,
counted, and logged once per peer per minute), and a request must arrive whole (headers and body) within
``http.request_timeout`` of its first byte: a sender trickling a byte now and then (which resets the idle
timeout) is dropped.
"""
from __future__ import annotations

import io
import logging
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.protocols import policies
from twisted.web import resource, server

from ..connection_caps import ConnectionCounts
from ..refusal_log import RefusalLog
from ..security_events import SecurityEvents

log = logging.getLogger(__name__)

API_PATH = b"/api"
REFUSAL_LOG_SECONDS = 60.0
# Control characters (tab aside) in a Content-Type: twisted.web hands a POST's to the email package, which
# raises ValueError on a vertical tab or form feed; the request then got no answer (found by ``make fuzz``).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class BoundedRequest(server.Request):
    """A request whose body is kept in memory up to the site's ``max_body_bytes``, and refused past it."""

    _body_bytes = 0
    _body_refused = False
    _body_limit = 0
    _limit_key = ""

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()
        # The request line's target: twisted.web keeps it on the channel until the body has arrived (the
        # request's own uri is set only then); tests/integration/test_api_errors.py guards this.
        self._limit_key, self._body_limit = self.channel.site.body_limit(getattr(self.channel, "_path", b""))
        if length is not None and length > self._body_limit:
            self._refuse_body(f"declares a body of {length} bytes")

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self._body_limit:
            self._refuse_body(f"sent over {self._body_bytes} body bytes")
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if any(_CONTROL.search(value) for value in self.requestHeaders.getRawHeaders(b"content-type", [])):
            peer = self.channel.transport.getPeer()
            log.warning("HTTP request from %s:%s with control characters in its Content-Type: answered 400",
                        getattr(peer, "host", "?"), getattr(peer, "port", "?"))
            self.channel._respondToBadRequestAndDisconnect()
            return
        received = getattr(self.channel.transport, "request_received", None)
        if received is not None:          # ConnectionCaps: the request is whole, its deadline is off
            received()
        super().requestReceived(command, path, version)

    def _refuse_body(self, what: str) -> None:
        """413 written straight to the socket (the request line is not processed yet), then close."""
        self._body_refused = True
        limit = self._body_limit
        peer = self.channel.transport.getPeer()
        log.warning("HTTP request from %s:%s %s, over http.%s (%d): answered 413, connection closed",
                    getattr(peer, "host", "?"), getattr(peer, "port", "?"), what, self._limit_key, limit)
        self.requestHeaders.removeHeader(b"expect")   # no "100 Continue" after the refusal
        body = f"request body over {limit} bytes refused\n".encode()
        self.channel.transport.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
                                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.channel.loseConnection()


class BoundedSite(server.Site):
    """``server.Site`` with ``BoundedRequest`` requests and an idle timeout for its connections."""

    requestFactory = BoundedRequest

    def __init__(self, root: resource.Resource, max_body_bytes: int, idle_timeout: float,
                 api_max_body_bytes: int | None = None):
        super().__init__(root, timeout=idle_timeout)
        self.max_body_bytes = max_body_bytes
        self.api_max_body_bytes = max_body_bytes if api_max_body_bytes is None else api_max_body_bytes

    def body_limit(self, target: bytes) -> tuple[str, int]:
        """The config key and limit for a request to ``target`` (the request line's path and query)."""
        if target == API_PATH or target.startswith(API_PATH + b"/") or target.startswith(API_PATH + b"?"):
            return "api_max_body_bytes", self.api_max_body_bytes
        return "max_body_bytes", self.max_body_bytes


class CappedConnection(policies.ProtocolWrapper):
    """One HTTP connection under ``ConnectionCaps``: the deadline for the request being received."""

    factory: "ConnectionCaps"
    _deadline: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is None and self.factory.request_timeout > 0:
            self._deadline = self.factory.clock.callLater(self.factory.request_timeout, self._too_slow)
        super().dataReceived(data)

    def request_received(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        peer = self.getPeer()
        host = str(getattr(peer, "host", "?"))
        self.factory.note_refusal(host, f"HTTP connection from {host}:{getattr(peer, 'port', '?')} closed: no whole "
                                        f"request within {self.factory.request_timeout:.0f} s (http.request_timeout)")
        self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        self.request_received()
        super().connectionLost(reason)


class ConnectionCaps(policies.WrappingFactory):
    """The HTTP listener's factory: the site behind connection caps and the slow-sender deadline."""

    protocol = CappedConnection

    def __init__(self, site: server.Site, max_connections: int, max_connections_per_peer: int,
                 request_timeout: float, clock: Any = reactor, security_events: SecurityEvents | None = None):
        super().__init__(site)
        self.caps = ConnectionCounts("http", max_connections, max_connections_per_peer)
        self.request_timeout = request_timeout
        self.clock = clock
        self.refused = 0                    # connections refused over a cap or dropped as too slow (/metrics)
        self._refusals = RefusalLog(log, REFUSAL_LOG_SECONDS, security_events)

    @property
    def open_connections(self) -> int:
        return self.caps.total

    def buildProtocol(self, addr: IAddress) -> Any:
        """None (Twisted closes the socket at once) over a cap."""
        host = str(getattr(addr, "host", "?"))
        refusal = self.caps.refusal(host)
        if refusal is not None:
            self.note_refusal(host, refusal)
            return None
        self.caps.opened(host)
        wrapper = super().buildProtocol(addr)
        wrapper.host = host
        return wrapper

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        self.caps.closed(p.host)

    def note_refusal(self, host: str, reason: str) -> None:
        self.refused += 1
        self._refusals.refused(host, reason)
