"""An asyncio MLLP load generator: frames out, ACKs in, every ACK checked.

* ``closed_loop``: C connections, each sends its next message only after the ACK of the previous one
  (no pipelining, as an HL7 sender in original mode does); returns each message's round-trip time.
* ``open_loop``: messages are due at a fixed offered rate, spread over C connections; each connection
  still waits for its ACK before sending, and latency is measured from the message's *due* time, so a
  server that falls behind shows it (no coordinated omission).

An ACK is right when MSA-1 is AA and MSA-2 is the message's control ID; anything else raises
``BenchFailure``: a fast wrong answer is no result.
"""
from __future__ import annotations

import asyncio
import socket
import time

from common import HOST, BenchFailure

VT, FS_CR, CR = b"\x0b", b"\x1c\r", b"\r"

Frame = tuple[bytes, bytes]   # (MLLP frame, control ID)


def frame(message: bytes, control_id: str) -> Frame:
    return VT + message + FS_CR, control_id.encode()


def check_ack(ack: bytes, control_id: bytes) -> None:
    at = ack.find(CR + b"MSA|")      # the MSA segment (the text "MSA|" may occur inside MSH, e.g. in MSH-10)
    fields = ack[at + 1:].split(CR, 1)[0].split(b"|") if at >= 0 else []
    if len(fields) < 3 or fields[1] != b"AA" or fields[2] != control_id:
        raise BenchFailure(f"bad ACK for {control_id.decode()}: {ack[:300]!r}")


async def _connect(port: int):
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _closed(port: int, frames: list[Frame], conns: int, timeout: float) -> list[float]:
    latencies: list[float] = []

    async def one(part: list[Frame]) -> None:
        reader, writer = await _connect(port)
        try:
            for data, control_id in part:
                t0 = time.perf_counter()
                writer.write(data)
                ack = await asyncio.wait_for(reader.readuntil(FS_CR), timeout)
                latencies.append(time.perf_counter() - t0)
                check_ack(ack, control_id)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(one(frames[c::conns]) for c in range(conns)))
    return latencies


def closed_loop(port: int, frames: list[Frame], conns: int, timeout: float = 60) -> tuple[float, list[float]]:
    """(wall seconds, per-message latencies)."""
    t0 = time.perf_counter()
    latencies = asyncio.run(_closed(port, frames, conns, timeout))
    return time.perf_counter() - t0, latencies


async def _open(port: int, frames: list[Frame], conns: int, rate: float, timeout: float) -> list[float]:
    latencies: list[float] = []
    start = time.perf_counter() + 0.2

    async def one(c: int) -> None:
        reader, writer = await _connect(port)
        try:
            for i in range(c, len(frames), conns):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                data, control_id = frames[i]
                writer.write(data)
                ack = await asyncio.wait_for(reader.readuntil(FS_CR), timeout)
                latencies.append(time.perf_counter() - due)
                check_ack(ack, control_id)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(one(c) for c in range(conns)))
    return latencies


def open_loop(port: int, frames: list[Frame], conns: int, rate: float, timeout: float = 60) -> list[float]:
    return asyncio.run(_open(port, frames, conns, rate, timeout))
