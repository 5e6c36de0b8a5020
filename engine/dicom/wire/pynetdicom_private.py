"""Every use of pynetdicom's private API in the engine, each behind one small named function.

The engine reaches below pynetdicom's public API where that API has no way to do what it must: bound
PDU reads and received data sets, gate connections before pynetdicom reads them, share the supported
contexts instead of deep-copying them per association, write pre-encoded P-DATA beside the DUL, send a
report on an accepted association, list the storage SOP classes and transfer syntaxes, add a field to
N-CREATE-RSP, and switch off its per-PDU log formatting.  None of that is promised across pynetdicom
releases, and a change would not fail loudly: a renamed attribute surfaces as an AttributeError in an
association thread, or silently loses a bound (a 4 GB PDU length allocated again) or a speed-up.

So callers elsewhere import only the functions below, and ``RELIED_ON`` declares each internal they
touch, with a check against the installed pynetdicom.  ``changed()`` names whatever no longer holds;
tests/unit/test_pynetdicom_private.py fails on it (and fails when this module touches an internal it
does not declare), and the engine logs it as an ERROR at start (``dicom/ae.py``).  Written against
pynetdicom 3.0.4.
"""
from __future__ import annotations

import inspect
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pynetdicom
from pynetdicom import _config, _globals, dimse_messages, dimse_primitives, sop_class
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.transport import AssociationServer, AssociationSocket, RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)


# -- what is relied on ---------------------------------------------------------------------------------
class Probe:
    """Throwaway pynetdicom objects the checks look at: an acceptor association with its DUL, DIMSE
    provider and socket wrapper, a DIMSE message, and a listener bound to an ephemeral loopback port."""

    def __init__(self) -> None:
        self.entity = pynetdicom.AE()
        self.association = Association(self.entity, "acceptor")
        self.dul = self.association.dul
        self.dimse = self.association.dimse
        self.message = dimse_messages.C_STORE_RQ()
        self._pair = socket.socketpair()
        self.association_socket = AssociationSocket(self.association, client_socket=self._pair[0])
        self.listener = ThreadedAssociationServer(self.entity, ("127.0.0.1", 0), "PROBE", [])

    def close(self) -> None:
        self.listener.server_close()
        for sock in self._pair:
            sock.close()


@dataclass(frozen=True)
class Reliance:
    """One internal the functions below rely on: ``what`` (``Owner.attribute``, then what about it) is
    what a failure reports; ``holds`` checks it on a Probe."""

    what: str
    holds: Callable[[Probe], bool]

    @property
    def attributes(self) -> set[str]:
        """The attributes it mentions (``Owner.attribute``)."""
        return set(re.findall(r"\b\w+\.(\w+)", self.what))


def _source_has(function: Any, text: str) -> bool:
    return text in inspect.getsource(function)


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


# pynetdicom's public names used here (among the attributes of the objects above, so the test asks).
PUBLIC_API = ("AE", "C_STORE_RQ", "N_CREATE", "N_GET", "handle", "join", "close", "server_close")

