"""Orders created, edited, cancelled and rescheduled over the HTTP API (issue 13) behave as if the RIS had
sent them: the created order is on the DICOM worklist (DCMTK findscu), its cancel reaches a stand-in RIS
over MLLP, a retried POST with the same Idempotency-Key creates nothing, impossible changes are 409.  All with
the shipped rules: their 'orders entered over the HTTP API' rule (MSH-3 SWF_API) names the RIS and the archive."""
from __future__ import annotations

import json
from pathlib import Path

from tests.api_client import Api
from tests.integration.test_mpps import Modality, in_progress
from tests.integration.test_worklist import SPS, findscu_files
from tests.mllp_receiver import Receiver

NEW_ORDER = {"patient": {"patient_id": "PAT-API-1", "issuer": "GENHOSP", "name": "MÜLLER^ANNA", "birth_date": "19780214",
                         "sex": "F"},
             "placer_order_number": "PLC-API-1", "accession_number": "ACC-API-1",
             "procedure": {"code": "CTCHESTC", "description": "CT chest", "coding_scheme": "99RAD"},
             "modality": "CT", "start": "202503041000"}


def post(api: Api, path: str, body: dict, key: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json", **({"Idempotency-Key": key} if key else {})}
    status, answer, _ = api.call("POST", path, json.dumps(body).encode(), headers)
    return status, answer


def test_an_order_created_over_the_api_is_on_the_worklist_once_and_its_cancel_reaches_the_ris(
        start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address})
    api = Api(engine.http_port)
    status, created = post(api, "/api/v1/orders", NEW_ORDER, key="create-PLC-API-1")
    assert status == 200, created
    api.validate("POST", "/api/v1/orders", 200, created)
    assert created["accession_numbers"] == ["ACC-API-1"] and created["order"]["sending_application"] == "SWF_API"
    assert [(s["status"], s["modality"]) for s in created["order"]["steps"]] == [("SCHEDULED", "CT")]
    # the retry with the same key: the first answer again, no second order, no second journal entry
    assert post(api, "/api/v1/orders", NEW_ORDER, key="create-PLC-API-1") == (200, created)
    assert len(api.get("/api/v1/orders?placer=PLC-API-1")[1]["items"]) == 1
    assert len(api.get("/api/v1/journal?limit=500")[1]["items"]) == 1
    # the same key with another body, or for another operation: 422 naming the header, nothing done
    status, refused = post(api, "/api/v1/orders", {**NEW_ORDER, "modality": "MR"}, key="create-PLC-API-1")
    assert (status, refused["field"]) == (422, "header.Idempotency-Key") and "another request" in refused["error"]
    api.validate("POST", "/api/v1/orders", 422, refused)
    status, refused = post(api, "/api/v1/orders/ACC-API-1/cancel", {}, key="create-PLC-API-1")
    assert (status, refused["field"]) == (422, "header.Idempotency-Key") and "createOrder" in refused["error"]
    reordered = json.dumps(dict(reversed(NEW_ORDER.items())), indent=2).encode()   # the same request
    assert api.call("POST", "/api/v1/orders", reordered, {"Idempotency-Key": "create-PLC-API-1"})[:2] == (200, created)
    assert [s["modality"] for s in api.get("/api/v1/orders/ACC-API-1")[1]["steps"]] == ["CT"]

    station = created["order"]["steps"][0]["station_ae_title"]
    responses = findscu_files(engine.dicom_port, ["PatientName", "PatientID", "AccessionNumber",
                                                  f"{SPS}[0].Modality=CT", f"{SPS}[0].ScheduledProcedureStepStartDate"
                                                  "=20250304", f"{SPS}[0].ScheduledStationAETitle"],
                              tmp_path / "mwl", calling=station or "CT1_AE")
    assert [(r.AccessionNumber, r.PatientID, str(r.PatientName)) for r in responses] == [
        ("ACC-API-1", "PAT-API-1", "MÜLLER^ANNA")]

    status, cancelled = post(api, "/api/v1/orders/ACC-API-1/cancel", {"reason": "patient declined"})
    assert status == 200, cancelled
    api.validate("POST", "/api/v1/orders/{accession}/cancel", 200, cancelled)
    assert (cancelled["previous_status"], cancelled["status"]) == ("SC", "CA")
    [message] = ris.wait_for(1)
    assert (message.message_code, message.get("ORC-1"), message.get("ORC-5"), message.get("OBR-18")) == (
        "ORM^O01", "OC", "CA", "ACC-API-1")
    status, refused = post(api, "/api/v1/orders/ACC-API-1/reschedule", {"start": "202503051000"})
    assert status == 409 and "no open step" in refused["error"], refused
    api.validate("POST", "/api/v1/orders/{accession}/reschedule", 409, refused)
    audit = api.get("/api/v1/audit")[1]["items"]
    assert [(a["action"], a["subject"]) for a in audit] == [("order.cancel", "ACC-API-1"),
                                                            ("order.create", "ACC-API-1")]
    assert audit[0]["before"]["status"] == "SC" and audit[0]["after"]["status"] == "CA"
    assert audit[0]["after"]["reason"] == "patient declined"
    ris.close()


