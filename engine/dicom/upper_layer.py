"""DICOM Upper Layer PDUs (PS3.8 section 9.3) as plain bytes, for the direct storage path.

Only what ``direct_storage.py`` needs: read one PDU from a socket, parse an A-ASSOCIATE-RQ, write the
A-ASSOCIATE-AC / -RJ, P-DATA-TF, A-RELEASE-RP and A-ABORT PDUs.  Everything else about associations is
pynetdicom's (``dicom/ae.py``).
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 1, 2, 3, 4, 5, 6, 7
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
# User Information sub-items (PS3.7 Annex D.3.3)
MAXIMUM_LENGTH, IMPLEMENTATION_CLASS_UID, ROLE_SELECTION = 0x51, 0x52, 0x54
IMPLEMENTATION_VERSION_NAME = 0x55
# Presentation context results (PS3.8 9.3.3.2)
ACCEPTANCE, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 0, 3, 4
HEADER = struct.Struct(">BxI")
ITEM_HEADER = struct.Struct(">BxH")
PDV_HEADER = struct.Struct(">IBB")
LARGEST_ASSOCIATE_RQ = 1 << 20


class PduError(ValueError):
    """The peer sent something that is not a well-formed PDU of the kind expected."""


class PeerClosed(ConnectionError):
    """The connection ended (between PDUs or in the middle of one)."""


@dataclass
class PresentationContextRQ:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass
class AssociateRQ:
    called_ae: bytes                   # the 16 bytes as sent: the AC echoes them
    calling_ae: bytes
    application_context: str
    contexts: list[PresentationContextRQ] = field(default_factory=list)
    maximum_length: int = 0            # the requestor's largest PDU it receives (0: no limit)
    user_items: set[int] = field(default_factory=set)   # sub-item types present in User Information

    @property
    def called_title(self) -> str:
        return self.called_ae.decode("ascii", "replace").strip()

    @property
    def calling_title(self) -> str:
        return self.calling_ae.decode("ascii", "replace").strip()


def _uid(data: bytes) -> str:
    return data.decode("ascii").rstrip("\0 ")


def _items(data: memoryview) -> list[tuple[int, memoryview]]:
    """(type, value) of each item of a variable field."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise PduError("truncated item header")
        kind, length = ITEM_HEADER.unpack_from(data, offset)
        value = data[offset + 4: offset + 4 + length]
        if len(value) != length:
            raise PduError(f"item 0x{kind:02X} longer than its PDU")
        items.append((kind, value))
        offset += 4 + length
    return items


def parse_associate_rq(pdu: bytes | memoryview) -> AssociateRQ:
    """An A-ASSOCIATE-RQ PDU (header included).  Raises PduError when malformed."""
    data = memoryview(pdu)
    if len(data) < 74 or data[0] != ASSOCIATE_RQ:
        raise PduError("not an A-ASSOCIATE-RQ")
    try:
        request = AssociateRQ(bytes(data[10:26]), bytes(data[26:42]), "")
        for kind, value in _items(data[74:]):
            if kind == 0x10:
                request.application_context = _uid(bytes(value))
            elif kind == 0x20:
                abstract, transfers = "", []
                for sub_kind, sub_value in _items(value[4:]):
                    if sub_kind == 0x30:
                        abstract = _uid(bytes(sub_value))
                    elif sub_kind == 0x40:
                        transfers.append(_uid(bytes(sub_value)))
                request.contexts.append(PresentationContextRQ(value[0], abstract, transfers))
            elif kind == 0x50:
                for sub_kind, sub_value in _items(value):
                    request.user_items.add(sub_kind)
                    if sub_kind == MAXIMUM_LENGTH and len(sub_value) == 4:
                        request.maximum_length = struct.unpack(">I", sub_value)[0]
    except (UnicodeDecodeError, struct.error, IndexError) as exc:
        raise PduError(f"malformed A-ASSOCIATE-RQ: {exc}") from None
    return request


