"""DICOM over TLS (PS3.15 B.1): the SSLContexts of the DICOM TLS listener and of the associations the engine
opens, built from ``TlsConfig`` PEM files, and the handshake the listener's gate runs on each connection.

Why the handshake is here and not pynetdicom's: pynetdicom wraps an accepted socket on its listener thread
(``AssociationServer.get_request``), so one peer that connects and never finishes its handshake stalls every
other connection.  The gate (``dicom/admission.py``) instead hands each connection to its own thread first,
and the handshake runs there within ``dicom.association_request_timeout``.  The accepted socket is then an
``AssociationTlsSocket``: it reads the A-ASSOCIATE-RQ ahead (a TLS stream cannot be peeked like TCP) and
gives those bytes back to whichever path serves the association, the direct storage path or pynetdicom.

The listener's context is rebuilt for new connections when its files change or on SIGHUP; an open
association keeps the context it was accepted with.  Outbound contexts are built per association, so
they always read the current files.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import threading
import time
from typing import Any, Callable

from ..config import TlsConfig
from ..refusal_log import RefusalLog
from ..security_events import SecurityEvent, SecurityEvents
from .directory import KnownAE, PeerTls
from .wire import upper_layer as ul

log = logging.getLogger(__name__)

MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
CHANGE_CHECK_SECONDS = 1.0      # the listener's PEM files are looked at (stat) at most this often
REFUSAL_INTERVAL = 60.0         # one security event per peer per this many seconds for refused handshakes


class TlsSetupError(ValueError):
    """The TLS settings cannot be used (a missing file, a key that does not match, a bad cipher string)."""


def _apply_policy(context: ssl.SSLContext, tls: TlsConfig) -> None:
    if tls.min_version not in MIN_VERSIONS:
        raise TlsSetupError(f"min_version {tls.min_version!r}: expected one of {', '.join(MIN_VERSIONS)}")
    context.minimum_version = MIN_VERSIONS[tls.min_version]
    try:
        context.set_ciphers(tls.ciphers)
    except ssl.SSLError as exc:
        raise TlsSetupError(f"ciphers {tls.ciphers!r}: {exc}") from None


def _load(what: str, load: Callable[[], None]) -> None:
    try:
        load()
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"{what}: {exc}") from None


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The listener's context: our certificate; with a ``ca``, client certificates from it are asked for
    (and, with ``require_client_cert``, required)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_policy(context, tls)
    _load(f"certificate {tls.cert} / key {tls.key}", lambda: context.load_cert_chain(tls.cert, tls.key or None))
    if tls.ca:
        _load(f"CA file {tls.ca}", lambda: context.load_verify_locations(cafile=tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    elif tls.require_client_cert:
        raise TlsSetupError("require_client_cert needs a ca (the CAs whose client certificates are accepted)")
    context.sslsocket_class = AssociationTlsSocket
    return context


def client_context(peer: PeerTls, ours: TlsConfig) -> ssl.SSLContext:
    """An outbound association's context: the peer's certificate verified against the entry's ``ca`` (else
    ``dicom.tls.ca``, else the system's CAs), its host name checked unless ``verify_hostname: false`` (the
    entry's, else ``dicom.tls``'s); our
    client certificate is the entry's ``cert``/``key``, else ``dicom.tls``'s."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_policy(context, ours)
    ca = peer.ca or ours.ca
    if ca:
        _load(f"CA file {ca}", lambda: context.load_verify_locations(cafile=ca))
    else:
        context.load_default_certs()
    context.check_hostname = ours.verify_hostname if peer.verify_hostname is None else peer.verify_hostname
    cert, key = (peer.cert, peer.key) if peer.cert else (ours.cert, ours.key)
    if cert:
        _load(f"certificate {cert} / key {key}", lambda: context.load_cert_chain(cert, key or None))
    return context


class _NamedPeerSocket(ssl.SSLSocket):
    """An outbound TLS socket whose handshake also checks the verified certificate names ``expected_name``
    (the AE entry's ``certificate:``), as the listener's binding checks its callers (CN or any SAN)."""

    expected_name = ""
    peer_title = ""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        names = peer_names(self.getpeercert())
        if self.expected_name.casefold() not in {name.casefold() for name in names}:
            log.warning("DICOM TLS: %s presented a certificate for %s, not %r (dicom.aes.%s.certificate);"
                        " association not opened", self.peer_title, ", ".join(sorted(names)) or "no name",
                        self.expected_name, self.peer_title)
            raise ssl.SSLCertVerificationError(
                f"{self.peer_title}'s certificate does not name {self.expected_name!r}")