RELIED_ON: tuple[Reliance, ...] = (
    Reliance("_config.LOG_HANDLER_LEVEL (str)", lambda p: isinstance(_config.LOG_HANDLER_LEVEL, str)),
    Reliance("_globals.ALL_TRANSFER_SYNTAXES (list of UIDs)",
             lambda p: all(isinstance(uid, str) for uid in _globals.ALL_TRANSFER_SYNTAXES)),
    Reliance("sop_class._STORAGE_CLASSES (dict keyword -> UID)",
             lambda p: "CTImageStorage" in sop_class._STORAGE_CLASSES),
    Reliance("dimse_messages._COMMAND_SET_KEYWORDS (dict, with 'N-CREATE-RSP')",
             lambda p: isinstance(dimse_messages._COMMAND_SET_KEYWORDS["N-CREATE-RSP"], tuple)),
    Reliance("N_CREATE.STATUS_OPTIONAL_KEYWORDS (tuple)",
             lambda p: isinstance(dimse_primitives.N_CREATE.STATUS_OPTIONAL_KEYWORDS, tuple)),
    Reliance("N_GET.AttributeIdentifierList (a property)",
             lambda p: isinstance(vars(dimse_primitives.N_GET)["AttributeIdentifierList"], property)),
    Reliance("Association.dul (DULServiceProvider)", lambda p: isinstance(p.association.dul, DULServiceProvider)),
    Reliance("Association.dimse (DIMSEServiceProvider)",
             lambda p: isinstance(p.association.dimse, DIMSEServiceProvider)),
    Reliance("Association._reactor_checkpoint (threading.Event Association._run_reactor waits at)",
             lambda p: isinstance(p.association._reactor_checkpoint, threading.Event)
             and _source_has(Association._run_reactor, "self._reactor_checkpoint.wait()")),
    Reliance("Association.__dict__ (takes the engine's own attributes)", lambda p: hasattr(p.association, "__dict__")),
    Reliance("DULServiceProvider.socket (the AssociationSocket DULServiceProvider._read_pdu_data reads from: "
             "6 header bytes, then the body)",
             lambda p: "socket" in vars(p.dul)
             and _source_has(DULServiceProvider._read_pdu_data, "self.socket.recv(6)")
             and _source_has(DULServiceProvider._read_pdu_data, "self.socket.recv(pdu_length)")),
    Reliance("DULServiceProvider.peek_next_pdu ()", lambda p: _parameters(p.dul.peek_next_pdu) == []),
    Reliance("AssociationSocket.send (bytestream), replaceable on the instance, what DULServiceProvider._send "
             "writes each PDU with",
             lambda p: _parameters(p.association_socket.send) == ["bytestream"]
             and _source_has(DULServiceProvider._send, "self.socket.send(pdu.encode())")),
    Reliance("AssociationSocket.socket (socket.socket)",
             lambda p: isinstance(p.association_socket.socket, socket.socket)),
    Reliance("AssociationSocket.recv (nr_bytes), replaceable on the instance",
             lambda p: _parameters(p.association_socket.recv) == ["nr_bytes"]
             and "__slots__" not in vars(AssociationSocket)),
    Reliance("DIMSEServiceProvider.receive_primitive (primitive), replaceable on the instance",
             lambda p: _parameters(p.dimse.receive_primitive) == ["primitive"]
             and _source_has(DIMSEServiceProvider.receive_primitive, "self.message = DIMSEMessage()")),
    Reliance("DIMSEServiceProvider.message (the message being reassembled, or None)",
             lambda p: "message" in vars(p.dimse) and p.dimse.message is None),
    Reliance("DIMSEServiceProvider.send_msg (primitive, context_id)",
             lambda p: _parameters(p.dimse.send_msg) == ["primitive", "context_id"]),
    Reliance("DIMSEServiceProvider.maximum_pdu_size (the peer's maximum length)",
             lambda p: isinstance(vars(DIMSEServiceProvider)["maximum_pdu_size"], property)),
    Reliance("DIMSEMessage.data_set (BytesIO the data set is collected in)",
             lambda p: isinstance(p.message.data_set, BytesIO)),
    Reliance("DIMSEMessage.encoded_command_set (BytesIO)",
             lambda p: isinstance(p.message.encoded_command_set, BytesIO)),
    Reliance("RequestHandler._create_association () (deep-copies server.contexts for each association)",
             lambda p: _parameters(RequestHandler._create_association) == ["self"]
             and _source_has(RequestHandler._create_association, "deepcopy(self.server.contexts)")),
    Reliance("AssociationServer.contexts (list of supported contexts)",
             lambda p: isinstance(p.listener.contexts, list)),
    Reliance("AssociationServer.socket (the listening socket)", lambda p: isinstance(p.listener.socket, socket.socket)),
    Reliance("AssociationServer.RequestHandlerClass (RequestHandler)",
             lambda p: p.listener.RequestHandlerClass is RequestHandler),
    Reliance("AssociationServer.verify_request (request, client_address)",
             lambda p: _parameters(p.listener.verify_request) == ["request", "client_address"]),
    Reliance("AssociationServer.process_request (request, client_address), starting one thread per connection",
             lambda p: _parameters(p.listener.process_request) == ["request", "client_address"]
             and isinstance(p.listener, socketserver.ThreadingMixIn)),
    Reliance("AssociationServer.finish_request (request, client_address), called on the connection's thread "
             "by ThreadedAssociationServer.process_request_thread",
             lambda p: _parameters(p.listener.finish_request) == ["request", "client_address"]
             and _source_has(ThreadedAssociationServer.process_request_thread,
                             "self.finish_request(request, client_address)")),
)


def changed() -> list[str]:
    """What the installed pynetdicom no longer has of ``RELIED_ON`` (empty: everything holds)."""
    try:
        probe = Probe()
    except Exception as exc:  # noqa: BLE001 - the probe itself is built from internals
        return [f"the probe objects ({type(exc).__name__}: {exc})"]
    try:
        return [reliance.what for reliance in RELIED_ON if not _holds(reliance, probe)]
    finally:
        probe.close()


