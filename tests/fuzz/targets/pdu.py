"""A-ASSOCIATE-RQ PDUs through the listener's gate and the direct path's negotiation: the engine's own
parser (``dicom/wire/upper_layer.py``), then the A-ASSOCIATE-AC the direct path would answer, which a
peer (pynetdicom's decoder) must be able to read.

Declared for bad input: ``PduError`` (the gate answers it with an A-ABORT)."""
from __future__ import annotations

import random
import struct
from pathlib import Path
from types import SimpleNamespace

from pynetdicom.pdu import A_ASSOCIATE_AC

from engine.dicom.directory import AEDirectory
from engine.dicom.wire import upper_layer as ul
from engine.dicom.wire.direct_storage import DirectStorage

from .. import dicom_bytes as db
from .. import mutate as bytewise

NAME = "pdu"


class AnswerUnreadable(AssertionError):
    """The A-ASSOCIATE-AC built for a request is not a PDU a peer can decode."""


def refused(exc: BaseException) -> bool:
    return isinstance(exc, ul.PduError)


def seeds() -> list[bytes]:
    gigabytes = bytearray(db.associate_rq())
    struct.pack_into(">H", gigabytes, 74 + 2, 0xFFFF)                 # io-dicom #40: item lengths far past the PDU
    struct.pack_into(">I", gigabytes, 2, 0xFFFFFFF0)                   # and a PDU length of ~4 GB
    many = tuple((2 * n + 1, db.CT_IMAGE, (db.IMPLICIT_LE,)) for n in range(128))
    return [db.associate_rq(), bytes(gigabytes), db.associate_rq(contexts=many),
            db.associate_rq(contexts=((1, "1.2.840.10008.5.1.4.31", (db.IMPLICIT_LE,)),)),
            db.associate_rq(contexts=((1, db.CT_IMAGE, ()),)), db.associate_rq(contexts=()),
            db.associate_rq(maximum_length=0, extra_user=db.item(0x54, b"\x00\x1a1.2.840.10008.5.1.4.1.1.2\x01\x01")),
            db.associate_rq(called=b"OTHER"), b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n"]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """Lengths first: the PDU length, then any item or sub-item header found walking the variable part."""
    offsets = [2] + _item_offsets(data)
    choice = rng.random()
    if choice < 0.6:
        offset = rng.choice(offsets)
        return bytewise.put_length(rng, data, offset, 4 if offset == 2 else 2)
    if choice < 0.75 and len(offsets) > 1:                                # an item's type byte
        offset = rng.choice(offsets[1:]) - 2
        buffer = bytearray(data)
        buffer[offset] = rng.choice((0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
                                     0x58, 0x59, 0x00, 0xFF))
        return bytes(buffer)
    if choice < 0.9:                                                     # an item copied or dropped
        starts = [offset - 2 for offset in offsets[1:]]
        if starts:
            start = rng.choice(starts)
            length = struct.unpack_from(">H", data, start + 2)[0] if start + 4 <= len(data) else 0
            chunk = data[start:start + 4 + length]
            data = data[:start] + chunk * rng.randint(0, 3) + data[start + 4 + length:]
            return data[:2] + struct.pack(">I", max(0, len(data) - 6)) + data[6:]
    return bytewise.flip(rng, data)


def _item_offsets(data: bytes) -> list[int]:
    """Offsets of the 2-byte length of each item and sub-item (as far as they can be walked)."""
    found: list[int] = []

    def walk(start: int, end: int, depth: int) -> None:
        offset = start
        while offset + 4 <= end and len(found) < 300:
            kind, length = struct.unpack_from(">BxH", data, offset)
            found.append(offset + 2)
            inner = offset + 4
            if depth == 0 and kind == 0x20:
                walk(inner + 4, min(end, inner + length), 1)
            elif depth == 0 and kind == 0x50:
                walk(inner, min(end, inner + length), 1)
            offset = inner + length
    walk(74, len(data), 0)
    return found


class Target:
    def __init__(self, workdir: Path):
        context = SimpleNamespace(ae_title="SWF_ENGINE", directory=AEDirectory.from_config({}, allow_any=True))
        supported = {db.CT_IMAGE: [db.EXPLICIT_LE, db.IMPLICIT_LE], db.VERIFICATION: [db.IMPLICIT_LE]}
        self.direct = DirectStorage.__new__(DirectStorage)
        self.direct.context, self.direct.supported = context, supported

    def run(self, data: bytes) -> None:
        if len(data) >= 6 and 6 + struct.unpack_from(">I", data, 2)[0] > ul.LARGEST_ASSOCIATE_RQ:
            raise ul.PduError("over LARGEST_ASSOCIATE_RQ")        # what peek_pdu decides from the header
        request = ul.parse_associate_rq(data)
        results = self.direct._negotiate(request)
        if results is None:
            return
        answer = ul.associate_ac(request, results, 16384, "1.2.3.4", "FUZZ")
        try:
            A_ASSOCIATE_AC().decode(answer)
        except Exception as exc:
            raise AnswerUnreadable(f"A-ASSOCIATE-AC not decodable: {exc!r}") from None

    def close(self) -> None:
        pass
