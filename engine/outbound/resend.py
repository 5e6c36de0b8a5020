"""A received message made ready to send again to a destination (``POST /journal/{id}/resend``,
``swf journal ID --resend-to NAME``): pure bytes in, bytes out.

What is resent is the message as it was received, every segment byte for byte (its version, MSH-18
charset and content are the sender's), under a new header for the link it now travels: MSH-3/4 are the
engine (as on every message of the outbox, whose ACK comes back to the engine), MSH-5/6 the
destination's receiving application/facility, MSH-7 the time of the resend and MSH-10 a new control ID,
so the destination's duplicate check takes it as a new message and its ACK is matched to this copy.
The destination's profile is not applied: it shapes messages the engine builds from its own data, and
this one is the sender's."""
from __future__ import annotations

from ..hl7.message import Delimiters, escape

# MSH field number -> its index among the MSH segment's split fields (MSH-1 is the separator itself)
_INDEX = {3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 10: 9}


class NotResendable(ValueError):
    """The journaled bytes have no usable MSH segment (an unreadable frame is journaled too)."""


def relabelled(raw: bytes, *, sending: tuple[str, str], receiving: tuple[str, str], control_id: str,
               timestamp: str) -> bytes:
    """``raw`` with a new MSH-3/4 (``sending``), MSH-5/6 (``receiving``), MSH-7 and MSH-10."""
    text = raw.lstrip(b"\x0b").rstrip(b"\x1c\r\n")
    end = min((i for i in (text.find(b"\r"), text.find(b"\n")) if i >= 0), default=len(text))
    header, rest = text[:end], text[end:]
    if not header.startswith(b"MSH") or len(header) < 8:
        raise NotResendable("the journaled message has no MSH segment to resend")
    separator = header[3:4]
    encoding = header[4:8].decode("latin-1")
    if len(set(encoding + separator.decode("latin-1"))) != 5:
        raise NotResendable(f"MSH-1/MSH-2 delimiters unusable: {header[3:8]!r}")
    delimiters = Delimiters(separator.decode("latin-1"), *encoding)
    fields = header.split(separator)
    fields.extend([b""] * (max(_INDEX.values()) + 1 - len(fields)))
    values = {3: sending[0], 4: sending[1], 5: receiving[0], 6: receiving[1], 7: timestamp, 10: control_id}
    for number, value in values.items():
        fields[_INDEX[number]] = escape(value, delimiters).encode("latin-1", "replace")
    return separator.join(fields) + rest.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
