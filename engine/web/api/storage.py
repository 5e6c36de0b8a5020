"""Stored studies (series and instance counts, the linked order) and storage commitment requests (RAD-10)
with each reference's outcome: lists and one."""
from __future__ import annotations

from typing import Any

from ...store import reports, studies
from ...store.database import Transaction
from ...store.listings import Page, StoredSeries
from .common import CURSOR, LIMIT, page_json, path_parameter, text_parameter
from .declaration import Call, NotFound, Operation
from .schema import array, obj, page, record_json, record_schema

COMMITMENT_STATUSES = ("pending", "reporting", "delivered", "dead")


def list_studies(txn: Transaction, call: Call) -> dict[str, Any]:
    params = call.params
    return page_json(studies.study_page(txn, params["patient_id"], params["accession"], params["limit"],
                                        params["cursor"]))


def show_study(txn: Transaction, call: Call) -> dict[str, Any]:
    detail = studies.study_detail(txn, call.params["study_uid"])
    if detail is None:
        raise NotFound(f"no stored instance of study {call.params['study_uid']!r}")
    return {"study": record_json(detail.study), "series": [record_json(series) for series in detail.series]}


def list_commitments(txn: Transaction, call: Call) -> dict[str, Any]:
    limit = call.params["limit"]
    found = reports.commitment_list(txn, call.params["status"], limit + 1, call.params["cursor"])
    return page_json(Page(tuple(found[:limit]), found[limit - 1].id if len(found) > limit else None))


def show_commitment(txn: Transaction, call: Call) -> dict[str, Any]:
    requests = reports.commitment_detail(txn, call.params["transaction_uid"])
    if not requests:
        raise NotFound(f"no storage commitment request with transaction UID {call.params['transaction_uid']!r}")
    return {"requests": [record_json(request) for request in requests]}


OPERATIONS = [
    Operation("GET", "/studies", "listStudies", "Stored studies, the most recently received first, with their "
              "series and instance counts and the order they are linked to (null: unlinked).", "viewer",
              page(record_schema(studies.StudyOverview)), list_studies,
              parameters=(text_parameter("patient_id", "the instances' Patient ID"),
                          text_parameter("accession", "the instances' Accession Number"), LIMIT, CURSOR)),
    Operation("GET", "/studies/{study_uid}", "getStudy", "One stored study with its series.", "viewer",
              obj({"study": record_schema(studies.StudyOverview), "series": array(record_schema(StoredSeries))}),
              show_study, parameters=(path_parameter("study_uid", "Study Instance UID"),), errors=(404,)),
    Operation("GET", "/commitments", "listCommitments", "Storage commitment requests, newest first, with their "
              "reference and failure counts (what `swf commitments` lists).", "viewer",
              page(record_schema(reports.CommitmentOverview)), list_commitments,
              parameters=(text_parameter("status", "the request's status", enum=COMMITMENT_STATUSES), LIMIT, CURSOR)),
    Operation("GET", "/commitments/{transaction_uid}", "getCommitment", "Every request made with this Transaction "
              "UID, each reference's outcome and the accession its instance is linked to.", "viewer",
              obj({"requests": array(record_schema(reports.CommitmentDetail))}), show_commitment,
              parameters=(path_parameter("transaction_uid", "Transaction UID"),), errors=(404,)),
]
