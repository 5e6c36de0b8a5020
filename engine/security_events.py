"""Security events raised by the adapters (a refused certificate, a calling AE or MSH-3/4 that its certificate
does not cover, a failed login...), handed to every subscribed sink.

The TLS, DICOM and HTTP adapters only know this bus; the ATNA audit trail subscribes to it and turns each
event into a Security Alert message.  A sink that fails is logged and never stops the adapter that raised.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("swf.security")


@dataclass(frozen=True)
class SecurityEvent:
    kind: str          # short, stable: "certificate-refused", "ae-certificate-mismatch", "login-failed", ...
    peer: str          # the remote address ("10.1.2.3:51514") or "" when not on the network
    detail: str        # one sentence for the log and the audit message
    subject: str = ""  # the certificate subject / calling AE / user name involved, when there is one


Sink = Callable[[SecurityEvent], None]


class SecurityEvents:
    """One per engine; adapters call ``raise_event``, the audit trail ``subscribe``s."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def raise_event(self, event: SecurityEvent) -> None:
        log.warning("security: %s from %s: %s%s", event.kind, event.peer or "-", event.detail,
                    f" ({event.subject})" if event.subject else "")
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:   # an audit sink's fault must not refuse or drop the connection twice
                log.exception("security event sink %r failed for %s", sink, event.kind)
