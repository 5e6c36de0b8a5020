"""DICOM Upper Layer PDUs (PS3.8 section 9.3) as plain bytes, for the listener's gate and the direct storage path.

Only what ``admission.py`` and ``direct_storage.py`` need: peek at the first PDU, read PDUs with bounded
memory, parse an A-ASSOCIATE-RQ, write the A-ASSOCIATE-AC / -RJ, P-DATA-TF, A-RELEASE-RP and A-ABORT PDUs.
Everything else about associations is pynetdicom's (``dicom/ae.py``).
"""
from __future__ import annotations

import select
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
# A-ABORT reasons of the service provider (PS3.8 Table 9-26)
UNRECOGNIZED_PDU, UNEXPECTED_PDU, INVALID_PARAMETER_VALUE = 1, 2, 6
HEADER = struct.Struct(">BxI")
ITEM_HEADER = struct.Struct(">BxH")
PDV_HEADER = struct.Struct(">IBB")
PDU_TYPES = frozenset(range(ASSOCIATE_RQ, ABORT + 1))
# An A-ASSOCIATE-RQ is a few KiB (128 contexts with 3 transfer syntaxes each: ~15 KiB); a larger one is refused
# before anything is read into memory.
LARGEST_ASSOCIATE_RQ = 1 << 16
# Presentation context IDs are the odd numbers 1-255 (PS3.8 9.3.2.2): a request with more contexts is malformed.
MAX_PRESENTATION_CONTEXTS = 128
NO_LIMIT_PDU = 1 << 26        # the largest PDU read when we announce no maximum length (0)
FIRST_CHUNK = 1 << 16         # a PDU body's buffer starts at this size and doubles as bytes arrive
CLOSED = select.POLLRDHUP | select.POLLHUP | select.POLLERR


class PduError(ValueError):
    """The peer sent something that is not a well-formed PDU of the kind expected."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER_VALUE):
        super().__init__(message)
        self.reason = reason            # the A-ABORT reason that answers it (PS3.8 Table 9-26)


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
                if len(request.contexts) > MAX_PRESENTATION_CONTEXTS:
                    raise PduError(f"more than {MAX_PRESENTATION_CONTEXTS} presentation contexts")
            elif kind == 0x50:
                for sub_kind, sub_value in _items(value):
                    request.user_items.add(sub_kind)
                    if sub_kind == MAXIMUM_LENGTH and len(sub_value) == 4:
                        request.maximum_length = struct.unpack(">I", sub_value)[0]
    except (UnicodeDecodeError, struct.error, IndexError) as exc:
        raise PduError(f"malformed A-ASSOCIATE-RQ: {exc}") from None
    return request


def largest_pdu(maximum_length: int) -> int:
    """The largest PDU length accepted on an association whose maximum length we announced (0: none)."""
    return (maximum_length or NO_LIMIT_PDU) + 64


def peek_pdu(sock: socket.socket, timeout: float, limit: int = LARGEST_ASSOCIATE_RQ) -> bytes:
    """The first PDU on the connection, left unread (MSG_PEEK) so another reader can still take it.

    Raises PduError when it is not an A-ASSOCIATE-RQ or is larger than ``limit`` (decided from the first
    byte and the header, before the body is waited for), TimeoutError when it is not whole within
    ``timeout``, PeerClosed when the connection ends first."""
    deadline = time.monotonic() + timeout
    first = _peek_at_least(sock, 1, deadline)
    if first[0] != ASSOCIATE_RQ:
        raise PduError(f"first byte 0x{first[0]:02X} is not an A-ASSOCIATE-RQ",
                       UNEXPECTED_PDU if first[0] in PDU_TYPES else UNRECOGNIZED_PDU)
    wanted = 6 + HEADER.unpack(_peek_at_least(sock, 6, deadline))[1]
    if wanted > limit:
        raise PduError(f"A-ASSOCIATE-RQ of {wanted} bytes, more than {limit}")
    return _peek_at_least(sock, wanted, deadline)


def _peek_at_least(sock: socket.socket, count: int, deadline: float) -> bytes:
    """The first ``count`` bytes, peeked.  Why not a loop of peeks: a socket with unread bytes stays readable,
    so waiting for more would poll.  The low-water mark (SO_RCVLOWAT) makes poll() wait until ``count``
    bytes are in, and POLLRDHUP reports the peer's close even while bytes are unread."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLRDHUP)
        while True:
            remaining = deadline - time.monotonic()
            events = poller.poll(max(remaining, 0) * 1000) if remaining > 0 else []
            if not events:
                raise TimeoutError(f"{count} bytes not received within the time allowed")
            data = sock.recv(count, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if len(data) >= count:
                return data
            if not data or events[0][1] & CLOSED:
                raise PeerClosed("connection closed before a whole A-ASSOCIATE-RQ arrived")
            # Readable below the mark: the kernel capped it (or the socket is not TCP). Wait, never spin.
            time.sleep(0.05)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def receive(sock: socket.socket, count: int) -> bytearray:
    """``count`` bytes, fewer only when the peer closed.  The buffer grows as bytes arrive (from 64 KiB,
    doubling), so a length the peer declares but never sends costs no memory."""
    buffer = bytearray(min(count, FIRST_CHUNK))
    received = 0
    while received < count:
        if received == len(buffer):
            buffer += bytes(min(count, 2 * len(buffer)) - len(buffer))
        got = sock.recv_into(memoryview(buffer)[received:])
        if not got:
            del buffer[received:]
            return buffer
        received += got
    return buffer


def _recv_exactly(sock: socket.socket, count: int) -> bytearray:
    buffer = receive(sock, count)
    if len(buffer) < count:
        raise PeerClosed("connection closed in the middle of a PDU")
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


def send_quietly(sock: socket.socket, pdu: bytes) -> None:
    """Send a last PDU (A-ABORT, A-ASSOCIATE-RJ) to a peer that may already be gone."""
    try:
        sock.sendall(pdu)
    except OSError:
        pass


def close(sock: socket.socket) -> None:
    """Shut down both directions, then close: the peer sees the end at once, even mid-read."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
