"""The engine's one DICOM Application Entity: contexts, access control, and the service modules.

Each module of ``engine/dicom/services`` contributes its presentation contexts and event handlers
through ``create(context) -> Service``.  pynetdicom runs associations in its own threads; handlers call
the workflow, which goes through the store's single writer (thread safety is worked out there).
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.presentation import PresentationContext

from ..audit_trail.recorder import AuditTrail
from ..cluster import Cluster
from ..config import Config, DicomConfig
from ..metrics import EngineMetrics
from ..rules.stations import NO_STATIONS, StationPolicies
from ..security_events import SecurityEvent, SecurityEvents
from ..store.database import Store
from ..store.reachability import DatabaseReachability
from . import services as services_package
from .wire import pynetdicom_private as private
from .wire import upper_layer as ul
from .admission import Admission
from .binding import CertificateBinding
from .open_listener import is_loopback
from .tls import ReloadingServerContext, TlsHandshake, reload_on_sighup
from .directory import AEDirectory

log = logging.getLogger(__name__)


@dataclass
class DicomContext:
    """What every service needs: configuration, the store, the AE directory."""

    config: Config
    store: Store
    directory: AEDirectory
    metrics: EngineMetrics = field(default_factory=EngineMetrics)   # what /metrics counts
    audit: AuditTrail = field(default_factory=AuditTrail.off)       # the ATNA audit trail (off by default)
    security_events: SecurityEvents = field(default_factory=SecurityEvents)   # the engine's one bus
    cluster_instance: Cluster | None = None   # the engine's leases; None: a single-instance one of its own
    stations: Callable[[], StationPolicies] = lambda: NO_STATIONS   # routes/ station policies in force

    @property
    def cluster(self) -> Cluster:
        """The leases the queues deliver under (engine/cluster.py)."""
        if self.cluster_instance is None:
            self.cluster_instance = Cluster(self.config, self.store, standalone=True)
        return self.cluster_instance

    @property
    def ae_title(self) -> str:
        return self.config.dicom.ae_title


class Service(Protocol):
    name: str

    def contexts(self) -> list[PresentationContext]: ...

    def handlers(self) -> list[tuple]: ...
    """(event, handler) or, for C-FIND/C-MOVE/C-GET, (event, handler, [SOP Class UIDs it serves])."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def element_text(element: Any) -> str:
    """A data element's value as text: multi-values joined by backslash, no value as ''."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def status_dataset(code: int, comment: str = "") -> Dataset:
    """A DIMSE status with an Error Comment (LO: 64 characters at most) when there is something to say."""
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


class ForegroundService:
    """Base of the services that only answer requests: nothing runs in the background to start or stop."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""


@dataclass
class DicomServer:
    ae: AE
    services: list[Service]
    server: Any = None
    port: int = 0
    handlers: list[tuple[Any, Callable]] = field(default_factory=list)
    settings: DicomConfig = field(default_factory=DicomConfig)
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    admission: Admission | None = None      # the gate of every connection (dicom/admission.py)
    context: DicomContext | None = None
    tls_server: Any = None                  # the listener on dicom.tls_port, with its own gate
    tls_port: int = 0
    tls_admission: Admission | None = None
    tls_context: ReloadingServerContext | None = None
    # Run before the listener shuts down (which waits for every connection's thread to end).
    before_shutdown: list[Callable[[], None]] = field(default_factory=list)

    def open_associations(self) -> int:
        return sum(len(listener.active_associations) for listener in (self.server, self.tls_server)
                   if listener is not None)

    def admissions(self) -> list[Admission]:
        return [admission for admission in (self.admission, self.tls_admission) if admission is not None]

    def stop(self) -> None:
        for service in self.services:
            service.stop()
        for hook in self.before_shutdown:
            hook()
        for listener in (self.server, self.tls_server):
            if listener is not None:
                listener.shutdown()
        self.server = self.tls_server = None


