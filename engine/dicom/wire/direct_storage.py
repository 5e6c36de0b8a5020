"""Storage associations served directly, without pynetdicom's association machinery.

Why: a C-STORE through pynetdicom passes a DUL thread and an association thread that poll each other
with 1 ms sleeps, and decodes and re-encodes every command through pydicom.  A minimal pynetdicom SCP
that discards what it receives reaches ~30-45 % of DCMTK storescp on CT-sized images here
(bench/RESULTS.md, storage), below the engine's target of 50 % *with* durable indexing.

What: pynetdicom keeps the listening socket and its thread per connection.  ``dicom/admission.py`` peeks at
each connection's A-ASSOCIATE-RQ (it stays unread), admits it, and offers it here first.  An association that only
proposes storage SOP classes and Verification, to our AE title, from an admitted calling AE, with no
negotiation items beyond the maximum length and implementation identification, is served here on that
thread: A-ASSOCIATE-AC, then C-STORE / C-ECHO requests read with blocking socket reads and answered
through ``StorageService.receive`` (the same checks, file and index as the pynetdicom path), then
A-RELEASE.  Every other connection (queries, MPPS, commitment, C-GET roles, unknown callers, anything
malformed) goes to pynetdicom untouched.  ``dicom.direct_storage: false`` turns this path off.
"""
from __future__ import annotations

import logging
import socket
import struct
from typing import Any

from pydicom.dataset import Dataset

from ...store.incoming import IncomingDataSet
from ..ae import DicomContext, DicomServer
from ..services.storage import STORAGE_SOP_CLASSES, StorageService
from . import upper_layer as ul

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
C_STORE_RQ, C_STORE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
NO_DATA_SET = 0x0101
UNABLE_TO_PROCESS = 0xC211
COMMAND_FRAGMENT, LAST_FRAGMENT = 0x01, 0x02
# Command set elements (PS3.7 E.1), group 0000
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID, MESSAGE_ID_RESPONDED = 0x0002, 0x0100, 0x0110, 0x0120
DATA_SET_TYPE, STATUS, ERROR_COMMENT, AFFECTED_SOP_INSTANCE = 0x0800, 0x0900, 0x0902, 0x1000
PLAIN_USER_ITEMS = {ul.MAXIMUM_LENGTH, ul.IMPLEMENTATION_CLASS_UID, ul.IMPLEMENTATION_VERSION_NAME}
ELEMENT = struct.Struct("<HHI")
UNLIMITED = 1 << 26           # the PDU size we read when we announce no maximum (0)
MAX_COMMAND_BYTES = 1 << 16   # a C-STORE / C-ECHO command set is ~200 bytes


class AbortAssociation(Exception):
    """The peer broke the protocol: the association ends with an A-ABORT."""


def parse_command(data: bytes | bytearray) -> dict[int, bytes]:
    """Element number (group 0000) -> value bytes of an Implicit VR Little Endian command set."""
    elements: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        group, element, length = ELEMENT.unpack_from(data, offset)
        if group != 0 or offset + 8 + length > len(data):
            raise AbortAssociation("malformed command set")
        elements[element] = bytes(data[offset + 8: offset + 8 + length])
        offset += 8 + length
    return elements


def _us(value: bytes) -> int:
    if len(value) != 2:
        raise AbortAssociation("command element of VR US is not 2 bytes")
    return struct.unpack("<H", value)[0]


def _text(value: str, pad: bytes) -> bytes:
    data = value.encode("ascii", "replace")
    return data + pad if len(data) % 2 else data


def encode_command(elements: dict[int, bytes]) -> bytes:
    """The command set with its group length, elements in order."""
    body = b"".join(ELEMENT.pack(0, element, len(value)) + value for element, value in sorted(elements.items()))
    return ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def response_command(command_field: int, message_id: int, sop_class: str, status: int,
                     sop_instance: str = "", comment: str = "") -> bytes:
    elements = {AFFECTED_SOP_CLASS: _text(sop_class, b"\0"), COMMAND_FIELD: struct.pack("<H", command_field),
                MESSAGE_ID_RESPONDED: struct.pack("<H", message_id), DATA_SET_TYPE: struct.pack("<H", NO_DATA_SET),
                STATUS: struct.pack("<H", status)}
    if sop_instance:
        elements[AFFECTED_SOP_INSTANCE] = _text(sop_instance, b"\0")
    if comment:
        elements[ERROR_COMMENT] = _text(comment[:64], b" ")
    return encode_command(elements)


