"""The C-FIND answer limits (``dicom.worklist_max_answers``, ``dicom.query_max_answers``) over the wire: past
the limit the engine sends the first matches in its order, then 0xA700 with an Error Comment naming the limit
and the match count, and logs the calling AE; a query with exactly the limit's matches ends in Success; with
the default 0 every match comes back.  DCMTK findscu and pynetdicom as the SCUs, MWL and every Q/R level."""
from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE
from pynetdicom.sop_class import (ModalityWorklistInformationFind, PatientRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelFind)

from tests.conftest import EngineProcess
from tests.integration.test_storage_qr import CT, _base, _image, _save, dcmtk, storescu
from tests.integration.test_worklist import ACCESSION, OFFERED, load_orders

LIMIT = 2
ROOT = "2.25.8812930475521"
S1, S2, S3 = f"{ROOT}.1", f"{ROOT}.2", f"{ROOT}.3"
# (patient, study, series, instances): 3 patients, 3 studies, 3 series in S1, 3 / 2 / 1 instances in them
LAYOUT = [("LIM1", S1, f"{S1}.1", 3), ("LIM1", S1, f"{S1}.2", 2), ("LIM1", S1, f"{S1}.3", 1),
          ("LIM2", S2, f"{S2}.1", 1), ("LIM3", S3, f"{S3}.1", 1)]
PATIENT_ROOT, STUDY_ROOT = PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind
# (model, findscu option, keys, matches)
QR_QUERIES = [(PATIENT_ROOT, "-P", {"QueryRetrieveLevel": "PATIENT", "PatientID": "LIM*"}, 3),
              (STUDY_ROOT, "-S", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}, 3),
              (STUDY_ROOT, "-S", {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": S1, "SeriesInstanceUID": ""}, 3),
              (STUDY_ROOT, "-S", {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": S1,
                                  "SeriesInstanceUID": f"{S1}.1", "SOPInstanceUID": ""}, 3),
              (STUDY_ROOT, "-S", {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": S1,
                                  "SeriesInstanceUID": f"{S1}.2", "SOPInstanceUID": ""}, 2)]   # exactly the limit


def store_layout(engine: EngineProcess, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for patient, study, series, count in LAYOUT:
        for number in range(1, count + 1):
            ds = _image(_base(CT, f"{series}.{number}", series, "CT", number), size=8)
            ds.PatientID, ds.PatientName, ds.StudyInstanceUID, ds.AccessionNumber = patient, f"{patient}^X", study, ""
            ds.SeriesNumber = int(series.rsplit(".", 1)[1])
            files.append(_save(ds, folder / f"{series}.{number}.dcm"))
    sent = storescu(engine, *files)
    assert sent.returncode == 0, sent.stdout + sent.stderr


def c_find(port: int, model: str, identifier: Dataset) -> tuple[list[Dataset], Dataset]:
    """pynetdicom C-FIND: the pending identifiers and the final status."""
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(identifier, model))
    finally:
        assoc.release()
    return [found for status, found in responses[:-1]], responses[-1][0]


def identifier(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def worklist_identifier() -> Dataset:
    ds = identifier({"AccessionNumber": "", "PatientID": ""})
    step = Dataset()
    step.ScheduledStationAETitle = "*"
    step.ScheduledProcedureStepStartDate = ""
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def findscu(port: int, option: str, keys: dict[str, str], out: Path) -> tuple[int, str]:
    """DCMTK findscu: the number of responses written and its output (which names the final status)."""
    out.mkdir(parents=True, exist_ok=True)
    done = dcmtk("findscu", option, "-v", "-X", "-od", str(out), "-aet", "VIEWER", "-aec", "SWF_ENGINE", "127.0.0.1",
                 str(port), *[a for keyword, value in keys.items() for a in ("-k", f"{keyword}={value}")])
    return len(list(out.glob("rsp*.dcm"))), done.stdout + done.stderr


MWL_KEYS = {"AccessionNumber": "", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle": "*"}


def test_answers_stop_at_the_limit_with_a700_and_all_come_back_without_one(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "limits.yaml"
    config.write_text(f"dicom:\n  worklist_max_answers: {LIMIT}\n  query_max_answers: {LIMIT}\n")
    engine = start_engine("--config", str(config))
    load_orders(engine, tmp_path)
    store_layout(engine, tmp_path / "files")

    # MWL, pynetdicom: the first two by scheduled start (after the sort), then 0xA700 naming limit and matches
    found, final = c_find(engine.dicom_port, ModalityWorklistInformationFind, worklist_identifier())
    assert [ds.AccessionNumber for ds in found] == [ACCESSION, "ACC-SMITH"]
    assert (final.Status, final.ErrorComment) == (0xA700, f"answer limit {LIMIT} reached: {len(OFFERED)} matched")
    # MWL, DCMTK (the fast plain-text encoder serves it the same way)
    count, output = findscu(engine.dicom_port, "-W", MWL_KEYS, tmp_path / "mwl")
    assert count == LIMIT and "Final Find Response (Refused: OutOfResources)" in output, output

    for index, (model, option, keys, matches) in enumerate(QR_QUERIES):
        found, final = c_find(engine.dicom_port, model, identifier(keys))
        count, output = findscu(engine.dicom_port, option, keys, tmp_path / f"qr{index}")
        level = keys["QueryRetrieveLevel"]
        if matches > LIMIT:
            assert (len(found), final.Status, final.ErrorComment) == (
                LIMIT, 0xA700, f"answer limit {LIMIT} reached: {matches} matched"), level
            assert count == LIMIT and "Final Find Response (Refused: OutOfResources)" in output, (level, output)
        else:
            assert (len(found), final.Status, count) == (matches, 0x0000, matches), level
            assert "Final Find Response (Success)" in output, output
    log = engine.log()
    assert f"MWL query from VIEWER: answer limit {LIMIT} reached, {len(OFFERED)} matched" in log, log
    for level in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
        assert f"Q/R C-FIND at {level} level from VIEWER: answer limit {LIMIT} reached, 3 matched" in log, level

    # the default (0): no limit, every match and Success, on the same database
    engine.process.terminate()
    engine.process.wait(10)
    unlimited = start_engine(data_dir=engine.data_dir)
    found, final = c_find(unlimited.dicom_port, ModalityWorklistInformationFind, worklist_identifier())
    assert (len(found), final.Status) == (len(OFFERED), 0x0000)
    count, _output = findscu(unlimited.dicom_port, "-W", MWL_KEYS, tmp_path / "mwl-unlimited")
    assert count == len(OFFERED)
    for model, _option, keys, matches in QR_QUERIES:
        found, final = c_find(unlimited.dicom_port, model, identifier(keys))
        assert (len(found), final.Status) == (matches, 0x0000), keys
    assert "answer limit" not in unlimited.log()
    assert {ds.AccessionNumber for ds in map(dcmread, (tmp_path / "mwl-unlimited").glob("rsp*.dcm"))} == OFFERED
