"""ae.read_bounded_pdus: pynetdicom's PDU reads (6 header bytes, then the body), on a real socket pair."""
from __future__ import annotations

import socket
import struct
import threading
import time
from types import SimpleNamespace

from engine.dicom.wire import upper_layer as ul
from engine.dicom.ae import read_bounded_pdus


def association_over(sock: socket.socket) -> SimpleNamespace:
    """The part of a pynetdicom association the reader touches."""
    return SimpleNamespace(dul=SimpleNamespace(socket=SimpleNamespace(socket=sock)),
                           requestor=SimpleNamespace(ae_title="PEER", address="127.0.0.1", port=1234))


def test_reads_exactly_the_bytes_asked_for_across_partial_sends() -> None:
    ours, theirs = socket.socketpair()
    assoc = association_over(ours)
    read_bounded_pdus(assoc, largest=300_000)
    payload = bytes(range(256)) * 1000          # 256,000 bytes, sent in uneven pieces with pauses

    def send() -> None:
        theirs.sendall(struct.pack(">BxI", ul.ASSOCIATE_RQ, 4) + bytes(4))
        theirs.sendall(struct.pack(">BxI", ul.P_DATA_TF, len(payload)))
        for start in range(0, len(payload), 70001):
            theirs.sendall(payload[start:start + 70001])
            time.sleep(0.01)
        theirs.sendall(b"NEXT")

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert len(assoc.dul.socket.recv(6)) == 6 and len(assoc.dul.socket.recv(4)) == 4
        assert bytes(assoc.dul.socket.recv(6)) == struct.pack(">BxI", ul.P_DATA_TF, len(payload))
        body = assoc.dul.socket.recv(len(payload))
        assert bytes(body) == payload and isinstance(body, bytearray)
        assert bytes(assoc.dul.socket.recv(4)) == b"NEXT"   # nothing read beyond what was asked
    finally:
        sender.join()
        ours.close()
        theirs.close()


def test_a_closed_peer_gives_what_arrived() -> None:
    ours, theirs = socket.socketpair()
    assoc = association_over(ours)
    read_bounded_pdus(assoc, largest=1000)
    theirs.sendall(struct.pack(">BxI", ul.P_DATA_TF, 100) + b"partial")
    theirs.close()
    try:
        assert len(assoc.dul.socket.recv(6)) == 6
        assert bytes(assoc.dul.socket.recv(100)) == b"partial"
    finally:
        ours.close()


def test_a_length_over_the_bound_or_an_unknown_type_is_aborted_unread() -> None:
    """The first PDU (the A-ASSOCIATE-RQ) is bounded by 64 KiB, the others by ``largest``."""
    first = struct.pack(">BxI", ul.ASSOCIATE_RQ, 4) + bytes(4)
    for before, header in ((b"", struct.pack(">BxI", ul.ASSOCIATE_RQ, ul.LARGEST_ASSOCIATE_RQ + 1)),
                           (b"", struct.pack(">BxI", 0x47, 4)),
                           (first, struct.pack(">BxI", ul.P_DATA_TF, 1001)),
                           (first, struct.pack(">BxI", ul.P_DATA_TF, 0xFFFFFFFF))):
        ours, theirs = socket.socketpair()
        assoc = association_over(ours)
        read_bounded_pdus(assoc, largest=1000)
        theirs.sendall(before + header + bytes(100))
        try:
            if before:
                assert len(assoc.dul.socket.recv(6)) == 6 and len(assoc.dul.socket.recv(4)) == 4
            assert assoc.dul.socket.recv(6) == bytearray()        # pynetdicom: the connection closed
            theirs.settimeout(2)
            assert theirs.recv(100)[0] == ul.ABORT
        finally:
            ours.close()
            theirs.close()


def test_a_declared_length_allocates_only_what_arrived() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"x" * 10)
    theirs.shutdown(socket.SHUT_WR)
    try:
        received = ul.receive(ours, 50_000_000)
        assert bytes(received) == b"x" * 10
    finally:
        ours.close()
        theirs.close()
