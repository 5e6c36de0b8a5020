"""Linking what arrived unscheduled (issue 16): an unscheduled MPPS (pynetdicom) and its images (storescu)
are linked to an order by `swf link` and by POST /api/v1/mpps/{uid}/link, on one real engine.  The order's
steps go as the MPPS is, the stand-in RIS gets over MLLP what a scheduled MPPS would have sent (IP, then
CM), DCMTK findscu finds the images under the order's accession and patient, history names the operator.
Bad inputs: an unknown MPPS, an unknown accession, an MPPS linked already, a step that has another MPPS."""
from __future__ import annotations

import json
from pathlib import Path

from pydicom.dataset import Dataset

from tests.api_client import Api
from tests.conftest import run_swf
from tests.integration.test_api_order_actions import NEW_ORDER, post
from tests.integration.test_mpps import ACCESSION, Modality, in_progress, replay_order
from tests.integration.test_storage_qr import CT, _base, _image, _save, findscu, storescu
from tests.mllp_receiver import Receiver

WALK_IN = "2.25.16016016016016016016016"       # the study the modality made up for a walk-in patient
MPPS_1, MPPS_2 = "2.25.1601601", "2.25.1601602"


def completed(series_uid: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = "20250304", "101945"
    series = Dataset()
    series.SeriesInstanceUID, series.ProtocolName, series.ReferencedImageSequence = series_uid, "CHEST", []
    ds.PerformedSeriesSequence = [series]
    return ds


def walk_in_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number in (1, 2):
        ds = _image(_base(CT, f"{WALK_IN}.1.{number}", f"{WALK_IN}.1", "CT", number), size=8)
        ds.StudyInstanceUID, ds.AccessionNumber = WALK_IN, ""
        ds.PatientID, ds.PatientName = "ER-TEMP-7", "UNKNOWN^MALE"
        files.append(_save(ds, folder / f"{number}.dcm"))
    return files


def test_unscheduled_mpps_linked_by_cli_and_api(start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    try:
        engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address})
        replay_order(engine, tmp_path)                           # ACCESSION, patient PAT4711
        api = Api(engine.http_port)
        assert post(api, "/api/v1/orders", NEW_ORDER)[0] == 200  # ACC-API-1, patient PAT-API-1
        modality = Modality(engine.dicom_port)
        for uid, study_uid in ((MPPS_1, WALK_IN), (MPPS_2, WALK_IN + ".9")):
            unscheduled = in_progress(accession="", rp="", sps="", study=study_uid)
            unscheduled.PatientID = "ER-TEMP-7"
            assert modality.create(unscheduled, uid)[0].Status == 0x0000
        assert modality.set(completed(f"{WALK_IN}.1"), MPPS_1)[0].Status == 0x0000
        modality.close()
        assert storescu(engine, *walk_in_images(tmp_path / "images")).returncode == 0
        data = ("--data-dir", str(engine.data_dir))

        # the CLI's bad inputs: nothing linked
        unknown = run_swf("link", "2.25.404", ACCESSION, *data)
        assert unknown.returncode == 1 and "no MPPS with SOP Instance UID '2.25.404'" in unknown.stderr
        no_order = run_swf("link", MPPS_1, "NOPE-1", *data)
        assert no_order.returncode == 1 and "no order with accession number 'NOPE-1'" in no_order.stderr

        linked = run_swf("link", MPPS_1, ACCESSION, "--by", "nurse jackie", *data)
        assert linked.returncode == 0, linked.stdout + linked.stderr
        assert "-> COMPLETED" in linked.stdout and "2 stored instance(s)" in linked.stdout
        again = run_swf("link", MPPS_1, ACCESSION, *data)
        assert again.returncode == 1 and f"already linked to accession {ACCESSION}" in again.stderr

        # the RIS hears what a scheduled MPPS would have told it: in progress, then completed
        messages = ris.wait_for(2)
        assert [(m.get("ORC-5"), m.get("OBR-18")) for m in messages] == [("IP", ACCESSION), ("CM", ACCESSION)]
        order = run_swf("orders", ACCESSION, *data).stdout
        assert "COMPLETED" in order and "MPPS linked" in order and "by nurse jackie" in order
        assert "scheduled" in run_swf("mpps", MPPS_1, *data).stdout

        # Q/R: the walk-in images answer under the order's accession and patient
        [study] = findscu(engine, tmp_path / "find", "QueryRetrieveLevel=STUDY", f"AccessionNumber={ACCESSION}",
                          "PatientID", "NumberOfStudyRelatedInstances")
        assert (study.StudyInstanceUID, study.PatientID, int(study.NumberOfStudyRelatedInstances)) == (
            WALK_IN, "PAT4711", 2)
        assert findscu(engine, tmp_path / "none", "QueryRetrieveLevel=STUDY", "PatientID=ER-TEMP-7") == []

        # the API twin: 404 naming the MPPS or the accession, 409 for a step that has another MPPS
        path = f"/api/v1/mpps/{MPPS_2}/link"
        status, answer = post(api, "/api/v1/mpps/2.25.404/link", {"accession": "ACC-API-1"})
        assert status == 404 and "2.25.404" in answer["error"], answer
        api.validate("POST", "/api/v1/mpps/{uid}/link", 404, answer)
        status, answer = post(api, path, {"accession": "NOPE-2"})
        assert status == 404 and "NOPE-2" in answer["error"], answer
        status, answer = post(api, path, {"accession": ACCESSION})
        assert status == 409 and f"already has MPPS {MPPS_1}" in answer["error"], answer
        api.validate("POST", "/api/v1/mpps/{uid}/link", 409, answer)
        assert post(api, path, {})[0] == 400
        status, answer = post(api, path, {"accession": "ACC-API-1"}, key="link-2")
        assert status == 200, answer
        api.validate("POST", "/api/v1/mpps/{uid}/link", 200, answer)
        assert (answer["mpps_status"], answer["steps"], answer["order_statuses"]) == (
            "IN PROGRESS", [f"{answer['steps'][0].split(' ')[0]} -> STARTED"], {"ACC-API-1": "IP"})
        assert post(api, path, {"accession": "ACC-API-1"}, key="link-2") == (200, answer)   # a retry: same answer
        status, answer = post(api, path, {"accession": "ACC-API-1"})
        assert status == 409 and "already linked" in answer["error"]
        [started] = ris.wait_for(3)[2:]
        assert (started.get("ORC-5"), started.get("OBR-18")) == ("IP", "ACC-API-1")
        audit = api.get("/api/v1/audit")[1]["items"]
        assert [(a["action"], a["subject"]) for a in audit][:2] == [("mpps.link", "ACC-API-1"),
                                                                    ("mpps.link", ACCESSION)]
        assert json.dumps(audit[1]["actor"]) == '"nurse jackie"'
    finally:
        ris.close()
