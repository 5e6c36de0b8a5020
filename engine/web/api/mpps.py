"""Performed procedure steps (MPPS): the list, one with its linked steps, versions, summary and its
current dataset in the DICOM JSON model (PS3.18 F.2), and the operator's link of an unscheduled one to
its order (what ``swf link`` does)."""
from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from ...store import audit, listings, reports
from ...store.database import Transaction
from ...store.performed_steps import LinkableStep, PerformedStep
from ...workflow.mpps_link import LinkRefused, LinkResult, link
from .common import CURSOR, LIMIT, page_json, path_parameter, text_parameter
from .declaration import Call, Conflict, NotFound, Operation
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


LINK_BODY = obj({"accession": {"type": "string", "minLength": 1, "maxLength": 16,
                              "pattern": r"^[^\x00-\x1f\x7f\\]*$", "description": "the order's accession number"}})


def link_mpps(txn: Transaction, call: Call) -> dict[str, Any]:
    uid, accession = call.params["uid"], call.body["accession"]
    try:
        result = link(txn, uid, accession, call.principal.name)
    except LinkRefused as refusal:
        raise (NotFound if refusal.not_found else Conflict)(refusal.reason) from None
    audit.record_action(txn, actor=call.principal.name, client=call.client, action="mpps.link", subject=accession,
                        before=None, after={"mpps": uid, "steps": result.steps})
    return record_json(result)


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
    Operation(
        "POST", "/mpps/{uid}/link", "linkMpps", "Link an unscheduled performed step and its images to the order of "
        "this accession (what `swf link` does): the order's steps go as the MPPS is, reported to the RIS as a "
        "scheduled MPPS would have been; its stored images take the order's accession (and patient) in Q/R. 404 "
        "for an unknown MPPS or accession, 409 when the MPPS is linked already or a step has another MPPS.",
        "operator", record_schema(LinkResult), link_mpps, parameters=(path_parameter("uid", "MPPS SOP Instance UID"),),
        body=LINK_BODY, writes=True, errors=(404, 409)),
]
