"""Pending C-FIND responses handed to the DUL already encoded, one P-DATA each.

pynetdicom sends each response of a C-FIND as its own DIMSE message: the command set and the identifier
each become one P-DATA PDU that its DUL thread picks up one loop turn at a time, after pydicom encoded
both.  A worklist answer of hundreds of items then cost ~2.5 ms per item (bench/RESULTS.md).  The
worklist SCP encodes each identifier itself and hands command + identifier to the DUL as one P-DATA
primitive, fragmented only when the peer's maximum PDU length asks for it.  Several responses are never
packed into one PDU: DCMTK findscu 3.6.7 crashed and pynetdicom read only the first message of such a
PDU.  The final (success, cancel or failure) response still goes through pynetdicom, after these in the
same queue, so the order on the wire is kept.
"""
from __future__ import annotations

from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA

from .pynetdicom_private import pdu_sender, peer_maximum_pdu

PDV_OVERHEAD = 6            # item length (4), presentation context ID (1), message control header (1)
COMMAND_LAST, DATA_MORE, DATA_LAST = 0x03, 0x00, 0x02
UNLIMITED_PDU = 1 << 20     # PDU size used when the peer announces no limit (maximum length 0)


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
    """Sends (command, identifier) messages of one presentation context as P-DATA primitives."""

    def __init__(self, assoc: Any, context_id: int, command: bytes):
        self._send_pdu = pdu_sender(assoc)
        self._context_id = context_id
        self._command = command
        peer_max = peer_maximum_pdu(assoc)
        self._capacity = peer_max if peer_max else UNLIMITED_PDU
        self._pdvs: list[list] = []   # [context ID, control byte + fragment], as P_DATA wants them
        self._size = 0

    def add(self, identifier: bytes) -> None:
        """One pending response: its own P-DATA (more than one when it exceeds the peer's maximum)."""
        self._append(COMMAND_LAST, self._command)
        remaining = memoryview(identifier)
        while True:
            room = self._capacity - self._size - PDV_OVERHEAD
            if room < 1:
                self._flush()
                continue
            if len(remaining) <= room:
                self._append(DATA_LAST, bytes(remaining))
                break
            self._append(DATA_MORE, bytes(remaining[:room]))
            remaining = remaining[room:]
        self._flush()   # one message per PDU: pynetdicom and DCMTK read no further than a message's last PDV

    def _append(self, control: int, fragment: bytes) -> None:
        if self._size + PDV_OVERHEAD + len(fragment) > self._capacity:
            self._flush()
        self._pdvs.append([self._context_id, bytes((control,)) + fragment])
        self._size += PDV_OVERHEAD + len(fragment)

    def _flush(self) -> None:
        """Hand what is queued to the DUL as one P-DATA primitive."""
        if not self._pdvs:
            return
        primitive = P_DATA()
        primitive.presentation_data_value_list = self._pdvs
        self._send_pdu(primitive)
        self._pdvs, self._size = [], 0


def encode_identifier(dataset: Dataset, transfer_syntax: Any) -> bytes:
    """An identifier encoded for the context's transfer syntax by pynetdicom (the general path)."""
    return bytes(encode(dataset, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                        transfer_syntax.is_deflated))