def serve_storage_directly(server: DicomServer) -> None:
    """Offer the direct path every association the listeners admit (when it stores at all), TLS ones too."""
    storage = next((service for service in server.services if isinstance(service, StorageService)), None)
    if storage is None:
        return
    direct = DirectStorage.for_ae(storage.context, server.ae, storage)
    for admission in server.admissions():
        admission.direct = direct


class DirectStorage:
    """Decides per association who serves it, and serves storage associations."""

    def __init__(self, context: DicomContext, storage: StorageService, supported: dict[str, list[str]],
                 implementation_uid: str, implementation_version: str):
        dicom = context.config.dicom
        self.context = context
        self.storage = storage
        self.supported = supported          # abstract syntax -> our transfer syntaxes, in preference order
        self.implementation_uid = implementation_uid
        self.implementation_version = implementation_version
        self.maximum_length = dicom.max_pdu_bytes

    @classmethod
    def for_ae(cls, context: DicomContext, ae: Any, storage: StorageService) -> DirectStorage:
        served = set(STORAGE_SOP_CLASSES) | {VERIFICATION}
        supported = {str(c.abstract_syntax): [str(ts) for ts in c.transfer_syntax]
                     for c in ae.supported_contexts if str(c.abstract_syntax) in served}
        return cls(context, storage, supported, ae.implementation_class_uid, ae.implementation_version_name or "")

    # -- who serves the association -----------------------------------------------------------------
    def take(self, sock: socket.socket, address: Any, request: ul.AssociateRQ) -> bool:
        """Serve the association (its A-ASSOCIATE-RQ peeked and admitted by ``dicom/admission.py``) when it
        asks for storage only; False, nothing read, to leave it to pynetdicom."""
        results = self._negotiate(request)
        if results is None:
            return False
        try:
            ul.read_pdu(sock, ul.LARGEST_ASSOCIATE_RQ)      # the A-ASSOCIATE-RQ peeked
            self._associate(sock, address, request, results)
        except Exception:  # noqa: BLE001 - one association's trouble never reaches the server thread
            log.exception("DICOM association from %s ended by an error", request.calling_title)
        finally:
            ul.close(sock)
        return True

    def _negotiate(self, request: ul.AssociateRQ) -> list[tuple[int, int, str]] | None:
        """Presentation context results when this path serves the request, None to leave it to pynetdicom."""
        directory = self.context.directory
        if (request.called_title != self.context.ae_title or request.application_context != ul.APPLICATION_CONTEXT
                or request.user_items - PLAIN_USER_ITEMS or not request.contexts
                or (not directory.allow_any and request.calling_title not in directory.entries)):
            return None
        results = []
        for proposed in request.contexts:
            ours = self.supported.get(proposed.abstract_syntax)
            if ours is None:
                return None
            chosen = next((ts for ts in ours if ts in proposed.transfer_syntaxes), "")
            if chosen:
                results.append((proposed.context_id, ul.ACCEPTANCE, chosen))
            else:
                results.append((proposed.context_id, ul.TRANSFER_SYNTAXES_NOT_SUPPORTED,
                                proposed.transfer_syntaxes[0] if proposed.transfer_syntaxes else ""))
        return results if any(result == ul.ACCEPTANCE for _id, result, _ts in results) else None

    # -- the association ----------------------------------------------------------------------------
    def _associate(self, sock: socket.socket, address: Any, request: ul.AssociateRQ,
                   results: list[tuple[int, int, str]]) -> None:
        dicom = self.context.config.dicom
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(dicom.network_timeout)
        sock.sendall(ul.associate_ac(request, results, self.maximum_length, self.implementation_uid,
                                     self.implementation_version))
        calling = request.calling_title
        log.info("DICOM association from %s (%s:%s) to %s", calling, address[0], address[1], self.context.ae_title)
        self.context.metrics.association_accepted(["storage"])
        accepted = {context_id: ts for context_id, result, ts in results if result == ul.ACCEPTANCE}
        largest = ul.largest_pdu(self.maximum_length)
        exchange = _Exchange(sock, request.maximum_length, self.storage.incoming)
        try:
            while True:
                kind, body = ul.read_pdu(sock, largest)
                if kind == ul.P_DATA_TF:
                    for context_id, control, fragment in ul.pdvs(body):
                        if context_id not in accepted:
                            raise AbortAssociation(f"PDV on presentation context {context_id}, not accepted")
                        message = exchange.add(context_id, control, fragment)
                        if message is not None:
                            self._answer(exchange, calling, address, accepted, *message)
                elif kind == ul.RELEASE_RQ:
                    sock.sendall(ul.release_rp())
                    log.debug("DICOM association from %s released", calling)
                    return
                elif kind == ul.ABORT:
                    log.warning("DICOM association from %s aborted by the peer", calling)
                    return
                else:
                    raise AbortAssociation(f"unexpected PDU type 0x{kind:02X}")
        except (AbortAssociation, ul.PduError) as exc:
            log.warning("DICOM association from %s aborted: %s", calling, exc)
            ul.send_quietly(sock, ul.abort(2, 2 if isinstance(exc, AbortAssociation) else 0))
        except TimeoutError:
            log.warning("DICOM association from %s aborted: nothing received for %.0f s", calling,
                        dicom.network_timeout)
            ul.send_quietly(sock, ul.abort())
        except (ul.PeerClosed, ConnectionError) as exc:
            log.warning("DICOM association from %s: connection lost (%s)", calling, exc)
        finally:
            exchange.close()

    def _answer(self, exchange: _Exchange, calling: str, address: Any, accepted: dict[int, str], context_id: int,
                command: dict[int, bytes], data: IncomingDataSet | None) -> None:
        command_field = _us(command.get(COMMAND_FIELD, b""))
        message_id = _us(command.get(MESSAGE_ID, b""))
        sop_class = command.get(AFFECTED_SOP_CLASS, b"").decode("ascii", "replace").rstrip("\0 ")
        if command_field == C_ECHO_RQ:
            exchange.send(context_id, response_command(C_ECHO_RSP, message_id, sop_class or VERIFICATION, 0x0000))
            return
        if command_field != C_STORE_RQ or data is None:
            if data is not None:
                data.close()
            raise AbortAssociation(f"command 0x{command_field:04X} on a storage association")
        sop_instance = command.get(AFFECTED_SOP_INSTANCE, b"").decode("ascii", "replace").rstrip("\0 ")
        try:
            outcome = self.storage.receive(calling, sop_class, sop_instance, accepted[context_id], data,
                                           str(address[0]), int(address[1]))
        except Exception:  # noqa: BLE001 - answered as pynetdicom answers a failing handler
            log.exception("C-STORE %r from %s failed", sop_instance, calling)
            outcome = UNABLE_TO_PROCESS
        finally:
            data.close()
        status, comment = (outcome, "") if isinstance(outcome, int) else _status_of(outcome)
        exchange.send(context_id, response_command(C_STORE_RSP, message_id, sop_class, status, sop_instance, comment))


