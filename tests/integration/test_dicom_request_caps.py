"""The A-ASSOCIATE-RQ's presentation contexts are capped at 128 (context IDs are the odd numbers 1-255):
one more is a malformed request, answered with one A-ABORT by the listener's gate."""
from __future__ import annotations

import socket

from tests.fuzz import dicom_bytes as db


def first_pdu(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        header = sock.recv(6, socket.MSG_WAITALL)
        return header[0] if header else 0


def test_129_presentation_contexts_are_aborted_and_128_accepted(start_engine) -> None:
    engine = start_engine()
    contexts = tuple((2 * n + 1, db.CT_IMAGE, (db.IMPLICIT_LE,)) for n in range(128))
    assert first_pdu(engine.dicom_port, db.associate_rq(contexts=contexts)) == 0x02            # A-ASSOCIATE-AC
    too_many = contexts + ((1, db.VERIFICATION, (db.IMPLICIT_LE,)),)
    assert first_pdu(engine.dicom_port, db.associate_rq(contexts=too_many)) == 0x07            # A-ABORT
    assert "DICOM connection from 127.0.0.1" in engine.log() and "more than 128 presentation contexts" in engine.log()
    assert "Traceback" not in engine.log()
