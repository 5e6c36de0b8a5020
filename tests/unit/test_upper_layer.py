"""upper_layer.py against pynetdicom's own PDU encoder/decoder (a second, independent implementation)."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from pynetdicom import build_context
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification,
                                       SCP_SCU_RoleSelectionNegotiation)
from pynetdicom.sop_class import CTImageStorage, Verification

from engine.dicom.wire import upper_layer as ul


def pynetdicom_rq(role_selection: bool = False) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = ul.APPLICATION_CONTEXT
    primitive.calling_ae_title, primitive.called_ae_title = "MODALITY1", "SWF_ENGINE"
    contexts = [build_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]), build_context(Verification)]
    for number, context in zip((1, 3), contexts):
        context.context_id = number
    primitive.presentation_context_definition_list = contexts
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16382
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.7777.9"
    primitive.user_information = [maximum, implementation]
    if role_selection:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid, role.scu_role, role.scp_role = CTImageStorage, True, True
        primitive.user_information.append(role)
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def test_reads_what_pynetdicom_writes() -> None:
    request = ul.parse_associate_rq(pynetdicom_rq())
    assert (request.calling_title, request.called_title) == ("MODALITY1", "SWF_ENGINE")
    assert request.application_context == ul.APPLICATION_CONTEXT
    assert [(c.context_id, c.abstract_syntax, c.transfer_syntaxes[:2]) for c in request.contexts] == [
        (1, CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]),
        (3, Verification, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])]
    assert request.maximum_length == 16382
    assert request.user_items == {ul.MAXIMUM_LENGTH, ul.IMPLEMENTATION_CLASS_UID}
    assert ul.ROLE_SELECTION in ul.parse_associate_rq(pynetdicom_rq(role_selection=True)).user_items


def test_what_we_write_pynetdicom_reads() -> None:
    request = ul.parse_associate_rq(pynetdicom_rq())
    ac = A_ASSOCIATE_AC()
    ac.decode(ul.associate_ac(request, [(1, ul.ACCEPTANCE, "1.2.840.10008.1.2.1"),
                                        (3, ul.TRANSFER_SYNTAXES_NOT_SUPPORTED, "1.2.840.10008.1.2")],
                              262144, "1.2.826.0.1.3680043.9.7777.8", "SWF_ENGINE_1"))
    primitive = ac.to_primitive()
    results = {c.context_id: (c.result, str(c.transfer_syntax[0]) if c.transfer_syntax else "")
               for c in primitive.presentation_context_definition_results_list}
    assert results == {1: (0, "1.2.840.10008.1.2.1"), 3: (4, "1.2.840.10008.1.2")}
    assert primitive.maximum_length_received == 262144
    assert primitive.implementation_class_uid == "1.2.826.0.1.3680043.9.7777.8"
    data = P_DATA_TF()
    data.decode(ul.p_data(1, 0x03, b"\x01\x02"))
    assert data.presentation_data_value_items[0].presentation_context_id == 1


@pytest.mark.parametrize("damage", [lambda b: b[:60], lambda b: b[:80] + b"\xff\xff" + b[82:],
                                    lambda b: b"\x02" + b[1:]])
def test_malformed_requests_are_refused(damage) -> None:
    with pytest.raises(ul.PduError):
        ul.parse_associate_rq(damage(pynetdicom_rq()))


def test_pdv_lengths_that_do_not_fit_are_refused() -> None:
    assert [(c, h, bytes(f)) for c, h, f in ul.pdvs(bytearray(ul.p_data(5, 0x02, b"abcd")[6:]))] == [(5, 2, b"abcd")]
    with pytest.raises(ul.PduError):
        ul.pdvs(bytearray(b"\x00\x00\x00\x09\x05\x02abcd"))


def peek_fails_at_once(ours: socket.socket, error: type[Exception]) -> Exception:
    """Peek with a long timeout; the peek must fail with ``error`` within a second (closes ``ours``)."""
    started = time.monotonic()
    try:
        with pytest.raises(error) as raised:
            ul.peek_pdu(ours, timeout=10)
    finally:
        ours.close()
    assert time.monotonic() - started < 1
    return raised.value


def test_a_peer_that_sent_something_else_and_left_is_refused_at_once() -> None:
    """MSG_PEEK never sees the close while bytes are unread: the first byte decides."""
    ours, theirs = socket.socketpair()
    theirs.sendall(b"\n")
    theirs.close()
    peek_fails_at_once(ours, ul.PduError)


def test_a_whole_request_is_peeked_and_left_unread() -> None:
    ours, theirs = socket.socketpair()
    request = pynetdicom_rq()
    theirs.sendall(request[:20])
    threading.Timer(0.05, lambda: theirs.sendall(request[20:])).start()   # the rest arrives later
    try:
        assert ul.peek_pdu(ours, timeout=5) == request
        assert ours.recv(len(request), socket.MSG_WAITALL) == request
    finally:
        ours.close()
        theirs.close()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(ours, theirs): a real TCP connection on loopback (the low-water mark is a TCP feature)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    return ours, theirs


def test_a_partial_header_is_waited_for_without_polling() -> None:
    ours, theirs = tcp_pair()
    theirs.sendall(bytes.fromhex("010000000064"))
    started, cpu = time.monotonic(), time.thread_time()
    try:
        with pytest.raises(TimeoutError):
            ul.peek_pdu(ours, timeout=1)
    finally:
        ours.close()
        theirs.close()
    assert 0.9 < time.monotonic() - started < 2
    assert time.thread_time() - cpu < 0.006          # one poll(); the 1 ms peek loop it replaces: ~0.02 s


def test_a_partial_header_whose_peer_left_ends_at_once() -> None:
    ours, theirs = tcp_pair()
    theirs.sendall(bytes.fromhex("0100000000"))
    theirs.close()
    peek_fails_at_once(ours, ul.PeerClosed)


def test_a_request_longer_than_the_limit_is_refused_from_its_header() -> None:
    ours, theirs = tcp_pair()
    theirs.sendall(bytes.fromhex("0100FFFFFFFF") + bytes(68))
    try:
        refused = peek_fails_at_once(ours, ul.PduError)
    finally:
        theirs.close()
    assert refused.reason == ul.INVALID_PARAMETER_VALUE
