"""What the DICOM services tell the audit trail, read from pynetdicom's event: the requestor (calling AE
title at its address) and, for a C-FIND, the identifier as received."""
from __future__ import annotations

from typing import Any

from ..audit_trail import codes
from ..audit_trail.message import Participant
from ..audit_trail.recorder import AuditTrail


def requestor(assoc: Any) -> Participant:
    peer = assoc.requestor
    return Participant(peer.ae_title.strip(), True, network_access_point=str(peer.address or ""))


def audit_query(audit: AuditTrail, event: Any, status: int, detail: str = "") -> None:
    """A Query message for a C-FIND (MWL or Q/R): the identifier's bytes in the negotiated transfer syntax."""
    if not audit.enabled:
        return
    try:
        identifier = event.request.Identifier
        raw = identifier.getvalue() if identifier is not None else b""
    except Exception:  # noqa: BLE001 - a request pynetdicom could not keep: audited without it
        raw = b""
    peer = event.assoc.requestor
    audit.query(peer.ae_title.strip(), str(peer.address or ""), str(event.request.AffectedSOPClassUID or ""), raw,
                str(event.context.transfer_syntax), codes.SUCCESS if status in (0x0000, 0xFE00) else codes.MINOR_FAILURE,
                detail)
