"""Orders created, edited, cancelled and rescheduled over the HTTP API (issue 13) behave as if the RIS had
sent them: the created order is on the DICOM worklist (DCMTK findscu), its cancel reaches a stand-in RIS
over MLLP, a retried POST with the same Idempotency-Key creates nothing, impossible changes are 409."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.api_client import Api
from tests.conftest import ROOT
from tests.integration.test_worklist import SPS, findscu_files
from tests.mllp_receiver import Receiver

NEW_ORDER = {"patient": {"patient_id": "PAT-API-1", "issuer": "GENHOSP", "name": "MÜLLER^ANNA", "birth_date": "19780214",
                         "sex": "F"},
             "placer_order_number": "PLC-API-1", "accession_number": "ACC-API-1",
             "procedure": {"code": "CTCHESTC", "description": "CT chest", "coding_scheme": "99RAD"},
             "modality": "CT", "start": "202503041000"}


def api_orders_routes(tmp_path: Path) -> Path:
    """The shipped rules with MSH-3 SWF_API (entered orders) among the RIS senders, as README 'HTTP API' says
    a site does so that entered orders report to its RIS."""
    folder = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", folder)
    senders = folder / "10-senders.yaml"
    senders.write_text(senders.read_text().replace("MSH-3: [RIS, RIS_*]", "MSH-3: [RIS, RIS_*, SWF_API]"))
    return folder


def post(api: Api, path: str, body: dict, key: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json", **({"Idempotency-Key": key} if key else {})}
    status, answer, _ = api.call("POST", path, json.dumps(body).encode(), headers)
    return status, answer


def test_an_order_created_over_the_api_is_on_the_worklist_once_and_its_cancel_reaches_the_ris(
        start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address}, routes=api_orders_routes(tmp_path))
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
    status, refused = post(api, "/api/v1/orders/ACC-API-1/cancel", {}, key="create-PLC-API-1")
    assert status == 409 and "createOrder" in refused["error"]

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
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address}, routes=api_orders_routes(tmp_path))
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
