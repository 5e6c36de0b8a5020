"""Grammar mutations of Implicit VR Little Endian data sets (identifiers, MPPS attribute lists, C-STORE
data sets): the element list is walked, then an element's value, length or presence is changed, an
element from a key list is added, or a sequence is nested."""
from __future__ import annotations

import random
import struct
import traceback

from pydicom.datadict import tag_for_keyword

from . import mutate as bytewise
from .dicom_bytes import element, even

VALUES = (b"", b"*", b"?", b"*?*", b"\\", b"\\\\\\", b"20250304", b"20250304-", b"-20250304", b"20250304-20250305",
          b"-", b"20251340", b"0830-0930", b"083000.000000", b"99", b"CT", b"CT\\MR\\US", b"DOE^JANE", b"D*^J?",
          b"=", b"^^^^", b"ISO_IR 100", b"ISO_IR 192", b"ISO 2022 IR 87", b"GB18030", b"BOGUS", b"\x1b$B",
          b"STUDY", b"SERIES", b"IMAGE", b"PATIENT", b"WORKLIST", b"1.2.3.1", b"1.2.3.1\\1.2.3.2", b"../..",
          b"1." + b"2" * 70, b"\xff\xfe", "Müller".encode("latin-1"), "東京".encode("utf-8"), b"x" * 300,
          b"IN PROGRESS", b"COMPLETED", b"DISCONTINUED", b"\x00\x00", b"0", b"-1", b"65536")


def walk(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, tag, value length) of the top-level elements, as far as they can be walked."""
    found, offset = [], 0
    while offset + 8 <= len(data) and len(found) < 200:
        group, number, length = struct.unpack_from("<HHI", data, offset)
        found.append((offset, (group << 16) | number, length))
        if length == 0xFFFFFFFF:
            break
        offset += 8 + length
    return found


def sequence(tag: int, *items: bytes, undefined: bool = False) -> bytes:
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(i)) + i for i in items)
    if undefined:
        body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + i + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                        for i in items)
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, 0xFFFFFFFF) + body + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(body)) + body


def keyword_element(keyword: str, value: bytes) -> bytes:
    tag = tag_for_keyword(keyword) or 0
    return element(tag >> 16, tag & 0xFFFF, value + (b" " if len(value) % 2 else b""))


def mutate(rng: random.Random, data: bytes, corpus: list[bytes], keywords: tuple[str, ...]) -> bytes:
    elements = walk(data)
    choice = rng.random()
    if elements and choice < 0.4:                                   # one value replaced
        offset, tag, length = rng.choice(elements)
        value = rng.choice(VALUES) if rng.random() < 0.85 else bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        value += b" " if len(value) % 2 else b""
        return data[:offset] + element(tag >> 16, tag & 0xFFFF, value) + data[offset + 8 + length:]
    if elements and choice < 0.5:                                   # one length
        offset, _tag, _length = rng.choice(elements)
        return bytewise.put_length(rng, data, offset + 4, 4, big_endian=False)
    if elements and choice < 0.6:                                   # one element dropped
        offset, _tag, length = rng.choice(elements)
        return data[:offset] + data[offset + 8 + length:]
    if choice < 0.85:                                               # one key added (kept in tag order)
        new = keyword_element(rng.choice(keywords), rng.choice(VALUES))
        if rng.random() < 0.2:
            new = sequence(tag_for_keyword(rng.choice(keywords)) or 0x00400100, new, undefined=rng.random() < 0.5)
        tag = struct.unpack_from("<HH", new)
        key = (tag[0] << 16) | tag[1]
        at = next((offset for offset, other, _ in elements if other > key), len(data))
        return data[:at] + new + data[at:]
    if choice < 0.9:                                                # a whole input nested in a sequence
        nested = rng.choice(corpus)
        for _ in range(rng.choice((1, 2, 5, 50))):
            nested = sequence(0x00400100, nested, undefined=rng.random() < 0.5)
        return data + nested
    return bytewise.any_bytes(rng, data, corpus)


def raised_while_decoding(exc: BaseException) -> bool:
    """The exception came out of pydicom/pynetdicom decoding a received value (the engine's services
    answer those with a failure status: the input's fault, not the engine's)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(part in frames[-1].filename for part in ("/pydicom/", "/pynetdicom/"))


def text(value: str) -> bytes:
    return even(value, b" ")