def tls_args(known: KnownAE, ours: TlsConfig) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for an association to ``known`` (None: plain, the entry has no ``tls``).

    When the entry names a ``certificate``, the peer must present one carrying that name, whichever path
    opens the association (forwarding, commitment reports, C-MOVE sub-operations)."""
    if known.tls is None:
        return None
    context = client_context(known.tls, ours)
    if known.certificate:
        context.sslsocket_class = type("NamedPeerSocket", (_NamedPeerSocket,),
                                       {"expected_name": known.certificate, "peer_title": known.title})
    return context, known.host


def peer_names(certificate: dict | None) -> set[str]:
    """The subject common names and subject alternative names (DNS, IP, URI...) of a verified peer
    certificate (``SSLSocket.getpeercert()``), for the AE binding (``dicom/binding.py``)."""
    if not certificate:
        return set()
    names = {value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for _kind, value in certificate.get("subjectAltName", ())}
    return names


def peer_certificate(sock: socket.socket) -> dict | None:
    """The verified certificate the peer presented (None on a plain connection or when it sent none)."""
    if isinstance(sock, ssl.SSLSocket):
        return sock.getpeercert() or None
    return None


class AssociationTlsSocket(ssl.SSLSocket):
    """An accepted TLS connection whose first PDU can be read ahead and given back.

    The gate reads the A-ASSOCIATE-RQ ahead (``read_ahead``); ``recv``/``recv_into`` return those bytes
    first, and ``pending`` counts them (pynetdicom's ``AssociationSocket.ready`` asks it).  ``recv`` also
    takes the flags the upper-layer reads pass on TCP (MSG_WAITALL, MSG_DONTWAIT), which SSLSocket refuses.
    Built by ``SSLContext.wrap_socket`` (``sslsocket_class``), never by calling the class.
    """

    _ahead: bytearray | None = None   # set per instance by read_ahead

    def read_ahead(self, count: int, deadline: float) -> bytes:
        """The first ``count`` bytes of the stream (kept to be read again), by ``deadline`` (monotonic).
        Raises TimeoutError past the deadline, ``upper_layer.PeerClosed`` when the peer closes first."""
        if self._ahead is None:
            self._ahead = bytearray()
        timeout = self.gettimeout()
        try:
            while len(self._ahead) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{count} bytes not received within the time allowed")
                self.settimeout(remaining)
                got = super().recv(count - len(self._ahead))
                if not got:
                    raise ul.PeerClosed("connection closed before a whole A-ASSOCIATE-RQ arrived")
                self._ahead += got
        finally:
            self.settimeout(timeout)
        return bytes(self._ahead[:count])

    def _take(self, count: int) -> bytes:
        if not self._ahead:
            return b""
        taken = bytes(self._ahead[:count])
        del self._ahead[:count]
        return taken

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        data = bytearray(self._take(buflen))
        if flags & socket.MSG_DONTWAIT:
            if not data:
                timeout = self.gettimeout()
                self.settimeout(0)        # nothing in: SSLWantReadError, an OSError, as on TCP
                try:
                    data += super().recv(buflen)
                finally:
                    self.settimeout(timeout)
            return bytes(data)
        while not data or (flags & socket.MSG_WAITALL and len(data) < buflen):
            got = super().recv(buflen - len(data))
            if not got:
                break
            data += got
        return bytes(data)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if self._ahead:
            view = memoryview(buffer).cast("B")
            taken = self._take(min(len(view), nbytes or len(view)))
            view[:len(taken)] = taken
            return len(taken)
        return super().recv_into(buffer, nbytes)

    def pending(self) -> int:
        return len(self._ahead or b"") + super().pending()


def read_first_pdu(sock: AssociationTlsSocket, timeout: float, limit: int = ul.LARGEST_ASSOCIATE_RQ) -> bytes:
    """``upper_layer.peek_pdu`` for a TLS connection: the A-ASSOCIATE-RQ, read ahead and left to be read
    again, with the same answers (PduError from the first byte or the header, TimeoutError, PeerClosed)."""
    deadline = time.monotonic() + timeout
    first = sock.read_ahead(1, deadline)
    if first[0] != ul.ASSOCIATE_RQ:
        raise ul.PduError(f"first byte 0x{first[0]:02X} is not an A-ASSOCIATE-RQ",
                          ul.UNEXPECTED_PDU if first[0] in ul.PDU_TYPES else ul.UNRECOGNIZED_PDU)
    wanted = 6 + ul.HEADER.unpack(sock.read_ahead(6, deadline))[1]
    if wanted > limit:
        raise ul.PduError(f"A-ASSOCIATE-RQ of {wanted} bytes, more than {limit}")
    return sock.read_ahead(wanted, deadline)


def _stamp(paths: tuple[str, ...]) -> tuple:
    stamps = []
    for path in paths:
        try:
            status = os.stat(path)
            stamps.append((status.st_mtime_ns, status.st_size, status.st_ino))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


class ReloadingServerContext:
    """The listener's SSLContext, rebuilt when its PEM files change (looked at no more than once a
    second) or after ``reload()`` (SIGHUP).  A rebuild that fails (a key written before its certificate,
    a broken file) keeps the previous context and says so once per change of the files."""

    def __init__(self, tls: TlsConfig, check_seconds: float = CHANGE_CHECK_SECONDS):
        self.tls = tls
        self.check_seconds = check_seconds
        self._paths = tuple(path for path in (tls.cert, tls.key, tls.ca) if path)
        self._lock = threading.Lock()
        self._stamp = _stamp(self._paths)
        self._context = server_context(tls)        # TlsSetupError at start: the engine does not start
        self._checked = time.monotonic()
        self._forced = False
        self._failed_stamp: tuple | None = None
        self.reloads = 0

    def reload(self) -> None:
        """Rebuild before the next connection (safe from a signal handler: it only sets a flag)."""
        self._forced = True

    def current(self) -> ssl.SSLContext:
        now = time.monotonic()
        with self._lock:
            if self._forced or now - self._checked >= self.check_seconds:
                self._checked = now
                stamp = _stamp(self._paths)
                if self._forced or stamp != self._stamp:
                    self._rebuild(stamp)
            return self._context

    def _rebuild(self, stamp: tuple) -> None:
        forced, self._forced = self._forced, False
        try:
            context = server_context(self.tls)
        except TlsSetupError as exc:
            if forced or stamp != self._failed_stamp:
                log.error("DICOM TLS certificate not reloaded, the previous one stays in use: %s", exc)
            self._failed_stamp = stamp
            return
        self._context, self._stamp, self._failed_stamp = context, stamp, None
        self.reloads += 1
        log.info("DICOM TLS certificate reloaded from %s for new associations", self.tls.cert)


def reload_on_sighup(context: ReloadingServerContext) -> None:
    """SIGHUP rebuilds the listener's context; whatever handled SIGHUP before still runs (the other
    listeners reload on the same signal).  Only possible from the main thread; elsewhere file changes
    alone reload."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return
    previous = signal.getsignal(signal.SIGHUP)

    def on_sighup(number: int, frame: Any) -> None:
        context.reload()
        if callable(previous):
            previous(number, frame)

    signal.signal(signal.SIGHUP, on_sighup)