def test_reschedule_and_edit_over_the_api_reach_the_ris_as_changes(start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address})
    api = Api(engine.http_port)
    assert post(api, "/api/v1/orders", NEW_ORDER)[0] == 200
    status, moved = post(api, "/api/v1/orders/ACC-API-1/reschedule", {"start": "202503051130", "reason": "room"})
    assert status == 200, moved
    assert moved["order"]["steps"][0]["start_datetime"].startswith("20250305113")
    [message] = ris.wait_for(1)
    assert (message.get("ORC-1"), message.get("OBR-18")) == ("XO", "ACC-API-1")
    status, edited, _ = api.call("PATCH", "/api/v1/orders/ACC-API-1", json.dumps({"start": "202503061200"}).encode())
    assert status == 200, edited
    api.validate("PATCH", "/api/v1/orders/{accession}", 200, edited)
    assert edited["order"]["steps"][0]["start_datetime"].startswith("20250306120")
    status, missing = post(api, "/api/v1/orders/NO-SUCH/cancel", {})
    assert status == 404, missing
    status, bad = post(api, "/api/v1/orders/ACC-API-1/reschedule", {})
    assert (status, bad["field"]) == (400, "body.start")
    status, bad = post(api, "/api/v1/orders", {**NEW_ORDER, "modality": "ct"})
    assert (status, bad["field"]) == (400, "body.modality")
    ris.close()


def test_an_order_entered_with_the_shipped_rules_reports_to_the_archive_and_its_mpps_to_the_ris(
        start_engine) -> None:
    """A site without an HL7 feed: no accession or filler number sent, the engine (filler mode) assigns them;
    the archive gets the scheduled order (RAD-4), the RIS the modality's IN PROGRESS (SC/IP)."""
    ris, archive = Receiver(), Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    api = Api(engine.http_port)
    status, created = post(api, "/api/v1/orders", {key: value for key, value in NEW_ORDER.items()
                                                   if key != "accession_number"})
    assert status == 200, created
    order = created["order"]
    assert (order["deployment_mode"], order["outbound"]) == ("filler", ["ris", "archive"])
    assert order["filler_order_number"] and order["steps"][0]["station_ae_title"] == "CT1_AE"
    [accession] = created["accession_numbers"]
    [scheduled] = archive.wait_for(1)
    assert (scheduled.message_code, scheduled.get("ORC-1"), scheduled.get("IPC-1")) == ("OMI^O23", "NW", accession)

    [procedure], [step] = order["procedures"], order["steps"]
    modality = Modality(engine.dicom_port)
    try:
        started, _ = modality.create(in_progress(accession, procedure["requested_procedure_id"], step["sps_id"],
                                                 procedure["study_instance_uid"]), "2.25.4711001")
    finally:
        modality.close()
    assert started.Status == 0x0000
    [reported] = ris.wait_for(1)
    assert (reported.message_code, reported.get("ORC-1"), reported.get("ORC-5"), reported.get("OBR-18"),
            reported.get("ORC-3.1")) == ("ORM^O01", "SC", "IP", accession, order["filler_order_number"])
    ris.close()
    archive.close()
