"""HL7 acknowledgements (SWF.md section 8): original mode AA/AE/AR, enhanced mode CA/CE/CR, ERR segments.

Built by string assembly rather than hl7apy: an ACK is two or three short segments and is on the hot
path of every message, so the ~1 ms an hl7apy tree costs would be a large share of the budget.
"""
from __future__ import annotations

import codecs
import itertools
import os
import time
from dataclasses import dataclass

from .message import Delimiters, Message, escape

# HL7 table 0357 texts for the codes the engine emits.
ERROR_CODE_TEXT = {
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


@dataclass(frozen=True)
class HL7Error:
    """One problem to report in an ERR segment: where (segment/sequence/field/repetition/component) and why."""

    code: int
    reason: str
    segment: str = ""
    sequence: int = 1
    field: int = 0
    component: int = 0
    repetition: int = 1

    @property
    def location(self) -> str:
        """``OBR-27.4``; ``OBR(2)-27.4`` for the second OBR, ``PID-3[2]`` for a field's second repetition."""
        if not self.segment:
            return "message"
        text = self.segment + (f"({self.sequence})" if self.sequence > 1 else "")
        if not self.field:
            return text
        text += f"-{self.field}" + (f"[{self.repetition}]" if self.repetition > 1 else "")
        return text + (f".{self.component}" if self.component else "")

    @property
    def text(self) -> str:
        """The reason with its location said once, for the journal and logs.

        Reasons that start with their segment already name it (``OBR-4 Universal Service ID is empty``, the
        SWF.md 9 style, as in the ACK); any other gets the location in front (``ORC-2: order ... exists``)."""
        if not self.segment or self.reason.startswith(self.segment):
            return self.reason
        return f"{self.location}: {self.reason}"


_id_counter = itertools.count(1)
_id_prefix = f"{os.getpid() % 1000:03d}"


def new_control_id() -> str:
    """A control ID unique across restarts and processes: ms timestamp, pid, counter (20 chars max)."""
    return f"E{int(time.time() * 1000) % 10**12:012d}{_id_prefix}{next(_id_counter) % 10000:04d}"


def hl7_timestamp() -> str:
    return time.strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class Identity:
    """The engine's own sending application/facility for ACKs when the received MSH-5/6 are empty."""

    application: str = "SWF_ENGINE"
    facility: str = "RADIOLOGY"
    default_version: str = "2.5.1"


def _version_at_least(version: str, minimum: tuple[int, ...]) -> bool:
    try:
        parts = tuple(int(p) for p in version.split(".") if p.isdigit())
    except ValueError:
        return False
    return parts >= minimum


def _err_segments(errors: list[HL7Error], version: str, d: Delimiters) -> list[str]:
    c, s, f = d.component, d.subcomponent, d.field
    if not errors:
        return []
    if not _version_at_least(version, (2, 5)):
        # v2.3.1/2.4: ERR-1 (ELD) segment^sequence^field^code&text&HL70357, repeated in one ERR segment
        # (ACK has a single optional ERR there); the reason texts go to MSA-3.
        elds = []
        for err in errors:
            location = c.join([err.segment, str(err.sequence) if err.segment else "", str(err.field or "")])
            code_text = escape(ERROR_CODE_TEXT.get(err.code, "Application error"), d)
            elds.append(f"{location}{c}{err.code}{s}{code_text}{s}HL70357")
        return [f.join(["ERR", d.repetition.join(elds)])]
    segments = []
    for err in errors:
        text = escape(err.reason, d)
        code_text = ERROR_CODE_TEXT.get(err.code, "Application error")
        # ERR-2 (ERL) segment^sequence^field^repetition^component^subcomponent
        repetition = str(err.repetition) if err.field and (err.component or err.repetition > 1) else ""
        location = c.join([err.segment, str(err.sequence), str(err.field or ""), repetition,
                           str(err.component or ""), ""]).rstrip(c) if err.segment else ""
        segments.append(f.join(["ERR", "", location, f"{err.code}{c}{code_text}{c}HL70357", "E",
                                "", "", "", text]))
    return segments


# Python codec (codecs.lookup name) -> MSH-18 label, for ACKs that need one the sender did not send.
_CODEC_LABELS = {"iso8859-1": "8859/1", "utf-8": "UNICODE UTF-8", "iso8859-2": "8859/2", "iso8859-5": "8859/5",
                 "iso8859-7": "8859/7", "iso8859-9": "8859/9", "iso8859-15": "8859/15"}


def _charset_label(codec: str) -> str:
    try:
        return _CODEC_LABELS.get(codecs.lookup(codec).name, "")
    except LookupError:
        return ""


def build_ack(received: Message | None, code: str, errors: list[HL7Error] | None = None,
              identity: Identity = Identity(), control_id: str | None = None) -> str:
    """Text of the ACK for ``received`` (None when its MSH could not be read) with MSA-1 = ``code``."""
    errors = errors or []
    if received is None:
        d = Delimiters()
        version = identity.default_version
        sending = (identity.application, identity.facility)
        receiving = ("", "")
        processing_id, trigger, charset, received_id = "P", "", "", ""
        version_field = version
    else:
        d = received.delimiters
        raw_msh = received.segments[0]

        def raw(n: int) -> str:
            return raw_msh[n] if len(raw_msh) > n else ""

        version = received.get("MSH-12.1") or identity.default_version
        version_field = raw(12) if received.get("MSH-12.1") else version  # MSH-12 as received
        sending = (raw(5) or identity.application, raw(6) or identity.facility)
        receiving = (raw(3), raw(4))
        processing_id = raw(11) or "P"  # MSH-11 as received (raw, so escapes stay escaped)
        trigger = received.get("MSH-9.2")
        charset = raw(18)
        received_id = received.get("MSH-10")
    c = d.component
    trigger = escape(trigger, d)
    if trigger and _version_at_least(version, (2, 3, 1)):
        message_type = f"ACK{c}{trigger}{c}ACK"
    else:
        message_type = f"ACK{c}{trigger}" if trigger else "ACK"
    msh = ["MSH", d.encoding_characters, sending[0], sending[1], receiving[0], receiving[1], hl7_timestamp(),
           "", message_type, control_id or new_control_id(), processing_id, version_field]
    msa = ["MSA", code, escape(received_id, d)]
    if errors and not _version_at_least(version, (2, 5)):
        msa.append(escape(errors[0].reason, d))
    err = _err_segments(errors, version, d)
    if not charset and received is not None and not "".join(msh + msa + err).isascii():
        # MSH-18 is omitted only when the sender sent none and the ACK is pure ASCII (SWF.md 8.3).
        charset = _charset_label(received.codec)
    if charset:
        msh += ["", "", "", "", "", charset]
    segments = [d.field.join(msh), d.field.join(msa)] + err
    return "\r".join(segments) + "\r"


ENHANCED_CODES = {"AA": "CA", "AE": "CE", "AR": "CR"}


def accept_ack_wanted(received: Message | None, code: str) -> bool | None:
    """Enhanced mode (MSH-15): True/False whether to answer; None when the sender uses original mode."""
    if received is None:
        return None
    mode = received.get("MSH-15").strip().upper()
    if not mode and not received.get("MSH-16").strip():
        return None
    success = code in ("AA", "CA")
    if not mode or mode == "AL":
        return True
    if mode == "NE":
        return False
    if mode == "ER":
        return not success
    if mode == "SU":
        return success
    return True
