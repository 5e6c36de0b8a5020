"""Byte-level mutations shared by the grammar mutators (the grammar picks *where*, these pick *how*)."""
from __future__ import annotations

import random
import struct

INTERESTING_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                       0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
SPECIAL_BYTES = b"\x00\x0b\x1c\r\n|^~\\&.-/ \xff\x80"


def flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(buffer))
        choice = rng.random()
        if choice < 0.4:
            buffer[position] ^= 1 << rng.randrange(8)
        elif choice < 0.7:
            buffer[position] = rng.choice(SPECIAL_BYTES)
        else:
            buffer[position] = rng.randrange(256)
    return bytes(buffer)


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A head of one input followed by a tail of another."""
    return data[:rng.randint(0, len(data))] + other[rng.randint(0, len(other)):]


def cut_or_repeat(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 64))
    if rng.random() < 0.5:
        return data[:start] + data[end:]
    return data[:end] + data[start:end] * rng.randint(1, 20) + data[end:]


def put_length(rng: random.Random, data: bytes, offset: int, size: int, big_endian: bool = True) -> bytes:
    """Overwrite the ``size``-byte length at ``offset`` with an interesting value (or a near miss)."""
    if offset + size > len(data):
        return data
    value = rng.choice(INTERESTING_LENGTHS) if rng.random() < 0.7 else rng.randrange(1 << (8 * size))
    value = (value + rng.choice((-1, 0, 0, 1))) % (1 << (8 * size))
    fmt = {1: "B", 2: "H", 4: "I"}[size]
    packed = struct.pack((">" if big_endian else "<") + fmt, value)
    return data[:offset] + packed + data[offset + size:]


def any_bytes(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One of the generic mutations, for any target."""
    choice = rng.random()
    if choice < 0.45:
        return flip(rng, data)
    if choice < 0.75:
        return cut_or_repeat(rng, data)
    return splice(rng, data, rng.choice(corpus) if corpus else data)
