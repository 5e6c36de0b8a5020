"""Patients: search by ID, issuer, name (wildcards) and birth date; one patient with identifiers, visits,
merges and history (what `swf patients PATIENT_ID` shows)."""
from __future__ import annotations

from typing import Any

from ...store import listings, reports
from ...store.database import Transaction
from .common import CURSOR, LIMIT, page_json, path_parameter, text_parameter
from .declaration import Call, NotFound, Operation, Parameter
from .schema import STRING, array, obj, page, record_json, record_schema


def search_patients(txn: Transaction, call: Call) -> dict[str, Any]:
    params = call.params
    filters = listings.PatientFilter(patient_id=params["patient_id"], issuer=params["issuer"], name=params["name"],
                                     birth_date=params["birth_date"])
    return page_json(listings.patient_page(txn, filters, params["limit"], params["cursor"]))


def show_patient(txn: Transaction, call: Call) -> dict[str, Any]:
    found = reports.patient_detail(txn, call.params["patient_id"], call.params["issuer"])
    if not found:
        raise NotFound(f"no patient with ID {call.params['patient_id']!r}"
                       + (f" of issuer {call.params['issuer']!r}" if call.params["issuer"] is not None else ""))
    return {"patients": [record_json(patient) for patient in found]}


OPERATIONS = [
    Operation(
        "GET", "/patients", "searchPatients", "Patients, newest first, narrowed by every filter given.", "viewer",
        page(record_schema(listings.PatientOverview)), search_patients,
        parameters=(
            text_parameter("patient_id", "the patient's ID (PID-3), or one of its other identifiers"),
            text_parameter("issuer", "the assigning authority (PID-3.4)"),
            text_parameter("name", "the name, DICOM style: FAMILY^GIVEN, * and ? as wildcards, case and accents "
                           "ignored"),
            text_parameter("birth_date", "YYYYMMDD", pattern=r"^[0-9]{8}$"),
            LIMIT, CURSOR)),
    Operation(
        "GET", "/patients/{patient_id}", "getPatient", "The patients with this ID (of any issuer unless given; else "
        "those holding it as another identifier), each with identifiers, visits, merges and history.", "viewer",
        obj({"patients": array(record_schema(reports.PatientDetail))}), show_patient,
        parameters=(path_parameter("patient_id", "the patient ID"),
                    Parameter("issuer", "query", {**STRING, "maxLength": 200}, "only this issuer ('' for none)")),
        errors=(404,)),
]
