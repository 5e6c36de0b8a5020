"""Orders entered by an operator (HTTP API) for sites without an HL7 feed, or during a RIS downtime.

An entered order becomes the ORM^O01 (HL7 v2.3.1, IHE RAD-2 layout) a RIS would have sent, and that
message takes the HL7 path (``Ingestor``): journaled, routed by the rules (station, mode, outbound
destinations), mapped by the profile, applied.  So the worklist, the order's history and every status
message it later causes are exactly those of an order the RIS sent.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from ..hl7.message import escape

SENDING_APPLICATION = "SWF_API"    # MSH-3 of entered orders: what rules and the journal see


@dataclass(frozen=True)
class EnteredPatient:
    patient_id: str
    issuer: str = ""
    name: str = ""                 # DICOM/HL7 person name, FAMILY^GIVEN
    birth_date: str = ""           # YYYYMMDD
    sex: str = ""                  # M, F, O, U


@dataclass(frozen=True)
class EnteredOrder:
    patient: EnteredPatient
    placer_order_number: str
    procedure_code: str
    procedure_description: str
    modality: str
    start: str                     # YYYYMMDDHHMM[SS]
    accession_number: str = ""     # empty: the engine generates one (as for an OBR-18 left empty)
    filler_order_number: str = ""
    requested_procedure_id: str = ""
    sps_id: str = ""
    coding_scheme: str = "LOCAL"


def order_message(order: EnteredOrder, control: str, facility: str, receiver: tuple[str, str],
                  now: datetime | None = None) -> tuple[str, bytes]:
    """The message control ID and the ORM^O01 bytes (ORC-1 ``control``: NW for a new order, XO for a change)."""
    control_id = "API" + uuid.uuid4().hex[:17]
    stamp = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    patient = order.patient
    placer = f"{escape(order.placer_order_number)}^{SENDING_APPLICATION}"
    segments = [
        f"MSH|^~\\&|{SENDING_APPLICATION}|{escape(facility)}|{escape(receiver[0])}|{escape(receiver[1])}|{stamp}||"
        f"ORM^O01|{control_id}|P|2.3.1||||||UNICODE UTF-8",
        f"PID|1||{escape(patient.patient_id)}^^^{escape(patient.issuer)}^MR||{_name(patient.name)}||"
        f"{escape(patient.birth_date)}|{escape(patient.sex)}",
        f"ORC|{control}|{placer}|{escape(order.filler_order_number)}||SC||1^once^^{escape(order.start)}^^R",
        f"OBR|1|{placer}|{escape(order.filler_order_number)}|{escape(order.procedure_code)}^"
        f"{escape(order.procedure_description)}^{escape(order.coding_scheme)}||||||||||||||"
        f"{escape(order.accession_number)}|{escape(order.requested_procedure_id)}|{escape(order.sps_id)}||||"
        f"{escape(order.modality)}",
    ]
    return control_id, ("\r".join(segments) + "\r").encode("utf-8")


def _name(name: str) -> str:
    """A person name FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX: each component escaped, the ``^`` kept."""
    return "^".join(escape(part) for part in name.split("^"))
