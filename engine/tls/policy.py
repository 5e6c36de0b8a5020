"""Fail closed: a listener off loopback speaks TLS unless the config says ``tls: off`` for it.

``check_listeners`` runs before any listener opens.  It raises ``PlainListenerRefused`` saying what to set
for a plain MLLP or HTTP listener on another address than loopback without ``tls: off``, and for a TLS
port without its certificate; it returns one warning per plain listener that ``tls: off`` lets start.
(DICOM's listeners are checked on the DICOM side.)
"""
from __future__ import annotations

from ..config import Config
from ..web.auth import is_loopback


class PlainListenerRefused(RuntimeError):
    """A listener would accept plain connections from the network, or a TLS port has nothing to serve with."""


def check_listeners(config: Config) -> list[str]:
    mllp, http = config.mllp, config.http
    if mllp.tls_port > 0 and not mllp.tls.enabled:
        raise PlainListenerRefused(
            f"MLLP TLS listener port {mllp.tls_port} not started: "
            + ("mllp.tls is off" if mllp.tls.off else "mllp.tls.cert and mllp.tls.key are not set")
            + "; set both (PEM files) or mllp.tls_port: 0")
    warnings: list[str] = []
    if mllp.port >= 0 and not is_loopback(mllp.host):
        where = f"MLLP listener {mllp.host or '*'}:{mllp.port}"
        if not mllp.tls.off:
            raise PlainListenerRefused(
                f"{where} not started: it is plain (no TLS) on a non-loopback address. Serve MLLP over TLS "
                "instead (mllp.tls_port: 12575 with mllp.tls.cert and mllp.tls.key, and mllp.port: -1 to turn the "
                "plain port off), or set mllp.tls: off to run it plain on purpose, or listen on 127.0.0.1 (mllp.host)")
        warnings.append(f"{where} is plain (mllp.tls: off): HL7 messages cross the network unencrypted and "
                        "senders are not authenticated")
    if http.port >= 0 and not is_loopback(http.host) and not http.tls.enabled:
        where = f"HTTP listener {http.host or '*'}:{http.port}"
        if not http.tls.off:
            raise PlainListenerRefused(
                f"{where} not started: it is plain HTTP on a non-loopback address. Set http.tls.cert and "
                "http.tls.key (PEM files) to serve HTTPS, or http.tls: off to serve plain HTTP on purpose (behind a "
                "TLS proxy), or listen on 127.0.0.1 (http.host)")
        warnings.append(f"{where} is plain HTTP (http.tls: off): logins, session cookies and API tokens cross the "
                        "network unencrypted unless a TLS proxy is in front")
    return warnings
