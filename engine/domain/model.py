"""Plain requests the adapters hand to the workflow: no HL7 or DICOM types, just values.

The HL7 adapter (``engine/hl7/extract.py``) builds these from a message and a mapping profile; the
workflow (``engine/workflow``) applies them to the store.  Attribute dictionaries are keyed by DICOM
keyword because that is what the worklist serves them as.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Problem(IntEnum):
    """Why a request is refused; the numbers are those of HL7 table 0357 for a direct mapping."""

    SEGMENT_SEQUENCE = 100
    REQUIRED_MISSING = 101
    BAD_VALUE = 102
    BAD_CODE = 103
    UNKNOWN_KEY = 204
    DUPLICATE_KEY = 205
    REFUSED = 207


class Rejection(Exception):
    """A request the engine refuses, with where (``location`` like ``ORC-1`` or ``ORC-7.4``) and why.

    ``sequence`` counts occurrences of the location's segment in the message (the second OBR is 2), so
    that the ERR segment can point at the right one.  ``reason`` starts with the field where it names it
    (``OBR-4 Universal Service ID is empty``), so that the journal says the field once (``HL7Error.text``)."""

    def __init__(self, problem: Problem, reason: str, location: str = "", hard: bool = False, sequence: int = 1):
        super().__init__(reason)
        self.problem = problem
        self.reason = reason
        self.location = location
        self.hard = hard  # True: "not processed, resend may work" (HL7 AR); False: content problem (AE)
        self.sequence = sequence


@dataclass(frozen=True)
class PatientIdentity:
    patient_id: str
    issuer: str = ""
    universal_id: str = ""
    universal_id_type: str = ""
    identifier_type: str = ""


@dataclass
class PatientData:
    identity: PatientIdentity
    other_ids: list[PatientIdentity] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    visit_number: str = ""
    patient_class: str = ""
    location: str = ""


@dataclass
class StepRequest:
    sps_id: str
    start_date: str
    start_time: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcedureRequest:
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    attributes: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRequest] = field(default_factory=list)


@dataclass
class OrderRequest:
    control: str           # ORC-1: NW, XO, CA, DC ...
    status: str            # ORC-5 as sent (may be empty in RAD-2)
    placer_order_number: str
    filler_order_number: str
    procedures: list[ProcedureRequest] = field(default_factory=list)
    default_start: tuple[str, str] = ("", "")  # used when a step carries no start date/time


@dataclass
class DomainEvent:
    """Something that happened, for the outbound side (next issues) and for logs."""

    kind: str              # order.scheduled, order.changed, order.cancelled, patient.merged ...
    subject: str           # accession number or patient ID
    detail: str = ""
    order_ref: int | None = None  # the order it concerns, so the outbound side can describe it