def load_services(context: DicomContext) -> list[Service]:
    """Every module in engine/dicom/services that defines ``create``, in name order."""
    found = []
    for module_info in sorted(pkgutil.iter_modules(services_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{services_package.__name__}.{module_info.name}")
        create = getattr(module, "create", None)
        if create is not None:
            found.append(create(context))
    return found


def set_no_delay(assoc: Any) -> None:
    """TCP_NODELAY on an association's socket: without it every DIMSE response after the first waits for the
    peer's delayed ACK (~40 ms each on loopback; SWF.md 9a)."""
    try:
        private.association_socket(assoc).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        log.debug("cannot set TCP_NODELAY on the association", exc_info=True)


def read_bounded_pdus(assoc: Any, largest: int) -> None:
    """Replace pynetdicom's PDU reads (``AssociationSocket.recv``: 6 header bytes, then the body) on an
    accepted association.  Why: pynetdicom allocates whatever length the header declares (4 GB for
    ``FF FF FF FF``) and reads in 4 KiB pieces, each appended to a growing bytearray.  Here a header with
    an unknown type or a length over ``largest`` (over ``upper_layer.LARGEST_ASSOCIATE_RQ`` for the first
    PDU, the A-ASSOCIATE-RQ) gets an A-ABORT and a closed connection before the body is read (pynetdicom
    sees the connection close), and a body is read by ``upper_layer.receive``: into one buffer that grows
    as bytes arrive.  Same contract otherwise: exactly ``nr_bytes``, fewer only when the peer closed."""
    header_next, limit = True, ul.LARGEST_ASSOCIATE_RQ

    def recv(nr_bytes: int) -> bytearray:
        nonlocal header_next, limit
        sock = private.association_socket(assoc)
        data = ul.receive(sock, nr_bytes)
        if not header_next or len(data) < ul.HEADER.size:
            header_next = True
            return data
        kind, length = ul.HEADER.unpack(data)
        if kind in ul.PDU_TYPES and length <= limit:
            header_next, limit = False, largest
            return data
        requestor = assoc.requestor
        log.warning("DICOM association from %s (%s:%s) aborted: %s", requestor.ae_title, requestor.address,
                    requestor.port, f"unknown PDU type 0x{kind:02X}" if kind not in ul.PDU_TYPES else
                    f"PDU of {length} bytes, more than the {limit} accepted")
        try:
            sock.sendall(ul.abort(2, ul.UNRECOGNIZED_PDU if kind not in ul.PDU_TYPES else ul.INVALID_PARAMETER_VALUE))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return bytearray()

    private.replace_pdu_reads(assoc, recv)


def _on_connection(event: Any) -> None:
    set_no_delay(event.assoc)
    read_bounded_pdus(event.assoc, ul.largest_pdu(event.assoc.acceptor.maximum_length))


def _association_handlers(metrics: EngineMetrics, services: list[Service],
                          security_events: SecurityEvents) -> list[tuple[Any, Callable]]:
    """Log each accepted association and count it by the services it negotiated; count rejections and
    raise each as a security event (an unknown calling or called AE title: the audit trail's alert)."""
    service_of = {str(presentation.abstract_syntax): service.name
                  for service in services for presentation in service.contexts()}

    def accepted(event: Any) -> None:
        requestor = event.assoc.requestor
        log.info("DICOM association from %s (%s:%s) to %s", requestor.ae_title, requestor.address, requestor.port,
                 event.assoc.acceptor.ae_title)
        metrics.association_accepted(service_of.get(str(context.abstract_syntax), "other")
                                     for context in event.assoc.accepted_contexts)

    def rejected(event: Any) -> None:
        metrics.association_refused("rejected")     # unknown calling or called AE title, or pynetdicom's cap
        requestor = event.assoc.requestor
        security_events.raise_event(SecurityEvent(
            "association-rejected", f"{requestor.address}:{requestor.port}",
            f"A-ASSOCIATE-RJ: calling AE {requestor.ae_title.strip()!r} to {event.assoc.acceptor.ae_title.strip()!r}",
            requestor.ae_title.strip()))

    return [(evt.EVT_ACCEPTED, accepted), (evt.EVT_REJECTED, rejected)]


def build_server(context: DicomContext) -> DicomServer:
    dicom = context.config.dicom
    ae = AE(ae_title=dicom.ae_title)
    ae.require_called_aet = True
    if not context.directory.allow_any:
        # An empty list would admit everyone; a title nobody can configure (it starts with '-') admits no one.
        ae.require_calling_aet = sorted(context.directory.entries) or ["-NO-KNOWN-AES-"]
    ae.acse_timeout = dicom.acse_timeout
    ae.dimse_timeout = dicom.dimse_timeout
    ae.network_timeout = dicom.network_timeout
    ae.maximum_associations = dicom.max_associations
    ae.maximum_pdu_size = dicom.max_pdu_bytes
    services = load_services(context)
    for service in services:
        for presentation in service.contexts():
            ae.add_supported_context(presentation.abstract_syntax, presentation.transfer_syntax,
                                     scu_role=presentation.scu_role, scp_role=presentation.scp_role)
    handlers = [*_association_handlers(context.metrics, services, context.security_events),
                (evt.EVT_CONN_OPEN, _on_connection)]
    by_sop_class: dict[Any, dict[str, Callable]] = {}
    for service in services:
        for entry in service.handlers():
            if len(entry) == 3:
                event, handler, sop_classes = entry
                for sop_class in sop_classes:
                    by_sop_class.setdefault(event, {})[str(sop_class)] = handler
            else:
                handlers.append(entry)
    for event, table in by_sop_class.items():
        handlers.append((event, _dispatcher(table)))
    return DicomServer(ae, services, handlers=handlers, settings=dicom, metrics=context.metrics, context=context)


def _dispatcher(table: dict[str, Callable]) -> Callable:
    """One handler per intervention event (pynetdicom allows one): route by the request's SOP class."""
    def dispatch(event: Any) -> Any:
        handler = table.get(str(event.request.AffectedSOPClassUID))
        if handler is None:
            return iter([(0x0122, None)])  # SOP class not supported
        return handler(event)

    return dispatch


def start_server(server: DicomServer, host: str, port: int) -> None:
    """The plain listener on ``port`` (none when negative) and the TLS one on ``dicom.tls_port`` (none when 0)."""
    changed = private.report_changes()
    if changed:   # the engine still starts: each use falls back or fails on its own association
        log.error("%s; see tests/unit/test_pynetdicom_private.py", changed)
    for service in server.services:
        service.start()
    context = server.context
    events = context.security_events if context is not None else SecurityEvents()
    binding = CertificateBinding(context.directory, events, not is_loopback(host)) if context is not None else None
    database = DatabaseReachability(context.store).problem if context is not None else None
    if port >= 0:
        server.server, server.admission = _listen(server, host, port, None, binding, database)
        server.port = server.server.server_address[1]
    dicom = server.settings
    if dicom.tls_port > 0:
        server.tls_context = ReloadingServerContext(dicom.tls)
        reload_on_sighup(server.tls_context)
        handshake = TlsHandshake(server.tls_context, events, dicom.association_request_timeout,
                                 server.metrics.association_refused)
        server.tls_server, server.tls_admission = _listen(server, host, dicom.tls_port, handshake, binding, database)
        server.tls_port = server.tls_server.server_address[1]


def _listen(server: DicomServer, host: str, port: int, handshake: TlsHandshake | None,
            binding: CertificateBinding | None,
            database: Callable[[], str | None] | None) -> tuple[Any, Admission]:
    listener = server.ae.start_server((host, port), block=False, evt_handlers=server.handlers)
    private.share_supported_contexts(listener)
    admission = Admission(server.settings, private.pynetdicom_serve(listener), lambda: listener.active_associations,
                          server.metrics.association_refused, handshake, binding,
                          server.context.security_events if server.context is not None else None, database)
    admission.install(listener)
    server.before_shutdown.append(admission.abort_all)
    return listener, admission
