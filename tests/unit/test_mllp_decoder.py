"""The MLLP decoder searches each byte once: a frame trickled in one byte at a time costs linear time."""
from __future__ import annotations

import time

from engine.hl7.mllp import END_BLOCK, START_BLOCK, MLLPDecoder


def test_a_frame_fed_one_byte_at_a_time_is_decoded_in_linear_time() -> None:
    frames: list[bytes] = []
    decoder = MLLPDecoder(1024 * 1024, frames.append, frames.append, lambda junk: None)
    body = b"MSH|^~\\&|" + b"P" * 400_000
    started = time.monotonic()
    for byte in START_BLOCK + body + END_BLOCK[:1]:
        decoder.feed(bytes([byte]))
    decoder.feed(END_BLOCK[1:])      # the end block split over two reads
    elapsed = time.monotonic() - started
    assert frames == [body] and decoder.buffered == 0 and not decoder.in_frame
    assert elapsed < 3, f"{elapsed:.1f} s for {len(body)} bytes"
