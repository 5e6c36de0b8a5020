"""RAD-5: find the worklist items for a query.  Matching runs in SQL (store/worklist_query.py); this
module assembles each matching step into one flat item: patient, order, requested procedure, step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store.database import Transaction
from ..store.worklist_query import build_worklist_query, worklist_entries


@dataclass
class WorklistRequest:
    top: dict[str, str] = field(default_factory=dict)      # top-level keys: keyword -> value
    step: dict[str, str] = field(default_factory=dict)     # keys of the SPS sequence item
    code: dict[str, str] = field(default_factory=dict)     # keys of the RequestedProcedureCodeSequence item
    station_restriction: tuple[str, ...] = ()
    default_station: str = ""      # orders.default_station_ae: the station of steps stored without one


@dataclass
class WorklistItem:
    attributes: dict[str, Any]       # top-level attributes by keyword
    step: dict[str, Any]             # the one ScheduledProcedureStepSequence item
    accession_number: str


def find_items(txn: Transaction, request: WorklistRequest) -> list[WorklistItem]:
    query = build_worklist_query(request.top, request.step, request.code,
                                 station_restriction=request.station_restriction,
                                 default_station=request.default_station)
    items = []
    for entry in worklist_entries(txn, query):
        attributes: dict[str, Any] = {**entry.patient_attributes, **entry.procedure_attributes}
        attributes.update({
            "PatientID": entry.patient_id,
            "IssuerOfPatientID": entry.issuer,
            "AccessionNumber": entry.accession_number,
            "RequestedProcedureID": entry.requested_procedure_id,
            "StudyInstanceUID": entry.study_instance_uid,
            "PlacerOrderNumberImagingServiceRequest": entry.placer_order_number,
            "FillerOrderNumberImagingServiceRequest": entry.filler_order_number,
        })
        step = {**entry.step_attributes,
                "ScheduledProcedureStepID": entry.sps_id,
                "ScheduledProcedureStepStatus": entry.status,
                "ScheduledStationAETitle": entry.station_ae_title or request.default_station,
                "ScheduledStationName": entry.station_name,
                "ScheduledProcedureStepLocation": entry.location,
                "Modality": entry.modality}
        items.append(WorklistItem(attributes, {k: v for k, v in step.items() if v not in ("", None, [])},
                                  entry.accession_number))
    return items
