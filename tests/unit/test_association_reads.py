"""ae.read_into_one_buffer: pynetdicom's PDU reads, on a real socket pair, fed in pieces."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

from engine.dicom.ae import read_into_one_buffer


def association_over(sock: socket.socket) -> SimpleNamespace:
    """The part of a pynetdicom association the reader touches: assoc.dul.socket(.socket)."""
    return SimpleNamespace(dul=SimpleNamespace(socket=SimpleNamespace(socket=sock)))


def test_reads_exactly_the_bytes_asked_for_across_partial_sends() -> None:
    ours, theirs = socket.socketpair()
    assoc = association_over(ours)
    read_into_one_buffer(assoc)
    payload = bytes(range(256)) * 1000          # 256,000 bytes, sent in uneven pieces with pauses

    def send() -> None:
        for start in range(0, len(payload), 70001):
            theirs.sendall(payload[start:start + 70001])
            time.sleep(0.01)
        theirs.sendall(b"NEXT")

    sender = threading.Thread(target=send)
    sender.start()
    try:
        first = assoc.dul.socket.recv(len(payload))
        assert bytes(first) == payload and isinstance(first, bytearray)
        assert bytes(assoc.dul.socket.recv(4)) == b"NEXT"   # nothing read beyond what was asked
    finally:
        sender.join()
        ours.close()
        theirs.close()


def test_a_closed_peer_gives_what_arrived() -> None:
    ours, theirs = socket.socketpair()
    assoc = association_over(ours)
    read_into_one_buffer(assoc)
    theirs.sendall(b"partial")
    theirs.close()
    try:
        assert bytes(assoc.dul.socket.recv(100)) == b"partial"
    finally:
        ours.close()
