"""HL7 acknowledgements (SWF.md section 8): original mode AA/AE/AR, enhanced mode CA/CE/CR, ERR segments.

Built by string assembly rather than hl7apy: an ACK is two or three short segments and is on the hot
path of every message, so the ~1 ms an hl7apy tree costs would be a large share of the budget.
"""
from __future__ import annotations

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
    """One problem to report in an ERR segment: where (segment/sequence/field/component) and why."""

    code: int
    reason: str
    segment: str = ""
    sequence: int = 1
    field: int = 0
    component: int = 0

    @property
    def location(self) -> str:
        if not self.segment:
            return "message"
        text = f"{self.segment}-{self.field}" if self.field else self.segment
        return text + (f".{self.component}" if self.component else "")


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
    segments = []
    for err in errors:
        text = escape(err.reason, d)
        code_text = ERROR_CODE_TEXT.get(err.code, "Application error")
        if _version_at_least(version, (2, 5)):
            location = c.join([err.segment, str(err.sequence), str(err.field or ""), "",
                               str(err.component or ""), ""]).rstrip(c) if err.segment else ""
            segments.append(f.join(["ERR", "", location, f"{err.code}{c}{code_text}{c}HL70357", "E",
                                    "", "", "", text]))
        else:
            location = c.join([err.segment, str(err.sequence), str(err.field or "")]) if err.segment else ""
            segments.append(f.join(["ERR", f"{location}{c}{err.code}{s}{text}{s}HL70357"]))
    return segments


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
    else:
        d = received.delimiters
        version = received.get("MSH-12.1") or identity.default_version
        raw_msh = received.segments[0]
        msh5 = raw_msh[5] if len(raw_msh) > 5 else ""
        msh6 = raw_msh[6] if len(raw_msh) > 6 else ""
        sending = (msh5 or identity.application, msh6 or identity.facility)
        receiving = (raw_msh[3] if len(raw_msh) > 3 else "", raw_msh[4] if len(raw_msh) > 4 else "")
        processing_id = received.get("MSH-11") or "P"
        trigger = received.get("MSH-9.2")
        charset = raw_msh[18] if len(raw_msh) > 18 else ""
        received_id = received.get("MSH-10")
    c = d.component
    if trigger and _version_at_least(version, (2, 3, 1)):
        message_type = f"ACK{c}{trigger}{c}ACK"
    else:
        message_type = f"ACK{c}{trigger}" if trigger else "ACK"
    msh = ["MSH", d.encoding_characters, sending[0], sending[1], receiving[0], receiving[1], hl7_timestamp(),
           "", message_type, control_id or new_control_id(), processing_id, version]
    if charset:
        msh += ["", "", "", "", "", charset]
    msa = ["MSA", code, escape(received_id, d)]
    if errors and not _version_at_least(version, (2, 5)):
        msa.append(escape(errors[0].reason, d))
    segments = [d.field.join(msh), d.field.join(msa)] + _err_segments(errors, version, d)
    return "\r".join(segments) + "\r"


ENHANCED_CODES = {"AA": "CA", "AE": "CE", "AR": "CR"}


def accept_ack_wanted(received: Message | None, code: str) -> bool | None:
    """Enhanced mode (MSH-15): True/False whether to answer; None when the sender uses original mode."""
    if received is None:
        return None
    mode = received.get("MSH-15").upper()
    if not mode and not received.get("MSH-16"):
        return None
    if not mode or mode == "AL":
        return True
    if mode == "NE":
        return False
    if mode == "ER":
        return code != "AA"
    if mode == "SU":
        return code == "AA"
    return True
