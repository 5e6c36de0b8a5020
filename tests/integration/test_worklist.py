"""Modality Worklist C-FIND SCP (RAD-5, SWF.md 5 and 9 at 09:55) against the real engine process.

Orders arrive over MLLP (``swf replay``); DCMTK ``findscu -W`` and a pynetdicom SCU query the worklist;
DCMTK ``wlmscpfs`` serves the same items as a reference for the match sets.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests.conftest import EngineProcess, free_port, require_tool, run_swf, wait_for_port

SPS = "ScheduledProcedureStepSequence"
MSH = "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||OMI^O23^OMI_O23|{cid}|P|2.5.1||||||UNICODE UTF-8"
# SWF.md section 9, 08:30: the v2.5.1 OMI of MÜLLER Anna's CT chest
WORKED_EXAMPLE = "\n".join([
    MSH.format(cid="RIS0000456"),
    "PID|1||PAT4711^^^GENHOSP&2.999.1.1&ISO^MR||MÜLLER^ANNA^MARIA^^DR.||19780214|F|||HAUPTSTR. 5^^KÖLN^^50667^DEU"
    "|||||||ACCT-9001^^^GENHOSP&2.999.1.1&ISO^AN",
    "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V20250304-17^^^GENHOSP&2.999.1.1&ISO^VN",
    "AL1|1|DA|C-IOD^Iodinated contrast media^99ALLERGY|MO|Urticaria",
    "ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||||20250304082955|||2345^GREY^MEREDITH^^^DR|||||RAD^Radiology^99ORG",
    "TQ1|1||||||20250304100000|20250304103000|R^Routine^HL70078",
    "OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest with contrast^99RAD|||||||||Metformin - check eGFR|||"
    "2345^GREY^MEREDITH^^^DR||||||||CT||||||WALK|^Persistent cough|||||||||||||CTCHESTC^CT chest with contrast^99RAD",
    "NTE|1||Patient is claustrophobic",
    "OBX|1|NM|29463-7^Body weight^LN||68|kg^kilogram^UCUM|||||F",
    "IPC|ACC25030417^GENHOSP|RP-0417-1|2.25.196472841560937218203340981652004917121|SPS-0417-1|CT^CT^DCM"
    "|CTCH-P1^Chest CT with contrast, routine^99RAD|CT1|CTROOM1^CT room 1^99LOC|CT1_AE",
])
ACCESSION, STUDY = "ACC25030417", "2.25.196472841560937218203340981652004917121"


def order(cid: str, patient: str, name: str, accession: str, start: str, modality: str, station: str,
          control: str = "NW", status: str = "SC", birth: str = "19600101", sex: str = "M") -> str:
    return "\n".join([
        MSH.format(cid=cid),
        f"PID|1||{patient}^^^GENHOSP^MR||{name}||{birth}|{sex}",
        "PV1|1|O|RAD^WAIT|||||2345^GREY^MEREDITH^^^DR",
        f"ORC|{control}|P{accession}^HIS|F{accession}^RIS||{status}||||20250303120000",
        f"TQ1|1||||||{start}",
        f"OBR|1|P{accession}^HIS|F{accession}^RIS|{modality}X^{modality} exam^99RAD||||||||||||||||||||{modality}",
        f"IPC|{accession}^GENHOSP|RP-{accession}|2.25.{abs(hash(accession)) % 10**12}|SPS-{accession}"
        f"|{modality}^{modality}^DCM|{modality}-P1^{modality} routine^99RAD|{station[:3]}|ROOM^Room^99LOC|{station}",
    ])


ORDERS = [
    WORKED_EXAMPLE,
    order("W1", "PAT1001", "SMITH^JOHN", "ACC-SMITH", "20250304113000", "CT", "CT1_AE"),
    order("W2", "PAT1002", "DUBOIS^HÉLÈNE", "ACC-MR-1", "20250305073000", "MR", "MR1_AE", sex="F"),
    order("W3", "PAT1003", "NGUYEN^VAN", "ACC-CT-2", "20250305073000", "CT", "CT1_AE"),
    order("W4", "PAT1004", "MULLER^HANS", "ACC-CT-3", "20250305130000", "CT", "CT2_AE"),
    order("W5", "PAT1005", "KING^CANCELLED", "ACC-CANC", "20250304090000", "CT", "CT1_AE"),
    order("W6", "PAT1005", "KING^CANCELLED", "ACC-CANC", "20250304090000", "CT", "CT1_AE", control="CA",
          status="CA"),
]
OFFERED = {ACCESSION, "ACC-SMITH", "ACC-MR-1", "ACC-CT-2", "ACC-CT-3"}
CT1 = {ACCESSION, "ACC-SMITH", "ACC-CT-2"}


def load_orders(engine: EngineProcess, tmp_path: Path) -> None:
    sample = tmp_path / "orders.hl7"
    sample.write_bytes("\n\n".join(ORDERS).encode("utf-8") + b"\n")
    replay = run_swf("replay", str(sample), "--to", engine.address, "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"sent {len(ORDERS)}: AA {len(ORDERS)}," in replay.stdout


@pytest.fixture
def engine(start_engine, tmp_path: Path) -> EngineProcess:
    started = start_engine()
    load_orders(started, tmp_path)
    return started


# -- SCU helpers -----------------------------------------------------------------------------------------
def findscu(port: int, keys: list[str], cwd: Path, *options: str, calling: str = "CT1_AE",
            called: str = "SWF_ENGINE") -> subprocess.CompletedProcess:
    command = ["findscu", "-W", *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port)]
    for key in keys:
        command += ["-k", key]
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(command, cwd=cwd, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True,
                          text=True, timeout=30)


def findscu_files(port: int, keys: list[str], cwd: Path, **kwargs: Any) -> list[Dataset]:
    """findscu -W -X: every response identifier, read back from the rsp*.dcm files it writes."""
    found = findscu(port, keys, cwd, "-v", "-X", **kwargs)
    output = found.stdout + found.stderr
    assert found.returncode == 0 and "Received Final Find Response (Success)" in output, output
    return [dcmread(path) for path in sorted(cwd.glob("rsp*.dcm"))]


def rad5_keys(*step: str) -> list[str]:
    """SWF.md 9 at 09:55: the return keys, plus the given SPS item matching keys."""
    return ["PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID",
            *(f"{SPS}[0].{key}" for key in step), f"{SPS}[0].ScheduledProcedureStepStartTime",
            f"{SPS}[0].ScheduledProcedureStepID", f"{SPS}[0].ScheduledProcedureStepDescription"]


def c_find(port: int, identifier: Dataset, calling: str = "CT1_AE",
           max_pdu: int = 16382) -> list[tuple[Dataset, Dataset | None]]:
    """pynetdicom C-FIND: every (status, identifier) received, the final one included."""
    ae = AE(ae_title=calling)
    ae.maximum_pdu_size = max_pdu
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    try:
        return [(status, found) for status, found in assoc.send_c_find(identifier, ModalityWorklistInformationFind)]
    finally:
        assoc.release()


def statuses(responses: list[tuple[Dataset, Dataset | None]]) -> list[int]:
    return [status.Status for status, _ in responses]


def pending(responses: list[tuple[Dataset, Dataset | None]]) -> list[Dataset]:
    return [found for status, found in responses if status.Status in (0xFF00, 0xFF01)]


def item(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def rad5_identifier(**step: Any) -> Dataset:
    ds = item(PatientName="", PatientID="", AccessionNumber="", StudyInstanceUID="", RequestedProcedureID="")
    ds.ScheduledProcedureStepSequence = Sequence([item(
        **step, ScheduledProcedureStepStartTime="", ScheduledProcedureStepID="", ScheduledProcedureStepDescription="")])
    return ds


def keywords(ds: Dataset) -> set[str]:
    return {element.keyword for element in ds}


RAD5_TOP = {"PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID", SPS}
RAD5_STEP = {"ScheduledStationAETitle", "Modality", "ScheduledProcedureStepStartDate",
             "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID", "ScheduledProcedureStepDescription"}


def check_worked_example(response: Dataset) -> None:
    """Exactly the requested keys, filled with the values of SWF.md 9, and (0008,0005) ISO_IR 192."""
    assert keywords(response) == RAD5_TOP | {"SpecificCharacterSet"}
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == "MÜLLER^ANNA^MARIA^DR."
    assert (response.PatientID, response.AccessionNumber, response.StudyInstanceUID, response.RequestedProcedureID) \
        == ("PAT4711", ACCESSION, STUDY, "RP-0417-1")
    [sps] = response.ScheduledProcedureStepSequence
    assert keywords(sps) == RAD5_STEP
    assert (sps.ScheduledStationAETitle, sps.Modality, sps.ScheduledProcedureStepStartDate,
            sps.ScheduledProcedureStepStartTime, sps.ScheduledProcedureStepID,
            sps.ScheduledProcedureStepDescription) == (
        "CT1_AE", "CT", "20250304", "100000", "SPS-0417-1", "Chest CT with contrast, routine")


# -- DCMTK findscu -W ----------------------------------------------------------------------------------
def check_worked_example_query_with_findscu(engine: EngineProcess, tmp_path: Path) -> None:
    keys = rad5_keys("ScheduledStationAETitle=CT1_AE", "Modality=CT", "ScheduledProcedureStepStartDate=20250304")
    # the 09:55 query names 10:00 only because 11:30 SMITH is on the same station and day; both match
    responses = findscu_files(engine.dicom_port, keys, tmp_path / "rad5")
    by_accession = {r.AccessionNumber: r for r in responses}
    assert set(by_accession) == {ACCESSION, "ACC-SMITH"}          # the cancelled 09:00 step is not offered
    check_worked_example(by_accession[ACCESSION])
    smith = by_accession["ACC-SMITH"]                               # all ASCII: no Specific Character Set
    assert keywords(smith) == RAD5_TOP
    assert str(smith.PatientName) == "SMITH^JOHN"
    # the same with the accession as a key: one response, and -v -sr prints one Pending line
    found = findscu(engine.dicom_port, rad5_keys("Modality=CT") + [f"AccessionNumber={ACCESSION}"],
                    tmp_path / "count", "-v", "-sr")
    output = found.stdout + found.stderr
    assert found.returncode == 0 and "Received Final Find Response (Success)" in output, output
    assert len(re.findall(r"Find Response.*\(Pending\)", output)) == 1, output


def check_pn_query_with_utf8_charset_matches_case_insensitively(engine: EngineProcess, tmp_path: Path) -> None:
    keys = ["SpecificCharacterSet=ISO_IR 192", "PatientName=müller*", "PatientID", "AccessionNumber"]
    responses = findscu_files(engine.dicom_port, keys, tmp_path / "utf8")
    names = {r.AccessionNumber: str(r.PatientName) for r in responses}
    assert names == {ACCESSION: "MÜLLER^ANNA^MARIA^DR.", "ACC-CT-3": "MULLER^HANS"}
    assert {r.get("SpecificCharacterSet") for r in responses} == {"ISO_IR 192", None}
    # without (0008,0005) the key cannot carry the u-umlaut: '?' stands for it
    responses = findscu_files(engine.dicom_port, ["PatientName=M?LLER^ANNA*", "AccessionNumber"], tmp_path / "ascii")
    assert [r.AccessionNumber for r in responses] == [ACCESSION]


def check_combined_date_time_range_with_findscu(engine: EngineProcess, tmp_path: Path) -> None:
    """SWF.md 5.3 row 2: 03-04 08:00 .. 03-05 12:00 on CT1_AE includes 03-05 07:30 (combined matching)."""
    keys = ["AccessionNumber", f"{SPS}[0].ScheduledStationAETitle=CT1_AE",
            f"{SPS}[0].ScheduledProcedureStepStartDate=20250304-20250305",
            f"{SPS}[0].ScheduledProcedureStepStartTime=0800-1200"]
    assert {r.AccessionNumber for r in findscu_files(engine.dicom_port, keys, tmp_path / "combined")} == CT1
    keys[-1] = f"{SPS}[0].ScheduledProcedureStepStartTime=1100-0730"   # 03-04 11:00 .. 03-05 07:30:59
    assert {r.AccessionNumber for r in findscu_files(engine.dicom_port, keys, tmp_path / "overnight")} == {
        "ACC-SMITH", "ACC-CT-2"}


# -- pynetdicom as SCU -------------------------------------------------------------------------------
def check_worked_example_query_with_pynetdicom(engine: EngineProcess) -> None:
    responses = c_find(engine.dicom_port, rad5_identifier(
        ScheduledStationAETitle="CT1_AE", Modality="CT", ScheduledProcedureStepStartDate="20250304"))
    assert statuses(responses) == [0xFF00, 0xFF00, 0x0000]
    first, second = pending(responses)
    check_worked_example(first)                                   # ordered by start: 10:00 then 11:30
    assert second.AccessionNumber == "ACC-SMITH" and "SpecificCharacterSet" not in second
    # the second query of 09:55: ISO_IR 192 in the request and a lower-case PN key
    query = item(SpecificCharacterSet="ISO_IR 192", PatientName="müller^anna*", AccessionNumber="")
    responses = c_find(engine.dicom_port, query)
    assert statuses(responses) == [0xFF00, 0x0000]
    [found] = pending(responses)
    assert keywords(found) == {"SpecificCharacterSet", "PatientName", "AccessionNumber"}
    assert (str(found.PatientName), found.AccessionNumber) == ("MÜLLER^ANNA^MARIA^DR.", ACCESSION)


def check_identifier_problems_are_a900_with_an_error_comment(engine: EngineProcess) -> None:
    two_items = rad5_identifier(Modality="CT")
    two_items.ScheduledProcedureStepSequence.append(item(Modality="MR"))
    [(status, found)] = c_find(engine.dicom_port, two_items)
    assert status.Status == 0xA900 and found is None
    assert "Scheduled" in status.ErrorComment and "2 items" in status.ErrorComment

    [(status, _)] = c_find(engine.dicom_port, rad5_identifier(ScheduledProcedureStepStartDate="2025-03-04"))
    assert status.Status == 0xA900
    assert "ScheduledProcedureStepStartDate" in status.ErrorComment and "2025-03-04" in status.ErrorComment

    [(status, _)] = c_find(engine.dicom_port, item(PatientBirthDate="19780230", PatientName=""))
    assert status.Status == 0xA900 and "PatientBirthDate" in status.ErrorComment


def check_unsupported_key_gives_ff01_and_is_returned(engine: EngineProcess) -> None:
    query = item(AccessionNumber=ACCESSION, PatientWeight="68", PatientName="")
    responses = c_find(engine.dicom_port, query)
    assert statuses(responses) == [0xFF01, 0x0000]
    [found] = pending(responses)
    assert keywords(found) == {"SpecificCharacterSet", "AccessionNumber", "PatientWeight", "PatientName"}
    assert float(found.PatientWeight) == 68.0                        # not matched, but returned with its value
    # the same key empty is a plain return key: 0xFF00
    query.PatientWeight = None
    assert statuses(c_find(engine.dicom_port, query)) == [0xFF00, 0x0000]


def check_sequence_universal_matching_returns_the_whole_stored_item(engine: EngineProcess) -> None:
    query = item(AccessionNumber=ACCESSION)
    query.ScheduledProcedureStepSequence = Sequence([Dataset()])      # one empty item
    query.RequestedProcedureCodeSequence = Sequence([])               # zero-length
    [found] = pending(c_find(engine.dicom_port, query))
    assert keywords(found) == {"AccessionNumber", SPS, "RequestedProcedureCodeSequence"}   # ASCII only
    [sps] = found.ScheduledProcedureStepSequence
    assert {(e.keyword, str(e.value)) for e in sps if e.VR != "SQ"} >= {
        ("ScheduledStationAETitle", "CT1_AE"), ("ScheduledStationName", "CT1"),
        ("ScheduledProcedureStepLocation", "CTROOM1"), ("Modality", "CT"),
        ("ScheduledProcedureStepStartDate", "20250304"), ("ScheduledProcedureStepStartTime", "100000"),
        ("ScheduledProcedureStepID", "SPS-0417-1"), ("ScheduledProcedureStepStatus", "SCHEDULED"),
        ("ScheduledProcedureStepDescription", "Chest CT with contrast, routine")}
    [protocol] = sps.ScheduledProtocolCodeSequence
    assert (protocol.CodeValue, protocol.CodingSchemeDesignator) == ("CTCH-P1", "99RAD")
    [code] = found.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "CTCHESTC", "99RAD", "CT chest with contrast")


def check_responses_larger_than_the_scus_pdu_arrive_whole(engine: EngineProcess) -> None:
    """The engine packs each pending response itself (pending_responses.py): one bigger than the SCU's
    maximum PDU length must be split into fragments the SCU reassembles."""
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.AccessionNumber = ""
    identifier.ScheduledProcedureStepSequence = Sequence([Dataset()])   # universal: the whole stored item
    identifier.RequestedProcedureCodeSequence = Sequence([])
    roomy = c_find(engine.dicom_port, identifier)
    narrow = c_find(engine.dicom_port, identifier, max_pdu=128)
    assert statuses(narrow) == statuses(roomy) == [0xFF00] * len(OFFERED) + [0x0000]
    assert sorted(found.AccessionNumber for found in pending(narrow)) == sorted(OFFERED)
    assert [found.to_json() for found in pending(narrow)] == [found.to_json() for found in pending(roomy)]
    assert len(pending(narrow)[0].ScheduledProcedureStepSequence[0]) >= 8


def check_cancelled_steps_are_offered_only_when_the_status_is_asked_for(engine: EngineProcess) -> None:
    query = item(AccessionNumber="ACC-CANC")
    assert statuses(c_find(engine.dicom_port, query)) == [0x0000]
    query.ScheduledProcedureStepSequence = Sequence([item(ScheduledProcedureStepStatus="CANCELED")])
    [found] = pending(c_find(engine.dicom_port, query))
    assert found.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "CANCELED"


# Each engine start costs ~3 s, so one engine serves several checks (each check_* above is one behaviour).
def test_findscu_worked_example_utf8_pn_and_combined_date_time(engine: EngineProcess, tmp_path: Path) -> None:
    check_worked_example_query_with_findscu(engine, tmp_path)
    check_pn_query_with_utf8_charset_matches_case_insensitively(engine, tmp_path)
    check_combined_date_time_range_with_findscu(engine, tmp_path)


def test_pynetdicom_worked_example_sequences_and_hidden_statuses(engine: EngineProcess) -> None:
    check_worked_example_query_with_pynetdicom(engine)
    check_sequence_universal_matching_returns_the_whole_stored_item(engine)
    check_responses_larger_than_the_scus_pdu_arrive_whole(engine)
    check_cancelled_steps_are_offered_only_when_the_status_is_asked_for(engine)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")   # the SCU side warns about the bad date we send
def test_pynetdicom_warning_and_failure_statuses(engine: EngineProcess) -> None:
    check_unsupported_key_gives_ff01_and_is_returned(engine)
    check_identifier_problems_are_a900_with_an_error_comment(engine)


# -- who may ask, and what they see -----------------------------------------------------------------------
def test_calling_ae_must_be_known_and_sees_only_its_stations(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("dicom:\n  aes:\n    KNOWN: {}\n    CT1_AE:\n      stations: [CT1_AE]\n")
    engine = start_engine("--config", str(config), allow_any_ae=False)
    load_orders(engine, tmp_path)

    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert assoc.is_rejected and not assoc.is_established
    found = findscu(engine.dicom_port, ["AccessionNumber"], tmp_path / "stranger", calling="STRANGER")
    assert found.returncode != 0 and "Association Rejected" in found.stdout + found.stderr

    universal = item(AccessionNumber="")
    universal.ScheduledProcedureStepSequence = Sequence([item(ScheduledStationAETitle="*")])
    assert {r.AccessionNumber for r in pending(c_find(engine.dicom_port, universal, "KNOWN"))} == OFFERED
    assert {r.AccessionNumber for r in pending(c_find(engine.dicom_port, universal, "CT1_AE"))} == CT1
    mr_only = item(AccessionNumber="")
    mr_only.ScheduledProcedureStepSequence = Sequence([item(ScheduledStationAETitle="MR1_AE")])
    assert statuses(c_find(engine.dicom_port, mr_only, "CT1_AE")) == [0x0000]
    responses = findscu_files(engine.dicom_port, ["AccessionNumber", f"{SPS}[0].ScheduledStationAETitle"],
                              tmp_path / "ct1", calling="CT1_AE")
    assert {r.AccessionNumber for r in responses} == CT1


# -- DCMTK wlmscpfs as a reference ------------------------------------------------------------------------
REFERENCE_QUERIES = [
    {f"{SPS}.ScheduledStationAETitle": "CT1_AE"},
    # (wlmscpfs 3.6.7 does no wildcard matching on ScheduledStationAETitle, so no such query here)
    {f"{SPS}.Modality": "MR"},
    {f"{SPS}.ScheduledProcedureStepStartDate": "20250305"},
    {f"{SPS}.ScheduledProcedureStepStartDate": "-20250304"},
    {f"{SPS}.ScheduledStationAETitle": "CT1_AE", f"{SPS}.ScheduledProcedureStepStartDate": "20250304"},
    {"AccessionNumber": "ACC-*"},
    {"AccessionNumber": "ACC-??-?"},
    {"PatientID": "PAT1003"},
    {"PatientName": "N*"},
    {"PatientName": "MULLER^HANS"},
    {"PatientName": "*^JOHN"},
    {"PatientSex": "F"},
    # (nor on StudyInstanceUID: it treats it as a return key only)
]


def reference_identifier(keys: dict[str, str]) -> Dataset:
    ds = item(AccessionNumber="", PatientName="", PatientID="", PatientSex="", StudyInstanceUID="")
    step = item(ScheduledStationAETitle="", Modality="", ScheduledProcedureStepStartDate="",
                ScheduledProcedureStepStartTime="")
    for key, value in keys.items():
        target, keyword = (step, key.split(".")[1]) if key.startswith(SPS) else (ds, key)
        setattr(target, keyword, value)
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


@pytest.fixture
def wlmscpfs() -> str:
    found = shutil.which("wlmscpfs")
    require_tool(found, "DCMTK wlmscpfs (Debian package 'dcmtk')")
    return str(found)


def test_match_sets_agree_with_dcmtk_wlmscpfs(wlmscpfs: str, engine: EngineProcess, tmp_path: Path) -> None:
    # every offered item, as the engine serves it, becomes a .wl file for wlmscpfs
    everything = item(PatientName="", PatientID="", PatientBirthDate="", PatientSex="", AccessionNumber="",
                      StudyInstanceUID="", RequestedProcedureID="", RequestedProcedureDescription="")
    everything.ScheduledProcedureStepSequence = Sequence([Dataset()])
    items = pending(c_find(engine.dicom_port, everything))
    assert {i.AccessionNumber for i in items} == OFFERED
    folder = tmp_path / "wlm" / "REFWLM"
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    for number, found in enumerate(items, 1):
        found.file_meta = FileMetaDataset()
        found.file_meta.MediaStorageSOPClassUID = ModalityWorklistInformationFind
        found.file_meta.MediaStorageSOPInstanceUID = f"2.25.{number}"
        found.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        found.save_as(folder / f"item{number}.wl", enforce_file_format=True)
    port = free_port()
    reference = subprocess.Popen([wlmscpfs, "-s", "-dfr", "-dfp", str(tmp_path / "wlm"), str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "TCP_NODELAY": "1"})
    try:
        wait_for_port(port, reference)
        for keys in REFERENCE_QUERIES:
            query = reference_identifier(keys)
            ours = {r.AccessionNumber for r in pending(c_find(engine.dicom_port, query))}
            theirs = {r.AccessionNumber for r in pending(_c_find_at(port, "REFWLM", query))}
            assert ours == theirs, keys
            assert ours, keys   # every reference query matches something
    finally:
        reference.terminate()
        reference.wait(10)


def _c_find_at(port: int, called: str, identifier: Dataset) -> list[tuple[Dataset, Dataset | None]]:
    ae = AE(ae_title="CT1_AE")
    ae.add_requested_context(ModalityWorklistInformationFind)
    for _attempt in range(50):   # wlmscpfs in single-process mode takes one association at a time
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if assoc.is_established:
            break
        time.sleep(0.1)
    assert assoc.is_established
    try:
        return [(status, found) for status, found in assoc.send_c_find(identifier, ModalityWorklistInformationFind)]
    finally:
        assoc.release()
