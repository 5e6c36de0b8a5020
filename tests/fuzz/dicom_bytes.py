"""DICOM bytes the DICOM targets' seeds are built from, written here: PDUs, PDV items, Implicit VR
Little Endian elements, command sets and small data sets."""
from __future__ import annotations

import struct

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE, EXPLICIT_LE, DEFLATED, EXPLICIT_BE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                                   "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxI", kind, len(body)) + body


def associate_rq(called: bytes = b"SWF_ENGINE", calling: bytes = b"MODALITY",
                 contexts: tuple[tuple[int, str, tuple[str, ...]], ...] = (
                     (1, CT_IMAGE, (IMPLICIT_LE, EXPLICIT_LE)), (3, VERIFICATION, (IMPLICIT_LE,))),
                 maximum_length: int = 16384, extra_user: bytes = b"") -> bytes:
    body = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + bytes(32)
    body += item(0x10, APPLICATION_CONTEXT.encode())
    for context_id, abstract, transfers in contexts:
        body += item(0x20, bytes((context_id, 0, 0, 0)) + item(0x30, abstract.encode())
                     + b"".join(item(0x40, ts.encode()) for ts in transfers))
    body += item(0x50, item(0x51, struct.pack(">I", maximum_length)) + item(0x52, b"1.2.3.4") + extra_user)
    return pdu(0x01, body)


def element(group: int, number: int, value: bytes) -> bytes:
    """Implicit VR Little Endian element (values padded to even length by the caller)."""
    return struct.pack("<HHI", group, number, len(value)) + value


def even(text: str, pad: bytes = b"\0") -> bytes:
    data = text.encode("ascii", "surrogateescape")
    return data + pad if len(data) % 2 else data


def command(field: int, message_id: int = 1, sop_class: str = CT_IMAGE, sop_instance: str = "",
            data_set: bool = True) -> bytes:
    elements = element(0, 0x0002, even(sop_class)) + element(0, 0x0100, struct.pack("<H", field))
    elements += element(0, 0x0110, struct.pack("<H", message_id))
    elements += element(0, 0x0800, struct.pack("<H", 0x0001 if data_set else 0x0101))
    if sop_instance:
        elements += element(0, 0x1000, even(sop_instance))
    return element(0, 0x0000, struct.pack("<I", len(elements))) + elements


def ct_data_set(study: str = "1.2.3.1", series: str = "1.2.3.1.1", instance: str = "1.2.3.1.1.1",
                sop_class: str = CT_IMAGE) -> bytes:
    """A small CT data set (Implicit VR Little Endian, elements in tag order)."""
    return b"".join((
        element(0x0008, 0x0016, even(sop_class)), element(0x0008, 0x0018, even(instance)),
        element(0x0008, 0x0050, even("ACC1", b" ")), element(0x0008, 0x0060, even("CT", b" ")),
        element(0x0010, 0x0010, even("DOE^JANE", b" ")), element(0x0010, 0x0020, even("PAT1", b" ")),
        element(0x0020, 0x000D, even(study)), element(0x0020, 0x000E, even(series)),
        element(0x0020, 0x0013, even("1", b" ")), element(0x7FE0, 0x0010, bytes(16)),
    ))


def pdv(context_id: int, control: int, fragment: bytes) -> bytes:
    return struct.pack(">IBB", len(fragment) + 2, context_id, control) + fragment


def p_data(*pdvs: bytes) -> bytes:
    return pdu(0x04, b"".join(pdvs))


def c_store(instance: str = "1.2.3.1.1.1", context_id: int = 1, data: bytes | None = None,
            message_id: int = 1) -> bytes:
    data = ct_data_set(instance=instance) if data is None else data
    return (p_data(pdv(context_id, 0x03, command(0x0001, message_id, sop_instance=instance)))
            + p_data(pdv(context_id, 0x02, data)))


RELEASE_RQ = pdu(0x05, bytes(4))
ABORT = pdu(0x07, bytes(4))
