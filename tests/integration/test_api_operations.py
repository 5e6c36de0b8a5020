"""Every /api/v1 operation over real HTTP against an engine fed over MLLP and DICOM (issue 13): each real
answer is validated against the OpenAPI document the engine serves, every documented operation is
exercised, and resend / discard are recorded in the audit trail."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from pydicom.uid import generate_uid

from tests.api_client import Api
from tests.conftest import ROOT, free_port, run_swf
from tests.integration.test_api_order_actions import NEW_ORDER
from tests.integration.test_forwarding import DCMTK
from tests.integration.test_mpps import Modality, in_progress
from tests.integration.test_outbound import _fast_retry_routes
from tests.integration.test_swf_day import ACCESSION, STUDY, commit, mpps, write_images
from tests.mllp_receiver import Receiver

ORDER = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|F1|P|2.3.1\n"
         "PID|1||PAT4711^^^GENHOSP^MR||MULLER^ANNA\n"
         "ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||1^once^^20250304100000^^R\n"
         "OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest^99RAD||||||||||||||ACC25030417|RP-0417-1|SPS-0417-1"
         "||||CT\n"
         f"ZDS|{STUDY}^RIS^Application^DICOM\n")


def wait_until(check, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def busy_engine(start_engine, tmp_path: Path):
    """An engine after a day of HL7 (samples/day-v231.hl7), one CT order performed (MPPS, two images,
    storage commitment), an archive that refuses every message (dead outbox messages) and a forward
    destination that is down (dead forwards)."""
    archive = Receiver(answer=lambda message: "AE")
    modality_port = free_port()
    config = tmp_path / "engine.yaml"
    config.write_text(f"dicom:\n  forward_store_to: [ARCHIVE]\n  forward_retry_seconds: 0.2\n"
                      f"  forward_max_retry_seconds: 0.3\n  forward_give_up_hours: 0.0002\n"
                      f"  aes:\n    ARCHIVE: {{host: 127.0.0.1, port: {free_port()}}}\n"
                      f"    CT1_AE: {{host: 127.0.0.1, port: {modality_port}}}\n")
    engine = start_engine("--config", str(config), env={"SWF_ARCHIVE_ADDRESS": archive.address},
                          routes=_fast_retry_routes(tmp_path))
    order = tmp_path / "order.hl7"
    order.write_text(ORDER)
    for path in (ROOT / "samples" / "day-v231.hl7", order):
        assert run_swf("replay", str(path), "--to", engine.address, "--no-progress").returncode == 0
    uid = generate_uid(prefix="2.25.")
    assert mpps(engine, uid, "IN PROGRESS") == 0x0000
    references = write_images(tmp_path / "images", 2)
    stored = subprocess.run(["storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "+sd", "127.0.0.1",
                             str(engine.dicom_port), str(tmp_path / "images")], capture_output=True, text=True,
                            env=DCMTK, timeout=30)
    assert stored.returncode == 0, stored.stderr
    assert mpps(engine, uid, "COMPLETED") == 0x0000
    commit(engine, modality_port, references)
    api = Api(engine.http_port)
    wait_until(lambda: api.get("/api/v1/outbox?status=dead")[1]["items"]
               and len(api.get("/api/v1/forwards?status=dead")[1]["items"]) == 2)
    return engine, api, archive


def test_every_operation_answers_as_its_document_says(start_engine, tmp_path: Path) -> None:
    engine, api, archive = busy_engine(start_engine, tmp_path)
    orders = api.checked_call("GET", "/api/v1/orders", "/api/v1/orders?limit=500", 200)
    assert len(orders["items"]) == 13 and orders["next_cursor"] is None
    order = api.checked_call("GET", "/api/v1/orders/{accession}", f"/api/v1/orders/{ACCESSION}", 200)
    assert order["status"] == "CM" and [step["status"] for step in order["steps"]] == ["COMPLETED"]
    assert [(p["status"], p["pps_id"]) for p in order["performed_steps"]] == [("COMPLETED", "PPS-8831")]
    assert [(s["series_instance_uid"], s["instances"]) for s in order["series"]] == [(STUDY + ".1", 2)]
    assert [(c["references"], c["committed"], c["failed"]) for c in order["commitments"]] == [(2, 2, 0)]
    assert [entry["kind"] for entry in order["history"]][:2] == ["order NW", "SPS SCHEDULED"]
    api.checked_call("GET", "/api/v1/orders/{accession}", "/api/v1/orders/NO-SUCH-ORDER", 404)

    patients = api.checked_call("GET", "/api/v1/patients", "/api/v1/patients?name=m%C3%BCller*", 200)["items"]
    assert [(p["patient_id"], p["issuer"], p["patient_name"]) for p in patients] == [("PAT4711", "GENHOSP", "MULLER^ANNA")]
    assert len(api.checked_call("GET", "/api/v1/patients", "/api/v1/patients?limit=500", 200)["items"]) == 12
    merged = api.checked_call("GET", "/api/v1/patients/{patient_id}", "/api/v1/patients/PAT20006", 200)["patients"]
    assert [key["patient_id"] for key in merged[0]["merged_from"]] == ["PAT20060"]
    api.checked_call("GET", "/api/v1/patients/{patient_id}", "/api/v1/patients/PAT20006?issuer=NOWHERE", 404)

    [performed] = api.checked_call("GET", "/api/v1/mpps", "/api/v1/mpps?status=COMPLETED", 200)["items"]
    assert (performed["accessions"], performed["unscheduled"]) == ([ACCESSION], False)
    assert api.checked_call("GET", "/api/v1/mpps", "/api/v1/mpps?unscheduled=true", 200)["items"] == []
    detail = api.checked_call("GET", "/api/v1/mpps/{uid}", f"/api/v1/mpps/{performed['sop_instance_uid']}", 200)
    assert [v["operation"] for v in detail["versions"]] == ["N-CREATE", "N-SET"]
    assert detail["summary"]["patient_id"] == "PAT4711" and detail["dataset"]["00400252"]["Value"] == ["COMPLETED"]
    assert api.checked_call("GET", "/api/v1/mpps/{uid}", "/api/v1/mpps/PPS-8831", 200) == detail
    api.checked_call("GET", "/api/v1/mpps/{uid}", "/api/v1/mpps/1.2.3.4", 404)
    link = f"/api/v1/mpps/{performed['sop_instance_uid']}/link"   # 200: tests/integration/test_mpps_link.py
    refused = api.checked_call("POST", "/api/v1/mpps/{uid}/link", link, 409,
                               json.dumps({"accession": ACCESSION}).encode())
    assert "already linked" in refused["error"]
    api.checked_call("POST", "/api/v1/mpps/{uid}/link", "/api/v1/mpps/1.2.3.4/link", 404, b'{"accession": "X"}')

    view = api.checked_call("GET", "/api/v1/cluster", "/api/v1/cluster", 200)   # this one engine, its leases
    [instance] = view["instances"]
    assert instance["name"].endswith(f":{engine.mllp_port}") and view["now"] - instance["heartbeat_at"] < 30
    held = {lease["name"]: lease["holder"] for lease in view["leases"] if lease["expires_at"] > view["now"]}
    assert held["leader"] == instance["name"] and held["outbox:archive"] == instance["name"]

    statement = api.checked_call("GET", "/api/v1/conformance", "/api/v1/conformance?format=json", 200)
    assert "SCP (SCP/SCU role selection)" in {row["role"] for row in statement["scu_contexts"]}
    markdown = api.checked_call("GET", "/api/v1/conformance", "/api/v1/conformance", 200)["markdown"]
    assert "## Presentation contexts (SCU)" in markdown   # equal to the CLI's: test_conformance_scu.py

    journal = api.checked_call("GET", "/api/v1/journal", "/api/v1/journal?limit=500", 200)
    assert len(journal["items"]) == 33
    entry = api.checked_call("GET", "/api/v1/journal/{id}", f"/api/v1/journal/{journal['items'][0]['id']}", 200)
    assert entry["control_id"] == "F1" and entry["raw"].startswith("MSH|^~\\&|RIS|GENHOSP")
    [name] = [field for field in entry["fields"] if (field["segment"], field["field"]) == ("PID", 5)]
    assert (name["index"], name["name"], name["name_source"], name["value"]) == (
        1, "PatientName", "profile", "MULLER^ANNA") and "ihe-v231-orm.yaml:" in name["where"]
    assert [event["kind"] for event in entry["changes"]["events"]] == ["order.scheduled"]
    assert "MSA|AA|F1" in entry["ack"]
    api.checked_call("GET", "/api/v1/journal/{id}", "/api/v1/journal/999999", 404)

    dead = api.checked_call("GET", "/api/v1/outbox", "/api/v1/outbox?status=dead", 200)["items"]
    assert dead and {message["status"] for message in dead} == {"dead"}
    message = api.checked_call("GET", "/api/v1/outbox/{id}", f"/api/v1/outbox/{dead[0]['id']}", 200)
    assert message["destination"] == "archive" and "MSA|AE" in message["ack"] and message["message"].startswith("MSH")
    api.checked_call("GET", "/api/v1/outbox/{id}", "/api/v1/outbox/999999", 404)
    for status in ("pending", "delivered", "discarded", "all"):
        api.checked_call("GET", "/api/v1/outbox", f"/api/v1/outbox?status={status}", 200)

    forwards = api.checked_call("GET", "/api/v1/forwards", "/api/v1/forwards?status=dead", 200)["items"]
    assert len(forwards) == 2 and {forward["kind"] for forward in forwards} == {"store"}
    forward = api.checked_call("GET", "/api/v1/forwards/{id}", f"/api/v1/forwards/{forwards[0]['id']}", 200)
    assert forward["destination"] == "ARCHIVE" and forward["attempts"] >= 1
    api.checked_call("GET", "/api/v1/forwards/{id}", "/api/v1/forwards/999999", 404)

    # operator actions: 200 in a state that allows them, 409 with the reason otherwise, 404 unknown
    outbox_id, forward_id = dead[0]["id"], forwards[0]["id"]
    answer = api.checked_call("POST", "/api/v1/outbox/{id}/discard", f"/api/v1/outbox/{outbox_id}/discard", 200,
                              b'{"reason": "archive rebuilt"}')
    assert answer == {"id": outbox_id, "status": "discarded", "previous_status": "dead"}
    assert f"outbox message {outbox_id} discarded (was dead) by local from 127.0.0.1" in engine.log()
    refused = api.checked_call("POST", "/api/v1/outbox/{id}/discard", f"/api/v1/outbox/{outbox_id}/discard", 409)
    assert refused["error"] == f"outbox message {outbox_id} is discarded: only pending, dead ones can be discarded"
    api.checked_call("POST", "/api/v1/outbox/{id}/resend", f"/api/v1/outbox/{outbox_id}/resend", 200)
    api.checked_call("POST", "/api/v1/outbox/{id}/resend", "/api/v1/outbox/999999/resend", 404)
    api.checked_call("POST", "/api/v1/outbox/{id}/discard", "/api/v1/outbox/999999/discard", 404)
    api.checked_call("POST", "/api/v1/forwards/{id}/discard", f"/api/v1/forwards/{forward_id}/discard", 200)
    api.checked_call("POST", "/api/v1/forwards/{id}/discard", f"/api/v1/forwards/{forward_id}/discard", 409)
    api.checked_call("POST", "/api/v1/forwards/{id}/resend", f"/api/v1/forwards/{forward_id}/resend", 200)
    api.checked_call("POST", "/api/v1/forwards/{id}/resend", "/api/v1/forwards/999999/resend", 404)
    api.checked_call("POST", "/api/v1/forwards/{id}/discard", "/api/v1/forwards/999999/discard", 404)
    delivered = api.get("/api/v1/outbox?status=delivered")[1]["items"]
    if delivered:   # a delivered message cannot be resent (the archive refuses all here, so none is)
        api.checked_call("POST", "/api/v1/outbox/{id}/resend", f"/api/v1/outbox/{delivered[0]['id']}/resend", 409)

    audit = api.checked_call("GET", "/api/v1/audit", "/api/v1/audit", 200)["items"]
    assert [(a["action"], a["subject"], a["before"], a["after"]) for a in audit] == [
        ("forwards.resend", str(forward_id), {"status": "discarded"}, {"status": "pending"}),
        ("forwards.discard", str(forward_id), {"status": "dead"}, {"status": "discarded"}),
        ("outbox.resend", str(outbox_id), {"status": "discarded"}, {"status": "pending"}),
        ("outbox.discard", str(outbox_id), {"status": "dead"}, {"status": "discarded", "reason": "archive rebuilt"})]
    assert {(a["actor"], a["client"]) for a in audit} == {("local", "127.0.0.1")}
    only = api.checked_call("GET", "/api/v1/audit", "/api/v1/audit?action=outbox.discard", 200)["items"]
    assert [a["subject"] for a in only] == [str(outbox_id)]
    api.checked_call("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", 200)
    resent = api.checked_call("POST", "/api/v1/journal/{id}/resend", f"/api/v1/journal/{entry['id']}/resend", 200,
                              b'{"destination": "archive"}')
    assert (resent["destination"], resent["original_control_id"]) == ("archive", "F1")
    api.checked_call("POST", "/api/v1/journal/{id}/resend", f"/api/v1/journal/{entry['id']}/resend", 400,
                     b'{"destination": "no-such-destination"}')

    # order changes: an entered order edited, rescheduled, cancelled; the completed order cannot be cancelled
    entered = api.checked_call("POST", "/api/v1/orders", "/api/v1/orders", 200, json.dumps(NEW_ORDER).encode())
    assert entered["accession_numbers"] == ["ACC-API-1"]
    api.checked_call("PATCH", "/api/v1/orders/{accession}", "/api/v1/orders/ACC-API-1", 200,
                     b'{"procedure": {"code": "CTABD", "description": "CT abdomen"}}')
    api.checked_call("POST", "/api/v1/orders/{accession}/reschedule", "/api/v1/orders/ACC-API-1/reschedule", 200,
                     b'{"station_ae_title": "CT2_AE"}')
    api.checked_call("POST", "/api/v1/orders/{accession}/cancel", "/api/v1/orders/ACC-API-1/cancel", 200)
    refused = api.checked_call("POST", "/api/v1/orders/{accession}/cancel", f"/api/v1/orders/{ACCESSION}/cancel", 409)
    assert refused["error"].startswith(f"order {ACCESSION} not cancelled: SPS ") and "COMPLETED" in refused["error"]
    api.checked_call("PATCH", "/api/v1/orders/{accession}", "/api/v1/orders/NO-SUCH-ORDER", 404, b'{"modality": "CT"}')

    # rules: the running set with file:line, a posted check, a dry-run of a candidate; explain of a step
    rules = api.checked_call("GET", "/api/v1/rules", "/api/v1/rules", 200)
    assert rules[0]["position"] == 1 and all(".yaml:" in rule["where"] for rule in rules)
    texts = {path.name: path.read_text() for path in (ROOT / "routes").glob("*.yaml")}
    checked = api.checked_call("POST", "/api/v1/rules/check", "/api/v1/rules/check", 200, json.dumps(texts).encode())
    assert checked["ok"] and checked["files"] == len(texts) and checked["problems"] == []
    broken = api.checked_call("POST", "/api/v1/rules/check", "/api/v1/rules/check", 200,
                              json.dumps({"90-x.yaml": "rules:\n  - name: broken\n    mode: sideways\n"}).encode())
    assert not broken["ok"] and [(p["file"], p["line"]) for p in broken["problems"]][:1] == [("90-x.yaml", 3)], broken
    moved = {**texts, "20-rooms.yaml": texts["20-rooms.yaml"].replace("station_ae: CT1_AE", "station_ae: CT9_AE")}
    report = api.checked_call("POST", "/api/v1/rules/dry-run", "/api/v1/rules/dry-run", 200,
                              json.dumps({"candidate": moved}).encode())
    assert report["messages"] >= 30 and report["by_kind"].get("station", 0) >= 1, report["by_kind"]
    assert {step["station_ae"] for diff in report["differences"] if "station" in diff["kinds"]
            for step in diff["candidate"]["steps"]} == {"CT9_AE"}
    posted = api.checked_call("POST", "/api/v1/rules/dry-run", "/api/v1/rules/dry-run", 200,
                              json.dumps({"candidate": moved, "messages": ORDER}).encode())
    assert (posted["messages"], posted["by_kind"].get("station")) == (1, 1), posted
    refused = api.checked_call("POST", "/api/v1/rules/dry-run", "/api/v1/rules/dry-run", 400,
                               json.dumps({"candidate": {"90-x.yaml": "rules: 3\n"}}).encode())
    assert refused["field"] == "body.candidate" and "90-x.yaml:" in refused["error"]
    explained = api.checked_call("GET", "/api/v1/orders/{accession}/explain", f"/api/v1/orders/{ACCESSION}/explain",
                                 200)
    assert explained["accession_number"] == ACCESSION and explained["sps_id"] == "SPS-0417-1"
    origins = {a["keyword"]: a["from"]["kind"] for a in explained["attributes"]}
    assert origins["AccessionNumber"] == "hl7" and "rule" in origins.values(), origins
    api.checked_call("GET", "/api/v1/orders/{accession}/explain", f"/api/v1/orders/{ACCESSION}/explain?sps_id=NO", 404)

    # stored studies and storage commitments
    [study] = api.checked_call("GET", "/api/v1/studies", "/api/v1/studies", 200)["items"]
    assert (study["study_instance_uid"], study["series"], study["instances"], study["linked_accession"],
            study["modalities"]) == (STUDY, 1, 2, ACCESSION, ["CT"])
    assert api.checked_call("GET", "/api/v1/studies", "/api/v1/studies?patient_id=NOBODY", 200)["items"] == []
    one = api.checked_call("GET", "/api/v1/studies/{study_uid}", f"/api/v1/studies/{STUDY}", 200)
    assert [(s["series_instance_uid"], s["instances"]) for s in one["series"]] == [(STUDY + ".1", 2)]
    api.checked_call("GET", "/api/v1/studies/{study_uid}", "/api/v1/studies/1.2.3", 404)
    [request] = api.checked_call("GET", "/api/v1/commitments", "/api/v1/commitments?status=delivered", 200)["items"]
    assert (request["references"], request["failed"]) == (2, 0)
    detail = api.checked_call("GET", "/api/v1/commitments/{transaction_uid}",
                              f"/api/v1/commitments/{request['transaction_uid']}", 200)["requests"]
    assert [reference["outcome"] for reference in detail[0]["references"]] == [0, 0]
    assert {reference["accession_number"] for reference in detail[0]["references"]} == {ACCESSION}
    api.checked_call("GET", "/api/v1/commitments/{transaction_uid}", "/api/v1/commitments/1.2.3", 404)
    assert api.checked_call("GET", "/api/v1/commitments", "/api/v1/commitments?status=dead", 200)["items"] == []

    # users: an admin and its token (from here on every call carries it), a viewer added and removed
    api.checked_call("POST", "/api/v1/users", "/api/v1/users", 200,
                     json.dumps({"name": "ops", "role": "admin", "password": "long enough"}).encode())
    token = api.checked_call("POST", "/api/v1/users/{name}/tokens", "/api/v1/users/ops/tokens", 200)["token"]
    api.headers["Authorization"] = f"Bearer {token}"
    api.checked_call("POST", "/api/v1/users", "/api/v1/users", 200,
                     json.dumps({"name": "watcher", "role": "viewer", "password": "long enough"}).encode())
    assert [user["name"] for user in api.checked_call("GET", "/api/v1/users", "/api/v1/users", 200)] == ["ops", "watcher"]
    api.checked_call("DELETE", "/api/v1/users/{name}", "/api/v1/users/watcher", 200)

    # an unscheduled MPPS linked to a new order (the bad inputs: tests/integration/test_mpps_link.py)
    modality = Modality(engine.dicom_port)
    assert modality.create(in_progress(accession="", rp="", sps="", study="2.25.1616"), "2.25.16161")[0].Status == 0
    modality.close()
    api.checked_call("POST", "/api/v1/orders", "/api/v1/orders", 200, json.dumps(
        {**NEW_ORDER, "placer_order_number": "PLC-API-2", "accession_number": "ACC-API-2"}).encode())
    linked = api.checked_call("POST", "/api/v1/mpps/{uid}/link", "/api/v1/mpps/2.25.16161/link", 200,
                              b'{"accession": "ACC-API-2"}')
    assert linked["order_statuses"] == {"ACC-API-2": "IP"}

    answered = {(method, template) for method, template, status in api.checked if status == 200}
    assert answered == api.operations(), api.operations() - answered
    archive.close()
