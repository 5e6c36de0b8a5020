"""One journal message over the HTTP API (issue 13): its fields named by the profile that maps it (else
the standard), what it changed (history rows, events, the outbox messages they queued), and its resend to
a destination: a copy under a new control ID through the durable outbox to a stand-in RIS over MLLP, the
same from ``swf journal ID --resend-to``, each audited as journal.resend.  Answers validated against the
served OpenAPI document."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.api_client import Api
from tests.conftest import run_swf
from tests.integration.test_outbound import orders
from tests.mllp_receiver import Receiver


def post(api: Api, path: str, body: dict) -> tuple[int, dict]:
    status, answer, _ = api.call("POST", path, json.dumps(body).encode(), {"content-type": "application/json"})
    return status, answer


def segments_after_msh(raw: bytes) -> list[bytes]:
    return [line for line in raw.replace(b"\n", b"\r").split(b"\r")[1:] if line]


def test_a_message_shows_what_it_changed_and_is_resent_to_a_destination_through_the_outbox(
        start_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ris, archive = Receiver(), Receiver()
    monkeypatch.setenv("SWF_RIS_ADDRESS", ris.address)   # the CLI twin reads the same destinations
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    api = Api(engine.http_port)
    sent = orders(tmp_path, 1)
    assert run_swf("replay", str(sent), "--to", engine.address).returncode == 0
    [scheduled] = archive.wait_for(1)                     # the order's NW reached the procedure destination
    [entry] = api.get("/api/v1/journal")[1]["items"]

    shown = api.checked_call("GET", "/api/v1/journal/{id}", f"/api/v1/journal/{entry['id']}", 200)
    assert shown["profile"] == "ihe-v231-orm"
    fields = {f"{field['segment']}-{field['field']}": field for field in shown["fields"]}
    assert (fields["ZDS-1"]["name"], fields["ZDS-1"]["name_source"]) == ("StudyInstanceUID (ZDS-1.1)", "profile")
    assert "ihe-v231-orm.yaml:" in fields["ZDS-1"]["where"]          # the Z-segment is named by the profile
    assert fields["OBR-18"]["name"] == "AccessionNumber"
    assert (fields["MSH-7"]["name_source"], fields["MSH-7"]["where"]) == ("standard", "HL7 v2.3.1")
    assert "DATE" in fields["MSH-7"]["name"].upper()
    changes = shown["changes"]
    assert [change["accession_numbers"] for change in changes["orders"]] and all(
        change["accession_numbers"] == ["ACC0"] for change in changes["orders"])
    assert [(change["patient_id"], change["kind"]) for change in changes["patients"]] == [("PAT4711", "created")]
    assert [event["kind"] for event in changes["events"]] == ["order.scheduled"]
    assert [(queued["destination"], queued["kind"], queued["control_id"]) for queued in changes["outbox"]] == [
        ("archive", "order.scheduled", scheduled.control_id)]

    resent = api.checked_call("POST", "/api/v1/journal/{id}/resend", f"/api/v1/journal/{entry['id']}/resend",
                              200, json.dumps({"destination": "ris"}).encode(), {"content-type": "application/json"})
    assert (resent["destination"], resent["original_control_id"]) == ("ris", "C0")
    [copy] = ris.wait_for(1)
    assert copy.control_id == resent["control_id"] != "C0"
    assert (copy.get("MSH-3"), copy.get("MSH-5"), copy.get("MSH-9")) == ("SWF_ENGINE", "RIS", "ORM^O01")
    assert segments_after_msh(ris.raw[0]) == segments_after_msh(sent.read_bytes())   # the message as received

    status, refused = post(api, f"/api/v1/journal/{entry['id']}/resend", {"destination": "nowhere"})
    assert (status, refused["field"]) == (400, "body.destination") and "ris" in refused["error"]
    api.validate("POST", "/api/v1/journal/{id}/resend", 400, refused)
    status, missing = post(api, "/api/v1/journal/999999/resend", {"destination": "ris"})
    assert status == 404, missing
    api.validate("POST", "/api/v1/journal/{id}/resend", 404, missing)

    # the CLI twin: the same copy queued by a second process, delivered by the running engine
    done = run_swf("journal", str(entry["id"]), "--resend-to", "ris", "--data-dir", str(engine.data_dir),
                   "--routes", str(engine.routes))
    assert done.returncode == 0, done.stderr
    assert ris.wait_for(2)[1].control_id not in ("C0", resent["control_id"])
    refused_cli = run_swf("journal", str(entry["id"]), "--resend-to", "nowhere", "--data-dir", str(engine.data_dir),
                          "--routes", str(engine.routes))
    assert refused_cli.returncode == 2 and "nowhere" in refused_cli.stderr

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        queued = api.checked_call("GET", "/api/v1/journal/{id}", f"/api/v1/journal/{entry['id']}", 200)
        copies = [q for q in queued["changes"]["outbox"] if q["kind"] == "journal.resend"]
        if [q["status"] for q in copies] == ["delivered", "delivered"]:
            break
        time.sleep(0.2)
    assert [(q["destination"], q["event_ref"]) for q in copies] == [("ris", None), ("ris", None)]
    assert [q["status"] for q in copies] == ["delivered", "delivered"]
    listed = api.checked_call("GET", "/api/v1/outbox", "/api/v1/outbox?status=delivered", 200)["items"]
    assert [q["kind"] for q in listed if q["destination"] == "ris"] == ["journal.resend", "journal.resend"]
    audit = api.get("/api/v1/audit?action=journal.resend")[1]["items"]
    assert [(a["actor"].split(":")[0], a["subject"], a["after"]["destination"]) for a in audit] == [
        ("cli", str(entry["id"]), "ris"), ("local", str(entry["id"]), "ris")]
    ris.close(), archive.close()
