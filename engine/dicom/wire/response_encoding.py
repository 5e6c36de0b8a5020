"""Response identifiers written straight to little-endian bytes.

A worklist response is a small tree of text elements and sequences.  Building a pydicom Dataset for it
and letting pydicom write it costs ~1 ms per item (bench/RESULTS.md, MWL profile), most of it in
per-element machinery that text values do not need.  This writer handles exactly the common case (text
VRs with str values, sequences, Implicit or Explicit VR Little Endian, a single-byte or UTF-8 character
set) and produces the bytes pydicom would (tests/unit/test_response_encoding.py compares them).
Anything else raises ``NotPlain`` and the caller lets pydicom encode that response.

An element is ``(tag, VR, value)``: value None (zero length), a str, a list of str (multi-valued), or,
for VR SQ, a list of items, each a list of elements.  Elements of a dataset are written in tag order.
"""
from __future__ import annotations

from operator import itemgetter
from struct import Struct
from typing import Any

Element = tuple[int, str, Any]

# Text VRs whose bytes follow the Specific Character Set (PS3.5 6.1.2.3); the others are plain ASCII.
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
ITEM = Struct("<HHI")
IMPLICIT_HEADER = Struct("<HHI")
EXPLICIT_SHORT = Struct("<HH2sH")
EXPLICIT_LONG = Struct("<HH2s2xI")
ITEM_TAG = (0xFFFE, 0xE000)
by_tag = itemgetter(0)


class NotPlain(ValueError):
    """The response holds something this writer does not handle; pydicom must encode it."""


def encode_elements(elements: list[Element], explicit_vr: bool, codec: str) -> bytes:
    """The dataset's bytes; ``codec`` is the Python codec of its Specific Character Set ('latin_1' when none)."""
    out = bytearray()
    _write(out, elements, explicit_vr, codec)
    return bytes(out)


def _write(out: bytearray, elements: list[Element], explicit_vr: bool, codec: str) -> None:
    for tag, vr, value in sorted(elements, key=by_tag):
        if vr == "SQ":
            body = bytearray()
            for item in value or ():
                item_body = bytearray()
                _write(item_body, item, explicit_vr, codec)
                body += ITEM.pack(*ITEM_TAG, len(item_body))
                body += item_body
        else:
            body = _value(vr, value, codec)
        _header(out, tag, vr, len(body), explicit_vr)
        out += body


def _value(vr: str, value: Any, codec: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        values = (value,)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        values = value
    else:
        raise NotPlain(f"{vr} value of type {type(value).__name__}")
    if vr in CHARSET_VRS:
        encoding = codec
    elif vr in ASCII_VRS:
        encoding = "latin_1"
    else:
        raise NotPlain(f"VR {vr}")
    try:
        data = b"\\".join(v.encode(encoding) for v in values)
    except UnicodeEncodeError as exc:
        raise NotPlain(str(exc)) from exc
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data


def _header(out: bytearray, tag: int, vr: str, length: int, explicit_vr: bool) -> None:
    group, element = tag >> 16, tag & 0xFFFF
    if not explicit_vr:
        out += IMPLICIT_HEADER.pack(group, element, length)
    elif vr in LONG_LENGTH_VRS:
        out += EXPLICIT_LONG.pack(group, element, vr.encode("ascii"), length)
    elif length > 0xFFFF:
        raise NotPlain(f"{vr} value of {length} bytes")
    else:
        out += EXPLICIT_SHORT.pack(group, element, vr.encode("ascii"), length)


# -- the same bytes from values extracted once per item (the worklist's ASCII fast path) -----------------
# A key of a compiled plan: (tag, VR, the keys of its item for VR SQ else None); a dataset's keys in tag
# order.  Its values: for a text key the value bytes (padded), for a sequence a list of items' values.
PlainKey = tuple[int, str, Any]
_IMPLICIT_TAG = Struct("<HH")
_LENGTH4 = Struct("<I")
_LENGTH2 = Struct("<H")


def plain_headers(keys: tuple[PlainKey, ...], explicit_vr: bool) -> tuple:
    """Each key's header without its length (and whether its length takes 4 bytes), children included."""
    headers = []
    for tag, vr, children in keys:
        group, element = tag >> 16, tag & 0xFFFF
        if not explicit_vr:
            prefix, long = _IMPLICIT_TAG.pack(group, element), True
        elif vr in LONG_LENGTH_VRS:
            prefix, long = _IMPLICIT_TAG.pack(group, element) + vr.encode("ascii") + b"\0\0", True
        else:
            prefix, long = _IMPLICIT_TAG.pack(group, element) + vr.encode("ascii"), False
        headers.append((prefix, long, plain_headers(children, explicit_vr) if children is not None else None))
    return tuple(headers)


def encode_plain(headers: tuple, values: list) -> bytes:
    """The dataset's bytes from ``plain_headers`` and the values extracted for the same keys."""
    out = bytearray()
    for (prefix, long, children), value in zip(headers, values):
        if children is not None:
            body = bytearray()
            for item in value:
                item_body = encode_plain(children, item)
                body += ITEM.pack(*ITEM_TAG, len(item_body))
                body += item_body
            value = body
        out += prefix
        if long:
            out += _LENGTH4.pack(len(value))
        elif len(value) > 0xFFFF:
            raise NotPlain(f"value of {len(value)} bytes")
        else:
            out += _LENGTH2.pack(len(value))
        out += value
    return bytes(out)
