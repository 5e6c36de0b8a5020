"""The few attributes the instance index needs, read straight from an encoded dataset.

A C-STORE brings the dataset encoded in the accepted transfer syntax.  Decoding it with pydicom costs
about as much as receiving it, so the Storage SCP only walks the element headers (tag, VR, length) and
decodes the values of the attributes it indexes (``WANTED``) plus two sequences (Request Attributes,
Referenced Series).  Everything else, pixel data included, is skipped by its length and never copied.

An element or sequence running past the end of the data set, sequences nested deeper than
``MAX_DEPTH``, or a data set without any SOP or study identity, is refused (``HeaderError``: C-STORE
0xC000 Cannot understand).  Anything else the fast reader does not expect (an unknown VR, an undefined
length where none may be) makes it give up; ``read_header`` then asks pydicom for the same attributes
(reading the buffer in place, never a copy of it), and refuses only when pydicom cannot read them either.

A deflated data set is inflated in bounded steps into a scratch file, never whole in memory; one that
inflates past the instance size limit raises ``TooLarge`` (C-STORE 0xA700 Out of resources).
"""
from __future__ import annotations

import io
import mmap
import re
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

# tag -> (keyword, VR).  The VR matters for implicit VR streams and for the binary US values.
WANTED: dict[int, tuple[str, str]] = {
    0x00080005: ("SpecificCharacterSet", "CS"),
    0x00080016: ("SOPClassUID", "UI"),
    0x00080018: ("SOPInstanceUID", "UI"),
    0x00080020: ("StudyDate", "DA"),
    0x00080021: ("SeriesDate", "DA"),
    0x00080023: ("ContentDate", "DA"),
    0x00080030: ("StudyTime", "TM"),
    0x00080031: ("SeriesTime", "TM"),
    0x00080033: ("ContentTime", "TM"),
    0x00080050: ("AccessionNumber", "SH"),
    0x00080060: ("Modality", "CS"),
    0x00080090: ("ReferringPhysicianName", "PN"),
    0x00081030: ("StudyDescription", "LO"),
    0x0008103E: ("SeriesDescription", "LO"),
    0x00081115: ("ReferencedSeriesSequence", "SQ"),
    0x00100010: ("PatientName", "PN"),
    0x00100020: ("PatientID", "LO"),
    0x00100021: ("IssuerOfPatientID", "LO"),
    0x00100030: ("PatientBirthDate", "DA"),
    0x00100040: ("PatientSex", "CS"),
    0x00180015: ("BodyPartExamined", "CS"),
    0x0020000D: ("StudyInstanceUID", "UI"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200010: ("StudyID", "SH"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00400275: ("RequestAttributesSequence", "SQ"),
    0x00700080: ("ContentLabel", "CS"),
    0x00700081: ("ContentDescription", "LO"),
    0x00700082: ("PresentationCreationDate", "DA"),
    0x00700083: ("PresentationCreationTime", "TM"),
    0x00700084: ("ContentCreatorName", "PN"),
}
# What is kept of each item of the two sequences read.
ITEM_WANTED: dict[int, dict[int, tuple[str, str]]] = {
    0x00400275: {
        0x00080050: ("AccessionNumber", "SH"),
        0x0020000D: ("StudyInstanceUID", "UI"),
        0x00400009: ("ScheduledProcedureStepID", "SH"),
        0x00401001: ("RequestedProcedureID", "SH"),
    },
    0x00081115: {
        0x0020000E: ("SeriesInstanceUID", "UI"),
    },
}
STOP_AT = 0x7FE00000          # nothing indexed lies at or after the pixel data group
MAX_DEPTH = 100               # nested sequences (real data sets stay within ~20; SR trees included)
INFLATE_STEP = 1 << 20        # inflated bytes produced per zlib call
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
_TEXT_DELIMITERS = {0x5C}      # backslash between values
_PN_DELIMITERS = {0x5C, 0x5E, 0x3D}
_CHARSET_TERM = re.compile(r"[A-Z0-9 _]*")


class HeaderError(ValueError):
    """The dataset cannot be read (C-STORE 0xC000 Cannot understand)."""


class TooLarge(ValueError):
    """The data set is larger than the configured instance size (C-STORE 0xA700 Out of resources)."""


class _Surprise(Exception):
    """The fast reader met something it does not handle; pydicom reads the dataset instead."""


class _Truncated(_Surprise):
    """An element or sequence runs past the end of the data set: refused, not guessed at."""


class _Stream:
    __slots__ = ("data", "big", "tag_u16", "u16", "u32", "implicit", "head")

    def __init__(self, data: memoryview | bytes, implicit: bool, big: bool):
        self.data = data
        self.implicit = implicit
        self.big = big
        order = ">" if big else "<"
        self.tag_u16 = struct.Struct(order + "HH")
        self.u16 = struct.Struct(order + "H")
        self.u32 = struct.Struct(order + "L")
        # one unpack per element header: (group, element, length) or (group, element, VR, short length)
        self.head = struct.Struct(order + ("HHL" if implicit else "HH2sH"))


def _walk(stream: _Stream, pos: int, end: int, wanted: dict[int, tuple[str, str]], stop: int,
          found: dict[int, tuple[str, int, int, bool, bool]] | None, depth: int = 0) -> int:
    """Walk elements from ``pos``; record the value span of wanted tags in ``found``.  Returns the
    position after the last element read: at ``end``, before a tag >= ``stop``, or after an Item
    Delimitation Item (for items of undefined length).  ``depth``: sequences around ``pos``."""
    if depth > MAX_DEPTH:
        raise HeaderError(f"data set cannot be read: sequences nested deeper than {MAX_DEPTH} levels")
    data = stream.data
    head, u32 = stream.head.unpack_from, stream.u32.unpack_from
    implicit = stream.implicit
    while pos < end:
        if pos + 8 > end:
            raise _Truncated("truncated element header")
        if implicit:
            group, element, length = head(data, pos)
            vr = b""
            header = 8
        else:
            group, element, vr, length = head(data, pos)
        tag = group << 16 | element
        if tag == _ITEM_END:
            return pos + 8
        if tag >= stop:
            return pos
        if not implicit:
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise _Truncated("truncated element header")
                length = u32(data, pos + 8)[0]
                header = 12
            elif vr.isalpha() and vr.isupper():
                header = 8
            else:
                raise _Surprise(f"unexpected VR bytes at {pos}")
        start = pos + header
        if length == _UNDEFINED:
            if not implicit and vr not in (b"SQ", b"UN", b"OB", b"OW"):
                raise _Surprise("undefined length on a VR that cannot have one")
            # Items of an undefined-length UN element are encoded implicit VR little endian (PS3.5 6.2.2).
            inner = stream if vr != b"UN" else _Stream(data, True, False)
            value_end = _skip_items(inner, start, end, depth + 1)
            if found is not None and tag in wanted:
                found[tag] = ("SQ", start, value_end, inner.implicit, inner.big)
            pos = value_end
        else:
            value_end = start + length
            if value_end > end:
                raise _Truncated("a value runs past the end of the data set")
            if found is not None and tag in wanted:
                # a sequence sent as UN (by a system that does not know it) is encoded implicit VR LE inside
                unknown = vr == b"UN"
                found[tag] = (vr.decode("ascii") if vr else "", start, value_end, implicit or unknown,
                              stream.big and not unknown)
            pos = value_end
    return pos


def _skip_items(stream: _Stream, pos: int, end: int, depth: int) -> int:
    """Skip the items of an undefined-length value; returns the position after its Sequence Delimitation Item."""
    data = stream.data
    while True:
        if pos + 8 > end:
            raise _Truncated("a sequence without its delimitation item")
        group, element = stream.tag_u16.unpack_from(data, pos)
        tag = group << 16 | element
        length = stream.u32.unpack_from(data, pos + 4)[0]
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM:
            raise _Surprise(f"expected an item tag at {pos}, found {tag:08X}")
        if length == _UNDEFINED:
            pos = _walk(stream, pos + 8, end, {}, 0x100000000, None, depth)
        else:
            pos += 8 + length


def _items(stream: _Stream, start: int, end: int, undefined: bool) -> list[tuple[int, int, bool]]:
    """(start, end, undefined) of each item of a sequence value."""
    data = stream.data
    items = []
    pos = start
    while pos + 8 <= end:
        group, element = stream.tag_u16.unpack_from(data, pos)
        tag = group << 16 | element
        length = stream.u32.unpack_from(data, pos + 4)[0]
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM:
            raise _Surprise("expected an item")
        if length == _UNDEFINED:
            item_end = _walk(stream, pos + 8, end, {}, 0x100000000, None)
            items.append((pos + 8, item_end, True))
            pos = item_end
        else:
            items.append((pos + 8, pos + 8 + length, False))
            pos += 8 + length
    return items


def _encodings(charset: str) -> list[str]:
    """Python codecs for a Specific Character Set value.  A term that cannot be a defined term (CS: upper
    case, digits, space, underscore) counts as unknown, as pydicom counts an unknown name: the default
    repertoire.  Why: pydicom's lookup raises ValueError on a NUL byte in the name (found by ``make fuzz``)."""
    from pydicom.charset import convert_encodings

    values = [v.strip() for v in charset.split("\\")] if charset else [""]
    return convert_encodings([value if _CHARSET_TERM.fullmatch(value) else "" for value in values])


def _text(raw: bytes, vr: str, encodings: list[str]) -> str:
    if vr in ("UI", "CS", "DA", "TM", "DT", "IS", "DS", "AS", "AE"):
        return raw.decode("ascii", "replace").strip("\x00 ")
    if len(encodings) == 1 and b"\x1b" not in raw:
        text = raw.decode(encodings[0], "replace")
    else:
        from pydicom.charset import decode_bytes

        text = decode_bytes(raw, encodings, _PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS)
    return text.rstrip("\x00 ").lstrip(" ") if vr != "PN" else text.rstrip("\x00 ")


def _value(stream: _Stream, span: tuple[str, int, int, bool, bool], vr: str, encodings: list[str]) -> Any:
    _, start, end, _, _ = span
    raw = bytes(stream.data[start:end])
    if vr == "US":
        count = len(raw) // 2
        if count == 0:
            return None
        return struct.unpack((">" if stream.big else "<") + "H", raw[:2])[0]
    return _text(raw, vr, encodings)


def _fast(data: memoryview | bytes, implicit: bool, big: bool) -> dict[str, Any]:
    stream = _Stream(data, implicit, big)
    found: dict[int, tuple[str, int, int, bool, bool]] = {}
    _walk(stream, 0, len(data), WANTED, STOP_AT, found)
    charset = ""
    if 0x00080005 in found:
        charset = _value(stream, found[0x00080005], "CS", [])
    encodings = _encodings(charset)
    attributes: dict[str, Any] = {}
    for tag, span in found.items():
        keyword, vr = WANTED[tag]
        if vr == "SQ":
            sequence_stream = stream if span[3] == stream.implicit and span[4] == stream.big else \
                _Stream(data, span[3], span[4])
            items = []
            for item_start, item_end, _undefined in _items(sequence_stream, span[1], span[2], True):
                item_found: dict[int, tuple[str, int, int, bool, bool]] = {}
                _walk(sequence_stream, item_start, item_end, ITEM_WANTED[tag], 0x100000000, item_found)
                items.append({ITEM_WANTED[tag][t][0]: _value(sequence_stream, s, ITEM_WANTED[tag][t][1], encodings)
                              for t, s in item_found.items()})
            attributes[keyword] = items
        else:
            attributes[keyword] = _value(stream, span, vr, encodings)
    return attributes


class _BufferReader(io.RawIOBase):
    """A read-only file over a buffer, without copying it (pydicom reads from files)."""

    def __init__(self, data: memoryview | bytes | mmap.mmap):
        self.view = memoryview(data).cast("B")
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), len(self.view) - self.position))
        buffer[:count] = self.view[self.position:self.position + count]
        self.position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.view)}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.view.release()
        super().close()


