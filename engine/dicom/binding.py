"""Who an association says it is against who its TLS certificate says it is, before anything is served.

A calling AE title is just 16 characters the peer chose.  A known AE whose entry names a certificate
(``dicom.aes.TITLE.certificate: <subject CN or SAN>``) is only admitted over TLS with a verified client
certificate carrying that name; any other association calling with that title (another certificate, no
certificate, the plain port) is refused with A-ASSOCIATE-RJ (permanent, calling AE title not recognized)
and raises an ``ae-certificate-mismatch`` security event.  On a listener off loopback, an unknown calling
AE admitted by ``allow_any_ae`` raises ``unknown-ae-admitted``.  Events are raised once per peer address
and title per minute (the refusals are all counted).
"""
from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from ..refusal_log import RefusalLog
from ..security_events import SecurityEvent, SecurityEvents
from .directory import AEDirectory
from .tls import peer_certificate, peer_names
from .wire import upper_layer as ul

log = logging.getLogger(__name__)

EVENT_INTERVAL = 60.0


class CertificateBinding:
    """The check ``dicom/admission.py`` runs on each parsed A-ASSOCIATE-RQ of one listener."""

    def __init__(self, directory: AEDirectory, events: SecurityEvents, exposed: bool):
        self.directory = directory
        self.events = events
        self.exposed = exposed                  # the listener's address is not loopback
        self._reported = RefusalLog(log, EVENT_INTERVAL)

    def refuses(self, sock: socket.socket, address: Any, request: ul.AssociateRQ) -> bool:
        """True when the association must be refused (the event raised); False to go on."""
        calling = request.calling_title
        entry = self.directory.get(calling)
        if entry is None:
            if self.exposed and self.directory.allow_any:
                self._raise("unknown-ae-admitted", address, calling,
                            f"calling AE {calling!r}, not in dicom.aes, admitted by allow_any_ae on a network address")
            return False
        if not entry.certificate:
            return False
        certificate = peer_certificate(sock)
        names = peer_names(certificate)
        if entry.certificate.casefold() in {name.casefold() for name in names}:
            return False
        if certificate is None:
            detail = (f"calling AE {calling!r} must present a TLS certificate naming {entry.certificate!r} "
                      "and presented none" + ("" if isinstance(sock, ssl.SSLSocket) else " (plain connection)"))
        else:
            detail = (f"calling AE {calling!r} presented a certificate for {', '.join(sorted(names))}, "
                      f"not {entry.certificate!r}")
        self._raise("ae-certificate-mismatch", address, calling, f"DICOM association refused: {detail}")
        return True

    def _raise(self, kind: str, address: Any, calling: str, detail: str) -> None:
        unreported = self._reported.due(f"{address[0]} {calling}")
        if unreported is not None:
            self.events.raise_event(SecurityEvent(
                kind, f"{address[0]}:{address[1]}",
                detail + (f" ({unreported} more since the last report)" if unreported else ""), calling))
