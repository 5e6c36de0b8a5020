"""Performed procedure steps (MPPS): the list, and one with its linked steps, versions, summary and its
current dataset in the DICOM JSON model (PS3.18 F.2)."""
from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from ...store import listings, reports
from ...store.database import Transaction
from ...store.performed_steps import LinkableStep, PerformedStep
from .common import CURSOR, LIMIT, page_json, path_parameter, text_parameter
from .declaration import Call, NotFound, Operation
from .schema import array, obj, page, record_json, record_schema

MPPS_STATUSES = ("IN PROGRESS", "COMPLETED", "DISCONTINUED")


def list_mpps(txn: Transaction, call: Call) -> dict[str, Any]:
    params = call.params
    unscheduled = None if params["unscheduled"] is None else params["unscheduled"] == "true"
    return page_json(listings.mpps_page(txn, params["status"], params["station"], unscheduled, params["limit"],
                                        params["cursor"]))


def show_mpps(txn: Transaction, call: Call) -> dict[str, Any]:
    detail = reports.performed_step_detail(txn, call.params["uid"])
    if detail is None:
        raise NotFound(f"no performed step with SOP Instance UID or PPS ID {call.params['uid']!r}")
    return {"step": record_json(detail.step, omit=("dataset",)),
            "linked_steps": [record_json(step) for step in detail.linked_steps],
            "versions": [record_json(version) for version in detail.versions],
            "summary": record_json(detail.summary, omit=("dataset",)),
            "dataset": detail.summary.dataset.to_json_dict()}


OPERATIONS = [
    Operation(
        "GET", "/mpps", "listMpps", "Performed procedure steps, newest first, scheduled or unscheduled, with the "
        "accessions they are linked to.", "viewer", page(record_schema(reports.PerformedStepOverview)), list_mpps,
        parameters=(text_parameter("status", "Performed Procedure Step Status", enum=MPPS_STATUSES),
                    text_parameter("station", "Performed Station AE Title"),
                    text_parameter("unscheduled", "true: only those linked to no scheduled step; false: only linked "
                                   "ones", enum=("true", "false")),
                    LIMIT, CURSOR)),
    Operation(
        "GET", "/mpps/{uid}", "getMpps", "One performed step (by SOP Instance UID, else the latest with this PPS ID) "
        "with its linked scheduled steps, every N-CREATE / N-SET received, a summary and the current dataset "
        "(DICOM JSON).", "viewer",
        obj({"step": record_schema(PerformedStep, omit=("dataset",)),
             "linked_steps": array(record_schema(LinkableStep)),
             "versions": array(record_schema(reports.PerformedStepVersionEntry)),
             "summary": record_schema(reports.MppsSummary, omit=("dataset",), names={"Dataset": Dataset}),
             "dataset": {"type": "object"}}), show_mpps,
        parameters=(path_parameter("uid", "SOP Instance UID or PPS ID"),),
        errors=(404,)),
]