def _holds(reliance: Reliance, probe: Probe) -> bool:
    try:
        return bool(reliance.holds(probe))
    except Exception:  # noqa: BLE001 - missing, renamed or of another shape: all mean "changed"
        return False


def report_changes() -> str:
    """One sentence naming what changed, with the installed version ('' when nothing did)."""
    missing = changed()
    if not missing:
        return ""
    return (f"pynetdicom {pynetdicom.__version__} no longer has what engine/dicom/wire/pynetdicom_private.py "
            f"relies on (written against 3.0.4): {'; '.join(missing)}")


# -- module-level internals -----------------------------------------------------------------------------
def storage_sop_classes() -> list[str]:
    """Every storage SOP class UID pynetdicom knows (the C-STORE SCP accepts them all), sorted."""
    return sorted(str(uid) for uid in sop_class._STORAGE_CLASSES.values())


def all_transfer_syntaxes() -> list[str]:
    """Every transfer syntax UID pynetdicom knows, in its order."""
    return list(_globals.ALL_TRANSFER_SYNTAXES)


def silence_message_logs() -> None:
    """pynetdicom's per-message log handlers format every PDU even when nothing is logged (~5% of a C-FIND)."""
    _config.LOG_HANDLER_LEVEL = "none"


def allow_attribute_identifier_list_in_n_create_rsp() -> None:
    """pynetdicom 3.0.4 has no Attribute Identifier List (0000,1005) in N-CREATE-RSP, though PS3.7
    Annex C pairs it with 0x0120/0x0121/0x0105/0x0106 for every DIMSE-N response.  Add it the way
    N-SET-RSP already has it: an optional status field, sent only when a handler sets it.  Should a later
    pynetdicom change these internals, the responses simply go without the list (logged once)."""
    try:
        keywords = dimse_messages._COMMAND_SET_KEYWORDS["N-CREATE-RSP"]
        primitive = dimse_primitives.N_CREATE
        if "AttributeIdentifierList" not in primitive.STATUS_OPTIONAL_KEYWORDS:
            # N-GET's property: validates the tags and sends a single one with VM 1 (pydicom #757)
            primitive.AttributeIdentifierList = vars(dimse_primitives.N_GET)["AttributeIdentifierList"]
            primitive.STATUS_OPTIONAL_KEYWORDS = (*primitive.STATUS_OPTIONAL_KEYWORDS, "AttributeIdentifierList")
        if "AttributeIdentifierList" not in keywords:
            dimse_messages._COMMAND_SET_KEYWORDS["N-CREATE-RSP"] = (*keywords, "AttributeIdentifierList")
    except (AttributeError, KeyError, TypeError) as exc:
        log.warning("pynetdicom internals changed (%s): N-CREATE responses carry no Attribute Identifier List", exc)


# -- the listener ---------------------------------------------------------------------------------------
class AssociationHeldRequestHandler(RequestHandler):
    """pynetdicom's request handler, returning only when the association it started has ended: the
    connection's thread holds the association slot for as long as the association runs."""

    association: Any = None

    def _create_association(self) -> Any:
        self.association = super()._create_association()
        return self.association

    def handle(self) -> None:
        super().handle()
        self.association.join()


class SharedContexts(list):
    """The supported presentation contexts, shared by every association instead of deep-copied for each.

    pynetdicom deep-copies the listener's contexts per association (~180 contexts, thousands of transfer
    syntaxes: most of an association's set-up time).  Negotiation only reads them and builds new result
    contexts, so sharing one read-only list is safe.
    """

    def __deepcopy__(self, memo: dict) -> list:
        return list(self)


def share_supported_contexts(listener: AssociationServer) -> None:
    """Every association of this listener reads one list of supported contexts (``SharedContexts``)."""
    listener.contexts = SharedContexts(listener.contexts)


def pynetdicom_serve(listener: AssociationServer) -> Callable[[socket.socket, Any], None]:
    """pynetdicom's own service of one accepted connection, on that connection's thread (to be taken
    before ``gate_connections`` puts the gate in its place)."""
    return listener.finish_request


def gate_connections(listener: AssociationServer, backlog: int, admit: Callable[[socket.socket, Any], bool],
                     serve: Callable[[socket.socket, Any], None],
                     not_started: Callable[[socket.socket, Any], None]) -> None:
    """Put a gate in front of a started listener: ``admit`` decides at accept (False: closed), ``serve``
    runs on the connection's thread in place of pynetdicom, ``not_started`` hears of a connection
    admitted but whose thread could not start.  Associations pynetdicom serves hold their thread until
    they end (``AssociationHeldRequestHandler``)."""
    listener.socket.listen(backlog)
    listener.RequestHandlerClass = AssociationHeldRequestHandler
    listener.verify_request = admit
    listener.finish_request = serve
    start_thread = listener.process_request

    def process_request(sock: socket.socket, address: Any) -> None:
        try:
            start_thread(sock, address)
        except BaseException:
            not_started(sock, address)
            raise

    listener.process_request = process_request


