"""MLLP framing: the decoder fed a byte stream cut at random places, as TCP may deliver it.

Declared for bad input: nothing (junk and oversized frames are reported through callbacks).  Checked:
the frames and oversize reports are the same however the stream is cut, and the decoder never holds
more than the size limit plus one read."""
from __future__ import annotations

import random
from pathlib import Path

from engine.hl7.mllp import END_BLOCK, START_BLOCK, MLLPDecoder

from .. import mutate as bytewise

NAME = "mllp"
LIMIT = 512                      # mllp.max_message_bytes for the fuzzed decoder: small, so oversize is reached


class FramingDiffers(AssertionError):
    """Two cuttings of the same stream gave different frames."""


def refused(exc: BaseException) -> bool:
    return False


def seeds() -> list[bytes]:
    message = b"MSH|^~\\&|RIS|H|E|R|20250304||ORM^O01|C1|P|2.3.1\rPID|1||P1\r"
    return [START_BLOCK + message + END_BLOCK, START_BLOCK + message + END_BLOCK + START_BLOCK + message + END_BLOCK,
            b"\r\n" + START_BLOCK + message + END_BLOCK + b"junk", START_BLOCK + message * 8 + END_BLOCK,
            START_BLOCK + message + START_BLOCK + message + END_BLOCK, START_BLOCK + b"x\x1c" + b"\r" + END_BLOCK,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", START_BLOCK + END_BLOCK, START_BLOCK * 3 + b"\x1c" * 3 + b"\r" * 3]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    position = rng.randrange(len(data) + 1)
    insert = rng.choice((START_BLOCK, END_BLOCK, b"\x1c", b"\r", b"x" * rng.randint(1, 600), rng.choice(corpus)))
    if rng.random() < 0.5:
        return data[:position] + insert + data[position:]
    return data[:position] + insert + data[position + rng.randint(0, 4):]


def _decode(data: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    events: list[tuple[str, bytes]] = []
    # An oversized frame's head is what was held when it passed the limit: its first LIMIT bytes are compared.
    decoder = MLLPDecoder(LIMIT, lambda m: events.append(("frame", m)),
                          lambda h: events.append(("oversize", h[:LIMIT])), lambda junk: None)
    start = 0
    for end in cuts + [len(data)]:
        decoder.feed(data[start:end])
        if decoder.buffered > LIMIT + (end - start) + len(END_BLOCK):
            raise AssertionError(f"decoder holds {decoder.buffered} bytes, over {LIMIT} plus one read")
        start = end
    return events


class Target:
    def __init__(self, workdir: Path):
        pass

    def run(self, data: bytes) -> None:
        whole = _decode(data, [])
        rng = random.Random(len(data))
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(min(len(data), rng.randint(1, 8))))
        for cutting in (cuts, list(range(1, len(data)))[:2000]):
            if _decode(data, cutting) != whole:
                raise FramingDiffers(f"cut at {cutting[:10]}: frames differ")

    def close(self) -> None:
        pass
