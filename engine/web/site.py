"""A twisted.web Site whose requests cannot make the engine hold large bodies.

twisted.web spools any request body over 100 kB to a temporary file and waits for all of it, however
large its Content-Length; the engine's pages take no bodies worth keeping.  A declared length over
``http.max_body_bytes`` is answered 413 from the headers, before any body byte is read; a chunked
body is counted as it arrives and refused the same way once it passes the limit.
"""
from __future__ import annotations

import io
import logging

from twisted.web import resource, server

log = logging.getLogger(__name__)


class BoundedRequest(server.Request):
    """A request whose body is kept in memory up to the site's ``max_body_bytes``, and refused past it."""

    _body_bytes = 0
    _body_refused = False

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()
        if length is not None and length > self.channel.site.max_body_bytes:
            self._refuse_body(f"declares a body of {length} bytes")

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.channel.site.max_body_bytes:
            self._refuse_body(f"sent over {self._body_bytes} body bytes")
            return
        self.content.write(data)

    def _refuse_body(self, what: str) -> None:
        """413 written straight to the socket (the request line is not processed yet), then close."""
        self._body_refused = True
        limit = self.channel.site.max_body_bytes
        peer = self.channel.transport.getPeer()
        log.warning("HTTP request from %s:%s %s, over http.max_body_bytes (%d): answered 413, connection closed",
                    getattr(peer, "host", "?"), getattr(peer, "port", "?"), what, limit)
        self.requestHeaders.removeHeader(b"expect")   # no "100 Continue" after the refusal
        body = f"request body over {limit} bytes refused\n".encode()
        self.channel.transport.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
                                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.channel.loseConnection()


class BoundedSite(server.Site):
    """``server.Site`` with ``BoundedRequest`` requests and an idle timeout for its connections."""

    requestFactory = BoundedRequest

    def __init__(self, root: resource.Resource, max_body_bytes: int, idle_timeout: float):
        super().__init__(root, timeout=idle_timeout)
        self.max_body_bytes = max_body_bytes
