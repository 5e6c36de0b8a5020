"""Who gets an association slot on the DICOM listener, so that no single peer can exhaust it.

Every accepted connection passes here before pynetdicom or the direct storage path reads anything:

- at accept (on the listener's thread, before a thread is started for it): a peer address may hold at
  most ``max_associations_per_peer`` connections, associated or not, and at most ``max_associations``
  (128 at least) connections may be waiting for their A-ASSOCIATE-RQ; over either cap the connection is closed at once,
  counted, and logged once per peer per minute;
- on the connection's thread, on the TLS port: the TLS handshake within ``association_request_timeout``
  (``dicom/tls.py``; a refused one is closed and raises a security event);
- on the connection's thread: the A-ASSOCIATE-RQ must arrive whole within ``association_request_timeout``,
  be at most ``upper_layer.LARGEST_ASSOCIATE_RQ`` bytes and parse; anything else (an HTTP request line,
  an unknown PDU type, a 4 GB length, items overrunning the PDU) gets one A-ABORT, a closed socket and
  one log line.  Until then the connection holds no association slot;
- its calling AE title must match the TLS certificate its known-AE entry names (``dicom/binding.py``),
  else A-ASSOCIATE-RJ (permanent, calling AE title not recognized);
- while the database does not answer (``database``: the store's reachability), A-ASSOCIATE-RJ (transient,
  temporary congestion): every request would fail, so the peer had better turn to another instance;
- a whole, well-formed request takes one of ``max_associations`` slots (A-ASSOCIATE-RJ "local limit
  exceeded" when none is free) and keeps it until its association ends, on whichever path serves it.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from typing import Any, Callable, Protocol

from ..config import DicomConfig
from ..refusal_log import RefusalLog
from ..security_events import SecurityEvents
from .binding import CertificateBinding
from .tls import AssociationTlsSocket, TlsHandshake, read_first_pdu
from .wire import upper_layer as ul
from .wire.pynetdicom_private import gate_connections

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 60.0         # seconds between two log lines about one peer's refused connections
# The listen backlog and the connections that may wait for their A-ASSOCIATE-RQ at once: max_associations,
# and at least this many (100 modalities connecting at once are all queued and heard).
MINIMUM_WAITING = 128


class AssociationPath(Protocol):
    """A path that may serve an association itself (the direct storage path)."""

    def take(self, sock: socket.socket, address: Any, request: ul.AssociateRQ) -> bool:
        """Serve the association to its end and return True, or return False having read nothing."""
        ...


class Admission:
    """Connection and association counts of one listener, and the gate each connection passes."""

    def __init__(self, dicom: DicomConfig, pynetdicom_serve: Callable[[socket.socket, Any], None],
                 pynetdicom_associations: Callable[[], list[Any]], count_refusal: Callable[[str], None],
                 handshake: TlsHandshake | None = None, binding: CertificateBinding | None = None,
                 security_events: SecurityEvents | None = None,
                 database: Callable[[], str | None] | None = None):
        self.dicom = dicom
        self.count_refusal = count_refusal                 # reason -> /metrics
        self.pynetdicom_serve = pynetdicom_serve
        self.pynetdicom_associations = pynetdicom_associations
        self.direct: AssociationPath | None = None
        self.handshake = handshake                         # the TLS port's (None: a plain listener)
        self.binding = binding
        self.database = database                           # None while the database answers, else why not
        self._lock = threading.Lock()
        self._per_peer: Counter[str] = Counter()          # connections open, by peer address
        self._waiting = 0                                  # connections not yet associated
        self._associations = 0                             # slots taken
        self._sockets: dict[socket.socket, bool] = {}      # open connections -> served by the direct path
        self._refusals = RefusalLog(log, REFUSAL_LOG_INTERVAL, security_events)

    @property
    def most_waiting(self) -> int:
        return max(MINIMUM_WAITING, self.dicom.max_associations)

    def install(self, server: Any) -> None:
        """Put the gate in front of a started pynetdicom listener."""
        # not_started: no thread will ever release what admit() counted
        gate_connections(server, self.most_waiting, self.admit, self.serve,
                         not_started=lambda sock, address: self._forget(sock, address[0]))

    # -- at accept, on the listener's thread ---------------------------------------------------------
    def admit(self, sock: socket.socket, address: Any) -> bool:
        """Count the connection in, or refuse it (False: the listener closes it) over a cap."""
        peer = address[0]
        with self._lock:
            per_peer = self._per_peer[peer] < self.dicom.max_associations_per_peer
            waiting = self._waiting < self.most_waiting
            if per_peer and waiting:
                self._per_peer[peer] += 1
                self._waiting += 1
                self._sockets[sock] = False
                return True
        self.count_refusal("per_peer_cap" if not per_peer else "waiting_cap")
        self._refusals.refused(peer, f"DICOM connections refused from {peer}: " + (
            f"{self.dicom.max_associations_per_peer} already open (dicom.max_associations_per_peer)"
            if not per_peer else f"{self.most_waiting} connections waiting for their A-ASSOCIATE-RQ"))
        return False

    # -- on the connection's thread ------------------------------------------------------------------
    def serve(self, sock: socket.socket, address: Any) -> None:
        """The connection's whole life: its A-ASSOCIATE-RQ, then its association on one of the paths."""
        peer, associated = address[0], False
        try:
            if self.handshake is not None:
                secured = self.handshake.accept(sock, address)
                with self._lock:
                    self._sockets.pop(sock, None)
                    if secured is not None:
                        self._sockets[secured] = False
                if secured is None:
                    return
                sock = secured
            request = self._first_request(sock, address)
            if request is None:
                return
            if self.binding is not None and self.binding.refuses(sock, address, request):
                self._reject_calling(sock)
                return
            unavailable = self.database() if self.database is not None else None
            if unavailable is not None:
                self._refuse_unavailable(sock, address, request, unavailable)
                return
            with self._lock:
                self._waiting -= 1
                associated = True
                slot = self._associations < self.dicom.max_associations
                if slot:
                    self._associations += 1
            if not slot:
                self._refuse(sock, address, request)
                return
            try:
                self._associate(sock, address, request)
            finally:
                with self._lock:
                    self._associations -= 1
        finally:
            self._forget(sock, peer, waiting=not associated)

    def _first_request(self, sock: socket.socket, address: Any) -> ul.AssociateRQ | None:
        """The peeked, parsed A-ASSOCIATE-RQ, or None when the connection was ended instead."""
        where = f"{address[0]}:{address[1]}"
        try:
            timeout = self.dicom.association_request_timeout
            return ul.parse_associate_rq(read_first_pdu(sock, timeout) if isinstance(sock, AssociationTlsSocket)
                                         else ul.peek_pdu(sock, timeout))
        except ul.PduError as exc:
            self.count_refusal("bad_request")
            log.warning("DICOM connection from %s aborted: %s", where, exc)
            ul.send_quietly(sock, ul.abort(2, exc.reason))
            _discard_unread(sock)
        except TimeoutError:
            self.count_refusal("request_timeout")
            log.warning("DICOM connection from %s closed: no whole A-ASSOCIATE-RQ within %.0f s "
                        "(dicom.association_request_timeout)", where, self.dicom.association_request_timeout)
        except (ul.PeerClosed, OSError) as exc:
            log.info("DICOM connection from %s closed before its A-ASSOCIATE-RQ (%s)", where, exc)
        ul.close(sock)
        return None

    def _refuse(self, sock: socket.socket, address: Any, request: ul.AssociateRQ) -> None:
        self.count_refusal("association_cap")
        log.warning("DICOM association from %s (%s:%s) refused: %d associations open (dicom.max_associations)",
                    request.calling_title, address[0], address[1], self.dicom.max_associations)
        try:
            ul.read_pdu(sock, ul.LARGEST_ASSOCIATE_RQ)       # the request peeked
            sock.sendall(ul.associate_rj(2, 3, 2))           # transient, service provider: local limit exceeded
        except OSError:
            pass
        ul.close(sock)

    def _refuse_unavailable(self, sock: socket.socket, address: Any, request: ul.AssociateRQ, problem: str) -> None:
        self.count_refusal("database_unavailable")
        log.warning("DICOM association from %s (%s:%s) refused: the database does not answer (%s)",
                    request.calling_title, address[0], address[1], problem)
        try:
            ul.read_pdu(sock, ul.LARGEST_ASSOCIATE_RQ)       # the request peeked
            sock.sendall(ul.associate_rj(2, 3, 1))           # transient, service provider: temporary congestion
        except OSError:
            pass
        ul.close(sock)

    def _reject_calling(self, sock: socket.socket) -> None:
        """The calling AE title does not go with the connection's certificate (logged by the binding)."""
        self.count_refusal("certificate_binding")
        try:
            ul.read_pdu(sock, ul.LARGEST_ASSOCIATE_RQ)       # the request read ahead
            sock.sendall(ul.associate_rj(1, 1, 3))           # permanent, service user: calling AE not recognized
        except OSError:
            pass
        ul.close(sock)

    def _associate(self, sock: socket.socket, address: Any, request: ul.AssociateRQ) -> None:
        if self.direct is not None:
            with self._lock:
                self._sockets[sock] = True
            if self.direct.take(sock, address, request):
                return
            with self._lock:
                self._sockets[sock] = False
        self.pynetdicom_serve(sock, address)

    def _forget(self, sock: socket.socket, peer: str, waiting: bool = True) -> None:
        with self._lock:
            self._per_peer[peer] -= 1
            if self._per_peer[peer] <= 0:
                del self._per_peer[peer]
            if waiting:
                self._waiting -= 1
            self._sockets.pop(sock, None)

    # -- shutdown ------------------------------------------------------------------------------------
    def abort_all(self) -> None:
        """At shutdown: end every connection (the listener's shutdown waits for their threads): pynetdicom
        associations through pynetdicom, direct ones with an A-ABORT, waiting ones by closing."""
        for association in self.pynetdicom_associations():
            association.abort()
        with self._lock:
            sockets = list(self._sockets.items())
        for sock, direct in sockets:
            # A TLS connection's reads run on its own thread: no write from here (one SSL object must not be
            # written while it is read), only the TCP shutdown under it, which ends that read.
            secured = isinstance(sock, AssociationTlsSocket)
            if direct and not secured:
                ul.send_quietly(sock, ul.abort())
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


def _discard_unread(sock: socket.socket) -> None:
    """Read what already arrived: closing with unread bytes resets the connection, and the peer may lose
    the A-ABORT sent just before."""
    try:
        sock.recv(ul.LARGEST_ASSOCIATE_RQ, socket.MSG_DONTWAIT)
    except OSError:
        pass