def peek_pdu(sock: socket.socket, timeout: float, limit: int = LARGEST_ASSOCIATE_RQ) -> bytes:
    """The first PDU on the connection, left unread (MSG_PEEK) so another reader can still take it.

    Raises PduError when it is larger than ``limit``, TimeoutError when it is not whole within ``timeout``,
    PeerClosed when the connection ends first.  (A peeked socket stays readable, so a PDU that arrives in
    several segments is waited for in 1 ms steps; an A-ASSOCIATE-RQ nearly always comes in one.)"""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    wanted, whole_length_known, previous = 6, False, -1
    while True:
        data = sock.recv(wanted, socket.MSG_PEEK)
        if not data:
            raise PeerClosed("connection closed before a whole A-ASSOCIATE-RQ arrived")
        if data[0] != ASSOCIATE_RQ:
            # Decided at once: a peeked socket never reports the peer's close while bytes are unread,
            # so a probe that wrote a line and left would otherwise be waited for until the timeout.
            raise PduError(f"first byte 0x{data[0]:02X} is not an A-ASSOCIATE-RQ")
        if len(data) < wanted:
            if len(data) == previous and time.monotonic() > deadline:
                raise TimeoutError("A-ASSOCIATE-RQ incomplete")
            previous = len(data)
            time.sleep(0.001)
            continue
        if whole_length_known:
            return data
        wanted, whole_length_known = 6 + HEADER.unpack_from(data)[1], True
        if wanted > limit:
            raise PduError(f"first PDU of {wanted} bytes")


def _recv_exactly(sock: socket.socket, count: int) -> bytearray:
    buffer = bytearray(count)
    view = memoryview(buffer)
    received = 0
    while received < count:
        got = sock.recv_into(view[received:], count - received)
        if not got:
            raise PeerClosed("connection closed in the middle of a PDU")
        received += got
    return buffer


def read_pdu(sock: socket.socket, largest: int) -> tuple[int, bytearray]:
    """(type, body) of the next PDU; ``largest`` bounds the body (our maximum length plus slack)."""
    header = sock.recv(6, socket.MSG_WAITALL)
    if not header:
        raise PeerClosed("connection closed")
    if len(header) < 6:
        header += _recv_exactly(sock, 6 - len(header))
    kind, length = HEADER.unpack(header)
    if length > largest:
        raise PduError(f"PDU of {length} bytes, more than the {largest} announced")
    return kind, _recv_exactly(sock, length)


def pdvs(body: bytearray) -> list[tuple[int, int, memoryview]]:
    """(presentation context ID, message control header, fragment) of each PDV of a P-DATA-TF body."""
    view = memoryview(body)
    found, offset = [], 0
    while offset < len(view):
        if offset + 6 > len(view):
            raise PduError("truncated PDV item")
        length, context_id, control = PDV_HEADER.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > len(view):
            raise PduError("PDV item length does not fit its PDU")
        found.append((context_id, control, view[offset + 6: offset + 4 + length]))
        offset += 4 + length
    return found


def _item(kind: int, value: bytes) -> bytes:
    return ITEM_HEADER.pack(kind, len(value)) + value


def _pdu(kind: int, body: bytes) -> bytes:
    return HEADER.pack(kind, len(body)) + body


def associate_ac(request: AssociateRQ, results: list[tuple[int, int, str]], maximum_length: int,
                 implementation_uid: str, implementation_version: str) -> bytes:
    """A-ASSOCIATE-AC; ``results`` holds (context ID, result, accepted transfer syntax or '')."""
    body = bytearray(struct.pack(">HH", 1, 0) + request.called_ae + request.calling_ae + bytes(32))
    body += _item(0x10, APPLICATION_CONTEXT.encode("ascii"))
    for context_id, result, transfer_syntax in results:
        body += _item(0x21, bytes((context_id, 0, result, 0)) + _item(0x40, transfer_syntax.encode("ascii")))
    user = _item(MAXIMUM_LENGTH, struct.pack(">I", maximum_length))
    user += _item(IMPLEMENTATION_CLASS_UID, implementation_uid.encode("ascii"))
    if implementation_version:
        user += _item(IMPLEMENTATION_VERSION_NAME, implementation_version.encode("ascii"))
    body += _item(0x50, user)
    return _pdu(ASSOCIATE_AC, bytes(body))


def associate_rj(result: int, source: int, reason: int) -> bytes:
    return _pdu(ASSOCIATE_RJ, bytes((0, result, source, reason)))


def p_data(context_id: int, control: int, fragment: bytes) -> bytes:
    return _pdu(P_DATA_TF, PDV_HEADER.pack(len(fragment) + 2, context_id, control) + fragment)


def release_rp() -> bytes:
    return _pdu(RELEASE_RP, bytes(4))


def abort(source: int = 2, reason: int = 0) -> bytes:
    """A-ABORT; source 2 = service provider (reason 0: not specified, 2: unexpected PDU)."""
    return _pdu(ABORT, bytes((0, 0, source, reason)))
