"""Filters and paging of the /api/v1 listings (issue 13), over HTTP against an engine fed the sample day
and the malformed samples over MLLP: each filter returns exactly the rows the full listing says match,
and paging with limit + cursor returns every row once, in one stable order, while new rows arrive."""
from __future__ import annotations

from urllib.parse import urlencode

from tests.api_client import Api
from tests.conftest import ROOT, run_swf
from tests.integration.test_outbound import orders as order_file


def replay(engine, path) -> None:
    run_swf("replay", str(path), "--to", engine.address, "--no-progress")


def all_pages(api: Api, path: str, limit: int, between_pages=lambda: None) -> list[dict]:
    items, cursor = [], None
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        separator = "&" if "?" in path else "?"
        page = api.checked_call("GET", path.split("?")[0], f"{path}{separator}{urlencode(query)}", 200)
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert page["items"][-1]["id"] == cursor
        between_pages()


def ids(items: list[dict]) -> list[int]:
    return [item["id"] for item in items]


def test_order_filters_match_the_full_listing(start_engine) -> None:
    engine = start_engine()
    replay(engine, ROOT / "samples" / "day-v231.hl7")
    api = Api(engine.http_port)
    everything = api.get("/api/v1/orders?limit=500")[1]["items"]
    assert len(everything) == 12 and ids(everything) == sorted(ids(everything), reverse=True)
    details = {order["id"]: api.get(f"/api/v1/orders/{order['accessions'][0]}")[1] for order in everything}
    cases = {
        "status": lambda order, value: order["status"] == value,
        "modality": lambda order, value: value in order["modalities"],
        "station": lambda order, value: value in order["stations"],
        "patient_id": lambda order, value: order["patient_id"] == value,
        "accession": lambda order, value: value in order["accessions"],
        "placer": lambda order, value: order["placer_order_number"] == value,
        "filler": lambda order, value: order["filler_order_number"] == value,
    }
    values = {"status": {o["status"] for o in everything} | {"CA"},
              "modality": {m for o in everything for m in o["modalities"]},
              "station": {s for o in everything for s in o["stations"]},
              "patient_id": {o["patient_id"] for o in everything},
              "accession": {a for o in everything for a in o["accessions"]},
              "placer": {o["placer_order_number"] for o in everything},
              "filler": {o["filler_order_number"] for o in everything if o["filler_order_number"]}}
    assert len(values["modality"]) >= 3 and len(values["status"]) >= 2
    for name, matches in cases.items():
        for value in values[name]:
            found = api.checked_call("GET", "/api/v1/orders", f"/api/v1/orders?{urlencode({name: value})}", 200)
            assert ids(found["items"]) == [o["id"] for o in everything if matches(o, value)], (name, value)
    starts = sorted({step["start_datetime"][:12] for detail in details.values() for step in detail["steps"]})
    low, high = starts[1], starts[-2]
    found = api.get(f"/api/v1/orders?scheduled_from={low}&scheduled_to={high}&limit=500")[1]["items"]
    assert ids(found) == [order_id for order_id, detail in sorted(details.items(), reverse=True)
                          if any(low <= step["start_datetime"][:12] <= high for step in detail["steps"])]
    assert 0 < len(found) < len(everything)
    day = starts[0][:8]
    assert len(api.get(f"/api/v1/orders?scheduled_to={day}&limit=500")[1]["items"]) == len(everything)
    assert api.get("/api/v1/orders?modality=CT&station=NO_SUCH_AE")[1]["items"] == []


def test_journal_filters_match_the_full_listing(start_engine) -> None:
    engine = start_engine()
    replay(engine, ROOT / "samples" / "day-v231.hl7")
    replay(engine, ROOT / "samples" / "malformed.hl7")
    api = Api(engine.http_port)
    everything = api.get("/api/v1/journal?limit=500")[1]["items"]
    assert len(everything) == 44
    fields = {"control_id": "control_id", "message_type": "message_code", "status": "status",
              "sending_application": "sending_application", "sending_facility": "sending_facility"}
    for name, field in fields.items():
        for value in {entry[field] for entry in everything if entry[field]}:
            found = api.checked_call("GET", "/api/v1/journal", f"/api/v1/journal?{urlencode({name: value})}", 200)
            assert ids(found["items"]) == [e["id"] for e in everything if e[field] == value], (name, value)
    rejected = [entry for entry in everything if entry["status"] == "rejected"]
    word = rejected[0]["reason"].split()[1]
    found = api.get(f"/api/v1/journal?{urlencode({'reason': word})}&limit=500")[1]["items"]
    assert ids(found) == [e["id"] for e in everything if word in e["reason"]] and found
    assert api.get("/api/v1/journal?reason=%25")[1]["items"] == [e for e in everything if "%" in e["reason"]]
    order = api.get("/api/v1/orders/R2503050003")[1]
    mentioned = sorted({entry["journal_ref"] for entry in order["history"]}, reverse=True)
    assert ids(api.get("/api/v1/journal?accession=R2503050003")[1]["items"]) == mentioned
    by_patient = ids(api.get(f"/api/v1/journal?patient_id={order['patient_id']}&limit=500")[1]["items"])
    assert set(mentioned) < set(by_patient)
    first, last = everything[-1]["received_at"], everything[0]["received_at"]
    assert len(api.get(f"/api/v1/journal?{urlencode({'received_from': first[:23]})}&limit=500")[1]["items"]) == 44
    assert api.get(f"/api/v1/journal?{urlencode({'received_to': first[:10]})}&limit=500")[1]["items"] == everything
    assert api.get(f"/api/v1/journal?{urlencode({'received_from': f'{int(last[:4]) + 1}-01-01'})}")[1]["items"] == []


def test_paging_returns_every_row_once_in_a_stable_order_while_rows_arrive(start_engine, tmp_path) -> None:
    engine = start_engine()
    replay(engine, ROOT / "samples" / "day-v231.hl7")
    api = Api(engine.http_port)
    before = api.get("/api/v1/orders?limit=500")[1]["items"]
    batches = iter(range(100, 1000, 100))
    paged = all_pages(api, "/api/v1/orders", 5,
                      lambda: replay(engine, order_file(tmp_path, 2, start=next(batches))))
    assert ids(paged) == ids(before)         # newest first: orders created meanwhile come before page 1
    assert len(api.get("/api/v1/orders?limit=500")[1]["items"]) == len(before) + 4
    journal = api.get("/api/v1/journal?limit=500")[1]["items"]
    assert ids(all_pages(api, "/api/v1/journal", 7)) == ids(journal)
    assert ids(all_pages(api, "/api/v1/journal?status=applied", 4)) == [
        e["id"] for e in journal if e["status"] == "applied"]
    assert ids(all_pages(api, "/api/v1/orders?modality=CR", 1)) == ids(
        api.get("/api/v1/orders?modality=CR")[1]["items"])