def _with_pydicom(data: memoryview | bytes | mmap.mmap, implicit: bool, big: bool) -> dict[str, Any]:
    """The same attributes, read by pydicom (slow path for what the fast reader does not handle)."""
    from pydicom.filereader import read_dataset

    with _BufferReader(data) as reader:
        dataset = read_dataset(reader, implicit, not big, stop_when=lambda tag, vr, length: tag >= STOP_AT)
    attributes: dict[str, Any] = {}
    for tag, (keyword, vr) in WANTED.items():
        if tag not in dataset:
            continue
        element = dataset[tag]
        if vr == "SQ":
            items = []
            for item in element.value or []:
                entry = {}
                for item_keyword, item_vr in ITEM_WANTED[tag].values():
                    if item_keyword in item:
                        entry[item_keyword] = _plain(item[item_keyword].value, item_vr)
                items.append(entry)
            attributes[keyword] = items
        else:
            attributes[keyword] = _plain(element.value, vr)
    return attributes


def _plain(value: Any, vr: str) -> Any:
    if value is None:
        return "" if vr != "US" else None
    if vr == "US":
        return int(value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).rstrip("\x00 ")


def inflate(data: memoryview | bytes, limit: int, into: BinaryIO) -> int:
    """Inflate a deflated data set into ``into``, ``INFLATE_STEP`` bytes at a time; its inflated size.
    Raises TooLarge past ``limit`` bytes, HeaderError when it is not a deflate stream."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending: memoryview | bytes = data
    size = 0
    try:
        while True:
            chunk = inflater.decompress(pending, INFLATE_STEP)
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"deflated data set inflates to more than {limit} bytes")
            into.write(chunk)
            pending = inflater.unconsumed_tail
            if not pending and len(chunk) < INFLATE_STEP:
                return size
    except zlib.error as exc:
        raise HeaderError(f"deflated data set cannot be inflated: {exc}") from None


def read_header(data: bytes | memoryview, transfer_syntax_uid: str, max_inflated_bytes: int = 2 << 30,
                scratch_dir: Path | None = None) -> dict[str, Any]:
    """keyword -> value of the ``WANTED`` attributes present (text as str, US as int; the two sequences
    as lists of dicts).  Raises HeaderError when the data set cannot be read at all, TooLarge when a
    deflated one inflates past ``max_inflated_bytes`` (inflated into a temporary file in ``scratch_dir``)."""
    if transfer_syntax_uid != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return _read(data, transfer_syntax_uid)
    with tempfile.TemporaryFile(dir=scratch_dir) as scratch:
        if not inflate(data, max_inflated_bytes, scratch):
            return _read(b"", transfer_syntax_uid)
        scratch.flush()
        with mmap.mmap(scratch.fileno(), 0, access=mmap.ACCESS_READ) as inflated:
            return _read(inflated, transfer_syntax_uid)


def _read(data: bytes | memoryview | mmap.mmap, transfer_syntax_uid: str) -> dict[str, Any]:
    implicit = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    big = transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN
    try:
        attributes = _fast(data, implicit, big)
        if not any(attributes.get(k) for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")):
            raise HeaderError("data set cannot be read: no SOP or study identity found")
        return attributes
    except _Truncated as exc:
        raise HeaderError(f"data set cannot be read: {exc}") from None
    except (_Surprise, struct.error, UnicodeError, LookupError):
        pass
    try:
        attributes = _with_pydicom(data, implicit, big)
    except Exception as exc:  # noqa: BLE001 - whatever pydicom raises, the data set is unreadable
        raise HeaderError(f"data set cannot be read: {exc}") from None
    if not (attributes.get("SOPClassUID") and attributes.get("SOPInstanceUID")):
        # malformed for the fast reader and pydicom (lenient as it is) finds no SOP identity either
        raise HeaderError("data set cannot be read: malformed element stream")
    return attributes