# -- an association's transport -------------------------------------------------------------------------
def association_socket(assoc: Any) -> socket.socket:
    """The TCP socket under an association (AttributeError when it has none yet)."""
    return assoc.dul.socket.socket


def replace_pdu_reads(assoc: Any, recv: Callable[[int], bytearray]) -> None:
    """Make ``recv(nr_bytes)`` the association's reads: pynetdicom's DUL asks for a PDU's 6 header
    bytes, then for its body."""
    assoc.dul.socket.recv = recv


def pdu_writer(assoc: Any) -> Callable[[bytes], None]:
    """``write(pdus)``: encoded PDUs written to the association's socket from the calling thread.  The
    first call puts one lock around the socket's send, taken by the DUL thread's own sends too, so a
    write never lands in the middle of a PDU the DUL sends (the caller keeps the DUL from sending
    messages of its own meanwhile, as pynetdicom does while a C-FIND handler runs)."""
    writer = engine_attribute(assoc, "pdu_writer")
    if writer is None:
        transport = assoc.dul.socket
        send = transport.send
        lock = threading.Lock()

        def locked_send(bytestream: bytes) -> None:
            with lock:
                send(bytestream)

        transport.send = writer = locked_send
        attach_engine_attribute(assoc, "pdu_writer", writer)
    return writer


def release_requested(assoc: Any) -> bool:
    """Whether the next PDU the DUL holds for the association is the peer's A-RELEASE-RQ."""
    return isinstance(assoc.dul.peek_next_pdu(), A_RELEASE)


# -- an association's DIMSE messages ----------------------------------------------------------------------
def peer_maximum_pdu(assoc: Any) -> int:
    """The peer's maximum PDU length (0: no limit)."""
    return assoc.dimse.maximum_pdu_size


def message_sender(assoc: Any) -> Callable[[Any, int], None] | None:
    """``send(primitive, context_id)``: a DIMSE message sent on the association from any thread (the
    caller keeps its reactor from sending meanwhile), or None when this pynetdicom has no such method."""
    send = getattr(getattr(assoc, "dimse", None), "send_msg", None)
    return send if callable(send) else None


def after_each_pdata(assoc: Any, hook: Callable[[Any], None]) -> None:
    """Call ``hook(message)`` each time pynetdicom took in a P-DATA of the association: the DIMSE message
    being reassembled (a DIMSEMessage, None once a message is complete and handed on)."""
    dimse = assoc.dimse
    receive: Callable[[Any], None] = dimse.receive_primitive

    def receive_then_hook(primitive: Any) -> None:
        receive(primitive)
        hook(dimse.message)

    dimse.receive_primitive = receive_then_hook


def received_data_set(message: Any) -> Any:
    """Where pynetdicom collects the message's data set (a BytesIO, or what ``replace_received_data_set`` set)."""
    return message.data_set


def replace_received_data_set(message: Any, data_set: BytesIO) -> None:
    """pynetdicom writes the rest of the message's data set to ``data_set`` and hands it to the handler."""
    message.data_set = data_set


def received_bytes(message: Any) -> int:
    """The larger of the message's command set and data set received so far, in bytes."""
    return max(message.data_set.tell(), message.encoded_command_set.tell())


def drop_received(message: Any) -> None:
    """Free what the message collected (its association is being aborted)."""
    message.data_set, message.encoded_command_set = BytesIO(), BytesIO()


# -- an accepted association's reactor ------------------------------------------------------------------
def reactor_checkpoint(assoc: Any) -> Any:
    """The event an acceptor's reactor thread waits at between turns (None when there is none)."""
    return getattr(assoc, "_reactor_checkpoint", None)


def replace_reactor_checkpoint(assoc: Any, checkpoint: Any) -> None:
    """Make the reactor wait at ``checkpoint`` (``set``, ``clear``, ``is_set``, ``wait(timeout)``)."""
    assoc._reactor_checkpoint = checkpoint


def engine_attribute(assoc: Any, name: str) -> Any:
    """What the engine attached to the association under ``name`` (None when nothing)."""
    return getattr(assoc, f"_swf_{name}", None)


def attach_engine_attribute(assoc: Any, name: str, value: Any) -> None:
    """Attach something of the engine's to the association, for as long as it lives."""
    setattr(assoc, f"_swf_{name}", value)
