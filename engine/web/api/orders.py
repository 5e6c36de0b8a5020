"""Orders and the worklist: the filtered list, and one order with everything that happened to it."""
from __future__ import annotations

from typing import Any

from ...store import listings, reports
from ...store.database import Transaction
from .common import CURSOR, LIMIT, page_json, path_parameter, text_parameter
from .declaration import Call, NotFound, Operation
from .schema import array, page, record_json, record_schema

_SCHEDULED = r"^[0-9]{8}([0-9]{4}([0-9]{2})?)?$"
_FILTERS = {   # query parameter: (OrderFilter field, description)
    "modality": ("modality", "a step of this modality (0008,0060), e.g. CT"),
    "station": ("station_ae_title", "a step scheduled on this station AE title"),
    "patient_id": ("patient_id", "the patient's ID (PID-3)"),
    "accession": ("accession_number", "a requested procedure with this accession number"),
    "placer": ("placer_order_number", "the placer order number (ORC-2)"),
    "filler": ("filler_order_number", "the filler order number (ORC-3)"),
}


def list_orders(txn: Transaction, call: Call) -> dict[str, Any]:
    params = call.params
    filters = listings.OrderFilter(
        status=params["status"], scheduled_from=params["scheduled_from"], scheduled_to=params["scheduled_to"],
        **{field: params[name] for name, (field, _) in _FILTERS.items()})
    return page_json(listings.order_page(txn, filters, params["limit"], params["cursor"]))


ORDER = record_schema(reports.OrderDetail, extra={
    "performed_steps": array(record_schema(listings.OrderPerformedStep)),
    "series": array(record_schema(listings.StoredSeries)),
    "commitments": array(record_schema(listings.OrderCommitment))})


def show_order(txn: Transaction, call: Call) -> dict[str, Any]:
    accession = call.params["accession"]
    detail = reports.order_detail(txn, accession)
    if detail is None:
        raise NotFound(f"no order with accession or order number {accession!r}")
    return order_json(txn, detail)


def order_json(txn: Transaction, detail: reports.OrderDetail) -> dict[str, Any]:
    """One order as ``ORDER`` describes it: the detail and its DICOM side (MPPS, series, commitments)."""
    dicom_side = listings.order_dicom_side(txn, detail.id)
    return {**record_json(detail), "performed_steps": [record_json(step) for step in dicom_side.performed_steps],
            "series": [record_json(series) for series in dicom_side.series],
            "commitments": [record_json(commitment) for commitment in dicom_side.commitments]}


OPERATIONS = [
    Operation(
        "GET", "/orders", "listOrders", "Orders, newest first, narrowed by every filter given; the step filters "
        "(modality, station, scheduled range) hold for one and the same step.", "viewer",
        page(record_schema(reports.OrderOverview)), list_orders,
        parameters=(
            text_parameter("status", "the order status derived from its steps (ORC-5)", enum=listings.ORDER_STATUSES),
            *(text_parameter(name, description) for name, (_, description) in _FILTERS.items()),
            text_parameter("scheduled_from", "a step starting at or after YYYYMMDD[HHMM[SS]]", pattern=_SCHEDULED),
            text_parameter("scheduled_to", "a step starting up to YYYYMMDD[HHMM[SS]] (that day, minute or second "
                           "included)", pattern=_SCHEDULED),
            LIMIT, CURSOR)),
    Operation(
        "GET", "/orders/{accession}", "getOrder", "One order (by accession number, else filler, else placer order "
        "number) with its requested procedures, steps, MPPS, stored series, storage commitment outcome and full "
        "history: what `swf orders ACCESSION` shows.", "viewer",
        ORDER, show_order,
        parameters=(path_parameter("accession", "accession number, or filler / placer order number"),),
        errors=(404,)),
]