def _status_of(dataset: Dataset) -> tuple[int, str]:
    return int(dataset.Status), str(dataset.get("ErrorComment", "") or "")


class _Exchange:
    """Reassembles DIMSE messages from PDVs and sends responses within the peer's maximum length.
    A data set goes to an IncomingDataSet as it arrives (bounded in memory and in size)."""

    def __init__(self, sock: socket.socket, peer_maximum: int, new_data_set: Callable[[], IncomingDataSet]):
        self.sock = sock
        self.fragment_size = (peer_maximum - 6) if peer_maximum else UNLIMITED
        self.command = bytearray()
        self.pending: tuple[int, dict[int, bytes]] | None = None   # a command waiting for its data set
        self.new_data_set = new_data_set
        self.data: IncomingDataSet | None = None

    def add(self, context_id: int, control: int, fragment: memoryview
            ) -> tuple[int, dict[int, bytes], IncomingDataSet | None] | None:
        """A whole message (context ID, command, data set or None) once its last fragment is in."""
        if control & COMMAND_FRAGMENT:
            if self.pending is not None:
                raise AbortAssociation("a command fragment before the previous command's data set")
            self.command += fragment
            if len(self.command) > MAX_COMMAND_BYTES:
                raise AbortAssociation(f"command set over {MAX_COMMAND_BYTES} bytes")
            if not control & LAST_FRAGMENT:
                return None
            command = parse_command(self.command)
            self.command = bytearray()
            if _us(command.get(DATA_SET_TYPE, struct.pack("<H", NO_DATA_SET))) == NO_DATA_SET:
                return context_id, command, None
            self.pending, self.data = (context_id, command), self.new_data_set()
            return None
        if self.pending is None or self.data is None or self.pending[0] != context_id:
            raise AbortAssociation("a data set fragment without its command")
        self.data.write(fragment)
        if not control & LAST_FRAGMENT:
            return None
        (context_id, command), data = self.pending, self.data
        self.pending, self.data = None, None
        return context_id, command, data

    def close(self) -> None:
        """The association ended: drop a data set still being received."""
        if self.data is not None:
            self.data.close()
            self.data = None

    def send(self, context_id: int, command: bytes) -> None:
        for start in range(0, len(command), self.fragment_size):
            last = start + self.fragment_size >= len(command)
            control = COMMAND_FRAGMENT | (LAST_FRAGMENT if last else 0)
            self.sock.sendall(ul.p_data(context_id, control, command[start:start + self.fragment_size]))
