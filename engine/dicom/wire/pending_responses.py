"""Pending C-FIND responses written to the association's socket already encoded, many per write.

pynetdicom sends each response of a C-FIND as its own DIMSE message: the command set and the identifier
each become one P-DATA PDU that its DUL thread picks up one loop turn at a time, after pydicom encoded
both.  A worklist answer of hundreds of items then cost ~2.5 ms per item (bench/RESULTS.md).  The
worklist SCP encodes each identifier itself and packs command + identifier into one P-DATA-TF PDU,
fragmented only when the peer's maximum PDU length asks for it.  Several responses are never packed
into one PDU (DCMTK findscu 3.6.7 crashed and pynetdicom read only the first message of such a PDU),
but many whole PDUs go out in one socket write from the handler's thread (``pdu_writer``: never in the
middle of a PDU the DUL thread sends): a handing-over per response through the DUL's queue and loop
took a quarter of a broad query's time.  ``flush`` writes what is left before the final (success,
cancel or failure) response goes through pynetdicom, so the order on the wire is kept.
"""
from __future__ import annotations

from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode

from .pynetdicom_private import pdu_writer, peer_maximum_pdu
from .upper_layer import HEADER, P_DATA_TF, PDV_HEADER

PDV_OVERHEAD = 6            # item length (4), presentation context ID (1), message control header (1)
COMMAND_LAST, DATA_MORE, DATA_LAST = 0x03, 0x00, 0x02
UNLIMITED_PDU = 1 << 20     # PDU size used when the peer announces no limit (maximum length 0)
WRITE_SIZE = 1 << 16        # bytes of whole PDUs gathered before one socket write


def pending_command(request: Any, status: int) -> bytes:
    """The encoded command set of a pending C-FIND-RSP with an identifier (always implicit VR LE)."""
    response = C_FIND()
    response.MessageIDBeingRespondedTo = request.MessageID
    response.AffectedSOPClassUID = request.AffectedSOPClassUID
    response.Status = status
    response.Identifier = BytesIO(b"\0\0")   # only its presence matters: sets Command Data Set Type
    message = C_FIND_RSP()
    message.primitive_to_message(response)
    return bytes(encode(message.command_set, True, True))


class PendingSender:
    """Writes (command, identifier) messages of one presentation context as P-DATA-TF PDUs, one message
    per PDU (more when it exceeds the peer's maximum), many PDUs per socket write."""

    def __init__(self, assoc: Any, context_id: int, command: bytes):
        self._write = pdu_writer(assoc)
        self._context_id = context_id
        peer_max = peer_maximum_pdu(assoc)
        self._capacity = peer_max if peer_max else UNLIMITED_PDU
        self._command_pdv = PDV_HEADER.pack(len(command) + 2, context_id, COMMAND_LAST) + command
        self._out = bytearray()

    def add(self, identifier: bytes) -> None:
        """One pending response, written once WRITE_SIZE bytes are gathered (or at ``flush``)."""
        if len(self._command_pdv) + PDV_OVERHEAD + len(identifier) <= self._capacity:   # the usual case
            out = self._out
            out += HEADER.pack(P_DATA_TF, len(self._command_pdv) + PDV_OVERHEAD + len(identifier))
            out += self._command_pdv
            out += PDV_HEADER.pack(len(identifier) + 2, self._context_id, DATA_LAST)
            out += identifier
        else:
            self._fragments(identifier)
        if len(self._out) >= WRITE_SIZE:
            self.flush()

    def _fragments(self, identifier: bytes) -> None:
        """A message larger than one PDU: the command, then the identifier in fragments that fill each PDU."""
        pdus: list[list[bytes]] = [[]]
        size = 0

        def append(control: int, fragment: bytes) -> None:
            nonlocal size
            if size + PDV_OVERHEAD + len(fragment) > self._capacity:
                pdus.append([])
                size = 0
            pdus[-1].append(PDV_HEADER.pack(len(fragment) + 2, self._context_id, control) + fragment)
            size += PDV_OVERHEAD + len(fragment)

        append(COMMAND_LAST, self._command_pdv[PDV_OVERHEAD:])
        remaining = memoryview(identifier)
        while True:
            room = self._capacity - size - PDV_OVERHEAD
            if room < 1:
                pdus.append([])
                size = 0
                continue
            if len(remaining) <= room:
                append(DATA_LAST, bytes(remaining))
                break
            append(DATA_MORE, bytes(remaining[:room]))
            remaining = remaining[room:]
        for pdvs in pdus:
            self._pdu(pdvs)

    def _pdu(self, pdvs: list[bytes]) -> None:
        if pdvs:
            body = b"".join(pdvs)
            self._out += HEADER.pack(P_DATA_TF, len(body)) + body

    def flush(self) -> None:
        """Write what is gathered (before the final response is handed to pynetdicom)."""
        if self._out:
            self._write(bytes(self._out))
            self._out = bytearray()


def encode_identifier(dataset: Dataset, transfer_syntax: Any) -> bytes:
    """An identifier encoded for the context's transfer syntax by pynetdicom (the general path)."""
    return bytes(encode(dataset, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                        transfer_syntax.is_deflated))