class TlsHandshake:
    """The TLS port's step of the gate: the handshake on the connection's thread, within ``timeout``.
    A refused handshake (expired, unknown CA, self-signed, no certificate where one is required, not TLS
    at all) closes the connection and raises a security event, once per peer address per minute."""

    def __init__(self, context: ReloadingServerContext, events: SecurityEvents, timeout: float,
                 count_refusal: Callable[[str], None]):
        self.context = context
        self.events = events
        self.timeout = timeout
        self.count_refusal = count_refusal
        self._refusals = RefusalLog(log, REFUSAL_INTERVAL)

    def accept(self, raw: socket.socket, address: Any) -> AssociationTlsSocket | None:
        """The connection with its handshake done, or None (refused and closed)."""
        where = f"{address[0]}:{address[1]}"
        raw.settimeout(self.timeout)
        try:
            sock = self.context.current().wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            log.info("DICOM TLS connection from %s closed before its handshake (%s)", where, exc)
            ul.close(raw)
            return None
        try:
            sock.do_handshake()
        except ssl.SSLCertVerificationError as exc:
            self._refused(sock, address, "certificate-refused", f"client certificate refused: {exc.verify_message}")
            return None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:   # a port probe: connected, then closed
            self.count_refusal("tls_handshake")
            log.info("DICOM TLS connection from %s closed during its handshake (%s)", where, exc)
            ul.close(sock)
            return None
        except ssl.SSLError as exc:
            if exc.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
                self._refused(sock, address, "certificate-refused",
                              "no client certificate presented (dicom.tls.require_client_cert)")
            else:
                self._refused(sock, address, "tls-handshake-failed", f"TLS handshake failed: {exc.reason or exc}")
            return None
        except (TimeoutError, OSError) as exc:
            self.count_refusal("tls_handshake")
            log.info("DICOM TLS connection from %s ended during its handshake (%s)", where,
                     "no handshake within %.0f s" % self.timeout if isinstance(exc, TimeoutError) else exc)
            ul.close(sock)
            return None
        sock.settimeout(None)
        return sock  # type: ignore[return-value]

    def _refused(self, sock: ssl.SSLSocket, address: Any, kind: str, detail: str) -> None:
        self.count_refusal("tls_handshake")
        ul.close(sock)
        unreported = self._refusals.due(address[0])
        if unreported is not None:
            self.events.raise_event(SecurityEvent(
                kind, f"{address[0]}:{address[1]}", f"DICOM TLS connection refused: {detail}" +
                (f" ({unreported} more refused from {address[0]} since the last report)" if unreported else "")))
