"""C-STORE data sets through the engine's header reader (``dicom/wire/header.py``), which picks the
attributes the index needs from the bytes as received, in all four uncompressed transfer syntaxes.

Declared for bad input: ``HeaderError`` (0xC000), ``TooLarge`` (0xA700)."""
from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from engine.dicom.wire.header import HeaderError, TooLarge, read_header

from .. import datasets
from .. import dicom_bytes as db

NAME = "header"
SYNTAXES = (db.IMPLICIT_LE, db.EXPLICIT_LE, db.EXPLICIT_BE, db.DEFLATED)
KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "AccessionNumber", "Modality",
            "PatientID", "SpecificCharacterSet", "RequestAttributesSequence", "ReferencedPerformedProcedureStepSequence",
            "StudyDate", "NumberOfFrames")


def refused(exc: BaseException) -> bool:
    return isinstance(exc, (HeaderError, TooLarge))


def _explicit(data: bytes, big: bool) -> bytes:
    """The implicit seed re-encoded explicit (UI/CS/LO/PN/SH as they come; OB for pixel data)."""
    out = b""
    vrs = {0x00080016: b"UI", 0x00080018: b"UI", 0x00080050: b"SH", 0x00080060: b"CS", 0x00100010: b"PN",
           0x00100020: b"LO", 0x0020000D: b"UI", 0x0020000E: b"UI", 0x00200013: b"IS"}
    for offset, tag, length in datasets.walk(data):
        value = data[offset + 8: offset + 8 + length]
        order = ">" if big else "<"
        if tag == 0x7FE00010:
            out += struct.pack(order + "HH2sxxI", tag >> 16, tag & 0xFFFF, b"OB", length) + value
        else:
            out += struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, vrs.get(tag, b"LO"), length) + value
    return out


def seeds() -> list[bytes]:
    """The first byte picks the transfer syntax; the rest is the data set."""
    implicit = db.ct_data_set()
    explicit = _explicit(implicit, False)
    nested = implicit[:-24] + datasets.sequence(0x00400275, datasets.keyword_element("AccessionNumber", b"A1"))
    deep = implicit
    for _ in range(120):
        deep = datasets.sequence(0x00400275, deep, undefined=True)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    return [b"\x00" + implicit, b"\x01" + explicit, b"\x02" + _explicit(implicit, True),
            b"\x03" + deflate.compress(explicit) + deflate.flush(), b"\x00" + nested, b"\x00" + deep,
            b"\x00" + db.ct_data_set(study="../..", instance="1." + "2" * 70), b"\x03" + zlib.compress(b"\0" * 100000)[2:]]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    head, body = data[:1] or b"\x00", data[1:]
    if rng.random() < 0.05:
        head = bytes([rng.randrange(4)])
    return head + datasets.mutate(rng, body, [c[1:] for c in corpus], KEYWORDS)


class Target:
    def __init__(self, workdir: Path):
        self.workdir = workdir

    def run(self, data: bytes) -> None:
        syntax = SYNTAXES[data[0] % 4] if data else db.IMPLICIT_LE
        read_header(memoryview(data[1:]), syntax, 1 << 20, self.workdir)

    def close(self) -> None:
        pass
