"""TLS around a listener's protocol factory, taking each new handshake's context from a ``ReloadingTls``,
and reporting refused handshakes (no certificate, an untrusted, expired or self-signed one, a protocol
below the minimum) as security events, once per peer host per minute with the count in between.

The application factory keeps its caps: a connection it refuses is closed before any TLS is spoken.
"""
from __future__ import annotations

import logging
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IAddress, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from ..config import TlsConfig
from ..refusal_log import RefusalLog
from ..security_events import SecurityEvent, SecurityEvents
from .contexts import server_context
from .reloading import ReloadingTls

log = logging.getLogger(__name__)

REFUSAL_LOG_SECONDS = 60.0
FATAL = 2   # the alert level OpenSSL's info callback gives in the high byte of ``ret``
# TLS alert descriptions (RFC 8446 6.2) a server sends when it refuses a handshake.
ALERTS = {
    40: "handshake failure (no common cipher suite or no client certificate)", 42: "bad certificate",
    43: "unsupported certificate", 44: "certificate revoked", 45: "certificate expired",
    46: "certificate unknown", 48: "unknown CA", 70: "protocol version refused (TLS 1.2 minimum)",
    71: "insufficient security", 86: "inappropriate fallback", 109: "missing extension",
    112: "unrecognized server name", 116: "no client certificate (one is required)",
    120: "no application protocol",
}
CERTIFICATE_ALERTS = {42, 43, 44, 45, 46, 48, 116}


def _watch_handshake(connection: SSL.Connection, where: int, ret: int) -> None:
    """OpenSSL's info callback: marks the handshake done, or notes the fatal alert we sent refusing it."""
    protocol = connection.get_app_data()
    if not isinstance(protocol, TlsServerProtocol):
        return
    if where & SSL.SSL_CB_HANDSHAKE_DONE:
        protocol.handshake_done = True
    elif (where & SSL.SSL_CB_WRITE_ALERT) == SSL.SSL_CB_WRITE_ALERT and ret >> 8 == FATAL:
        if not protocol.handshake_done and not protocol.alert:
            protocol.alert = ret & 0xFF


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnections:
    """Each new TLS connection gets the holder's current context (the reloaded one once it changed)."""

    def __init__(self, contexts: ReloadingTls[SSL.Context]):
        self.contexts = contexts

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.contexts.current, None)
        connection.set_info_callback(_watch_handshake)
        return connection


class TlsServerProtocol(BufferingTLSTransport):
    """Twisted's TLS transport, noting why a handshake was refused for ``TlsServerFactory.refused``."""

    handshake_done = False
    alert = 0
    verify_problem = ""
    verify_subject = ""
    factory: "TlsServerFactory"

    def note_verify_problem(self, problem: str, subject: str) -> None:
        if not self.verify_problem:
            self.verify_problem, self.verify_subject = problem, subject

    def connectionLost(self, reason: Any = None) -> None:
        if not self.handshake_done and (self.alert or self.verify_problem):
            peer = self.getPeer()
            self.factory.refused(str(getattr(peer, "host", "?")), f"{getattr(peer, 'host', '?')}:"
                                 f"{getattr(peer, 'port', '?')}", self)
        super().connectionLost(reason)


class TlsServerFactory(TLSMemoryBIOFactory):
    """``TLSMemoryBIOFactory`` for a listener: the wrapped factory may refuse (None) before TLS starts."""

    protocol = TlsServerProtocol

    def __init__(self, listener: str, contexts: ReloadingTls[SSL.Context], wrapped: Factory,
                 events: SecurityEvents):
        super().__init__(ServerConnections(contexts), False, wrapped)
        self.listener = listener
        self.contexts = contexts
        self.events = events
        self.refused_handshakes = 0
        self._said = RefusalLog(log, REFUSAL_LOG_SECONDS)

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        wrapped = self.wrappedFactory.buildProtocol(addr)
        return None if wrapped is None else self.protocol(self, wrapped)

    def refused(self, host: str, peer: str, protocol: TlsServerProtocol) -> None:
        """Count a refused handshake; raise its security event unless this host had one within the minute."""
        self.refused_handshakes += 1
        unsaid = self._said.due(host)
        if unsaid is None:
            return
        certificate = bool(protocol.verify_problem) or protocol.alert in CERTIFICATE_ALERTS
        why = protocol.verify_problem or ALERTS.get(protocol.alert, f"TLS alert {protocol.alert}")
        self.events.raise_event(SecurityEvent(
            "certificate-refused" if certificate else "tls-handshake-refused", peer,
            f"{self.listener} TLS handshake refused: {why}{RefusalLog.since(host, unsaid)}",
            protocol.verify_subject))


def tls_factory(listener: str, config: TlsConfig, wrapped: Factory, events: SecurityEvents) -> TlsServerFactory:
    """The TLS factory of one listener, its context read from ``config``'s files (raises if they do not load)."""
    session_id = listener.split()[0].lower().encode("ascii", "replace")[:32]
    contexts = ReloadingTls(listener, config, lambda material: server_context(config, material, session_id))
    return TlsServerFactory(listener, contexts, wrapped, events)
