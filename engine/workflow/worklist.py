"""RAD-5: find the worklist items for a query.  Matching runs in SQL (store/worklist_query.py); this
module assembles each matching step into one flat item: patient, order, requested procedure, step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store.json_columns import loads
from ..store.database import Transaction
from ..store.worklist_query import build_worklist_query


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
    rows = txn.query(query.sql, query.params)
    rows.sort(key=lambda row: (row["start_datetime"], row["step_ref"]))  # by start, as a modality lists them
    for row in rows:
        attributes: dict[str, Any] = {}
        attributes.update(loads(row["patient_attributes"]))
        attributes.update(loads(row["procedure_attributes"]))
        attributes.update({
            "PatientID": row["patient_id"],
            "IssuerOfPatientID": row["issuer"],
            "AccessionNumber": row["accession_number"],
            "RequestedProcedureID": row["requested_procedure_id"],
            "StudyInstanceUID": row["study_instance_uid"],
            "PlacerOrderNumberImagingServiceRequest": row["placer_order_number"],
            "FillerOrderNumberImagingServiceRequest": row["filler_order_number"],
        })
        step = loads(row["step_attributes"])
        step.update({
            "ScheduledProcedureStepID": row["sps_id"],
            "ScheduledProcedureStepStatus": row["status"],
            "ScheduledStationAETitle": row["station_ae_title"] or request.default_station,
            "ScheduledStationName": row["station_name"],
            "ScheduledProcedureStepLocation": row["location"],
            "Modality": row["modality"],
        })
        items.append(WorklistItem(attributes, {k: v for k, v in step.items() if v not in ("", None, [])},
                                  row["accession_number"]))
    return items
