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

from ..config import Config
from ..store.database import Store
from . import services as services_package
from .directory import AEDirectory

log = logging.getLogger(__name__)


@dataclass
class DicomContext:
    """What every service needs: configuration, the store, the AE directory."""

    config: Config
    store: Store
    directory: AEDirectory

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
    # Run before the listener shuts down (which waits for every connection's thread to end).
    before_shutdown: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for service in self.services:
            service.stop()
        for hook in self.before_shutdown:
            hook()
        if self.server is not None:
            self.server.shutdown()
            self.server = None


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
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        log.debug("cannot set TCP_NODELAY on the association", exc_info=True)


def read_into_one_buffer(assoc: Any) -> None:
    """Read each PDU with recv_into one buffer of its size instead of pynetdicom's 4 KiB recv() calls,
    each appended to a growing bytearray (a 128 KiB P-DATA of image data: 32 reads and copies).  Same
    contract as ``AssociationSocket.recv``: exactly ``nr_bytes``, fewer only when the peer closed."""
    transport = assoc.dul.socket

    def recv(nr_bytes: int) -> bytearray:
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
            count = transport.socket.recv_into(view[received:], nr_bytes - received)
            if not count:
                del view
                del buffer[received:]
                return buffer
            received += count
        return buffer

    transport.recv = recv


def _on_connection(event: Any) -> None:
    set_no_delay(event.assoc)
    read_into_one_buffer(event.assoc)


def _log_association(event: Any) -> None:
    requestor = event.assoc.requestor
    log.info("DICOM association from %s (%s:%s) to %s", requestor.ae_title, requestor.address, requestor.port,
             event.assoc.acceptor.ae_title)


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
    handlers: list[tuple[Any, Callable]] = [(evt.EVT_ACCEPTED, _log_association),
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
    return DicomServer(ae, services, handlers=handlers)


def _dispatcher(table: dict[str, Callable]) -> Callable:
    """One handler per intervention event (pynetdicom allows one): route by the request's SOP class."""
    def dispatch(event: Any) -> Any:
        handler = table.get(str(event.request.AffectedSOPClassUID))
        if handler is None:
            return iter([(0x0122, None)])  # SOP class not supported
        return handler(event)

    return dispatch


class SharedContexts(list):
    """The supported presentation contexts, shared by every association instead of deep-copied for each.

    pynetdicom deep-copies the acceptor's contexts per association (~180 contexts, thousands of transfer
    syntaxes: most of an association's set-up time).  Negotiation only reads them and builds new result
    contexts, so sharing one read-only list is safe.
    """

    def __deepcopy__(self, memo: dict) -> list:
        return list(self)


def start_server(server: DicomServer, host: str, port: int) -> None:
    for service in server.services:
        service.start()
    server.server = server.ae.start_server((host, port), block=False, evt_handlers=server.handlers)
    server.server.contexts = SharedContexts(server.server.contexts)
    server.port = server.server.server_address[1]
