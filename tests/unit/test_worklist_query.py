"""Modality Worklist matching (SWF.md section 5) on a real SQLite store.

Orders go in as HL7 OMI^O23 messages through the real ingest pipeline (so the matching columns are
filled exactly as in production); queries run through ``engine.workflow.worklist.find_items``.  The
last part checks the C-FIND handler's request parsing and response building without a network.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from engine.dicom.ae import DicomContext
from engine.dicom.directory import AEDirectory
from engine.dicom.services.worklist import (BadIdentifier, WorklistService, build_response,
                                            request_from_identifier)
from engine.store.matching import QueryError
from engine.store.worklist_query import build_worklist_query
from engine.workflow.ingest import Received
from engine.workflow.worklist import WorklistItem, WorklistRequest, find_items
from tests.conftest import Pipeline, hl7

_ids = itertools.count(1)


def omi(*, control: str = "NW", status: str = "SC", patient: str = "PAT1", issuer: str = "GENHOSP",
        name: str = "DOE^JOHN", birth: str = "19700101", sex: str = "M", referring: str = "2345^GREY^MEREDITH^^^DR",
        admission: str = "V1", placer: str = "", accession: str = "ACC1", study: str = "",
        sps: str = "", start: str = "20250304100000", modality: str = "CT", station: str = "CT1_AE",
        station_name: str = "CT1", location: str = "CTROOM1", performing: str = "", priority: str = "R",
        code: str = "CTCHEST^CT chest^99RAD", requesting: str = "2345^GREY^MEREDITH^^^DR") -> bytes:
    """One OMI^O23 order (v2.5.1, UTF-8) with one requested procedure and one step."""
    cid = f"W{next(_ids):06d}"
    placer = placer or f"P-{accession}"
    study = study or f"1.2.826.0.1.{abs(hash(accession)) % 10**8}"
    obr = [""] * 35
    obr[:5] = ["OBR", "1", f"{placer}^HIS", f"F{placer}^RIS", code]
    obr[16], obr[24], obr[34] = requesting, modality, performing
    return hl7(
        f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250303120000||OMI^O23^OMI_O23|{cid}|P|2.5.1||||||UNICODE UTF-8",
        f"PID|1||{patient}^^^{issuer}^MR||{name}||{birth}|{sex}",
        f"PV1|1|O|RAD^WAIT|||||{referring}|||||||||||{admission}",
        f"ORC|{control}|{placer}^HIS|F{placer}^RIS||{status}||||20250303120000",
        f"TQ1|1||||||{start}||{priority}",
        "|".join(obr).rstrip("|"),
        f"IPC|{accession}^GENHOSP|RP-{accession}|{study}|{sps or 'SPS-' + accession}|{modality}^{modality}^DCM"
        f"|PROT-{modality}^Protocol {modality}^99RAD|{station_name}|{location}^Room^99LOC|{station}")


def send_all(pipeline: Pipeline, *orders: dict[str, str]) -> None:
    """Several orders, applied in this order through the pipeline's ingestor but queued together, so the
    store commits them in one batch (one disk flush instead of one per message: the tests stay fast)."""
    futures = [pipeline.store.submit(lambda txn, raw=omi(**fields): pipeline.ingestor(txn, Received(raw, "test")))
               for fields in orders]
    for future in futures:
        result = future.result(60)
        assert result.ack_code == "AA", result.reason


def find(pipeline: Pipeline, top: dict | None = None, step: dict | None = None, code: dict | None = None,
         stations: tuple[str, ...] = ()) -> list[WorklistItem]:
    request = WorklistRequest(top=top or {}, step=step or {}, code=code or {}, station_restriction=stations)
    return pipeline.store.read(lambda txn: find_items(txn, request))


def accessions(pipeline: Pipeline, top: dict | None = None, step: dict | None = None, code: dict | None = None,
               stations: tuple[str, ...] = ()) -> set[str]:
    return {item.accession_number for item in find(pipeline, top, step, code, stations)}


# -- SWF.md 5.3: combined date-time matching -----------------------------------------------------------
@pytest.fixture
def two_steps(pipeline: Pipeline) -> Pipeline:
    """The two stored SPS of the SWF.md 5.3 example: 2025-03-04 10:00 and 2025-03-05 07:30."""
    send_all(pipeline, dict(accession="D0304", start="20250304100000"),
             dict(accession="D0305", start="20250305073000", patient="PAT2", name="ROE^JANE"))
    return pipeline


@pytest.mark.parametrize("date_key, time_key, expected", [
    # the five rows of the SWF.md 5.3 table
    ("20250304", "", {"D0304"}),
    ("20250304-20250305", "0800-1200", {"D0304", "D0305"}),   # combined: 03-04 08:00 .. 03-05 12:00:59
    ("20250305", "-0800", {"D0305"}),
    ("-20250304", "", {"D0304"}),
    ("", "0900-1100", {"D0304"}),
    # more of the same rules
    ("20250305", "", {"D0305"}),
    ("20250304-", "", {"D0304", "D0305"}),
    ("20250305-", "0700-", {"D0305"}),
    ("20250304-20250305", "1200-0700", set()),                # 03-04 12:00 .. 03-05 07:00:59: neither ...
    ("20250304-20250305", "0900-0730", {"D0304", "D0305"}),   # ... 03-04 09:00 .. 03-05 07:30:59: both
    ("20250304", "1000", {"D0304"}),                          # 10:00:00 .. 10:00:59.999999
    ("20250304", "1001", set()),
    ("20250304", "10", {"D0304"}),                            # hour precision: 10:00 .. 10:59:59
    ("20250304", "0959", set()),
    ("", "0730", {"D0305"}),                                  # time of day only, any date
    ("", "-0730", {"D0305"}),
    ("", "1000-", {"D0304"}),
    ("", "073000.5-", {"D0304"}),
    ("20250303", "", set()),
    ("20250306-", "", set()),
    ("", "", {"D0304", "D0305"}),
])
def test_start_date_and_time_are_matched_as_one_date_time(two_steps: Pipeline, date_key: str, time_key: str,
                                                         expected: set[str]) -> None:
    step = {"ScheduledProcedureStepStartDate": date_key, "ScheduledProcedureStepStartTime": time_key}
    assert accessions(two_steps, step=step) == expected


def test_row_two_is_combined_not_independent(two_steps: Pipeline) -> None:
    """Independent matching (date range AND daily window) would drop 03-05 07:30; combined keeps it."""
    step = {"ScheduledProcedureStepStartDate": "20250304-20250305", "ScheduledProcedureStepStartTime": "0800-1200"}
    assert "D0305" in accessions(two_steps, step=step)
    # the daily window alone does exclude 07:30, so the row above really tests the combination
    assert accessions(two_steps, step={"ScheduledProcedureStepStartTime": "0800-1200"}) == {"D0304"}


@pytest.mark.parametrize("date_key, time_key, expected", [
    ("20250304-20250305", "0800-1200", {"E1", "E2"}),   # the upper bound 1200 runs to 12:00:59.999999
    ("20250304", "1000", {"E1"}),
    ("20250304", "1000-1000", {"E1"}),
    ("20250304", "10", {"E1"}),
    ("20250304", "100030", {"E1"}),
    ("20250304", "100031-", set()),
    ("20250304", "-100029.999999", set()),
    ("", "1000", {"E1"}),
    ("", "-1200", {"E1", "E2"}),
    ("", "120045", {"E2"}),
    ("", "1201", {"E3"}),
    ("20250305", "12", {"E2", "E3"}),
])
def test_partial_times_cover_their_whole_precision(pipeline: Pipeline, date_key: str, time_key: str,
                                                   expected: set[str]) -> None:
    send_all(pipeline, dict(accession="E1", start="20250304100030"), dict(accession="E2", start="20250305120045"),
             dict(accession="E3", start="20250305120100"))
    step = {"ScheduledProcedureStepStartDate": date_key, "ScheduledProcedureStepStartTime": time_key}
    assert accessions(pipeline, step=step) == expected


@pytest.mark.parametrize("keyword, value", [
    ("ScheduledProcedureStepStartDate", "2025-03-04"),
    ("ScheduledProcedureStepStartDate", "20250230"),
    ("ScheduledProcedureStepStartDate", "2025034"),
    ("ScheduledProcedureStepStartDate", "2025030A"),
    ("ScheduledProcedureStepStartDate", "20250304-20251301"),
    ("ScheduledProcedureStepStartDate", "-"),
    ("ScheduledProcedureStepStartDate", "20250304-20250305-20250306"),
    ("ScheduledProcedureStepStartTime", "2500"),
    ("ScheduledProcedureStepStartTime", "10:00"),
    ("ScheduledProcedureStepStartTime", "1060"),
    ("ScheduledProcedureStepStartTime", "0800-12xx"),
])
def test_malformed_start_keys_are_query_errors_naming_the_key(two_steps: Pipeline, keyword: str, value: str) -> None:
    with pytest.raises(QueryError, match=keyword):
        find(two_steps, step={keyword: value})


@pytest.mark.parametrize("value", ["1.2.3.*", "1.2.\xe9", "1..2", "1" * 65, "..", "1.2\\/abs"])
def test_a_uid_key_that_is_no_uid_is_a_query_error(two_steps: Pipeline, value: str) -> None:
    with pytest.raises(QueryError, match="StudyInstanceUID"):   # no wildcards for UI either
        find(two_steps, top={"StudyInstanceUID": value})


def test_unused_bound_of_a_combined_key_is_still_validated(two_steps: Pipeline) -> None:
    # the upper time bound is not needed with an open-ended date range, but a bad value is still an error
    with pytest.raises(QueryError, match="ScheduledProcedureStepStartTime"):
        find(two_steps, step={"ScheduledProcedureStepStartDate": "20250304-",
                              "ScheduledProcedureStepStartTime": "0800-2599"})


@pytest.mark.parametrize("value", ["1978-02-14", "19780230", "197802", "19780214-19790230"])
def test_malformed_birth_date_is_a_query_error(two_steps: Pipeline, value: str) -> None:
    with pytest.raises(QueryError, match="PatientBirthDate"):
        find(two_steps, top={"PatientBirthDate": value})


# -- a richer worklist for the other matching kinds ------------------------------------------------------
@pytest.fixture
def worklist(pipeline: Pipeline) -> Pipeline:
    send_all(
        pipeline,
        dict(accession="ACC1", patient="PAT1", name="MÜLLER^ANNA^MARIA^^DR.", birth="19780214", sex="F",
             study="1.2.3.1", performing="77^HOUSE^GREGORY", start="20250304100000"),
        dict(accession="AB_1", patient="PAT2", name="Ødegård^Kari", birth="19920714", sex="F", study="1.2.3.2",
             station="CT1XAE", station_name="CT1X", start="20250304110000", priority="S"),
        dict(accession="ABX1", patient="PAT3", name="SMITH^JOHN", birth="19500101", sex="M", study="1.2.3.3",
             modality="MR", station="MR1_AE", station_name="MR1", location="MRROOM1", start="20250304120000",
             code="MRBRAIN^MR brain^99RAD", referring="9^HOUSE^ALLISON", admission="V3", issuer="OTHER"),
        # empty stored values: no birth date, sex, referring physician, station name; NM has no routing rule
        dict(accession="AB%2", patient="PAT4", name="MULLER^HANS", birth="", sex="", referring="",
             requesting="", admission="", study="1.2.3.4", modality="NM", station="", station_name="", location="",
             start="20250305090000", code="NMBONE^NM bone^99RAD"))
    return pipeline


ALL = {"ACC1", "AB_1", "ABX1", "AB%2"}


@pytest.mark.parametrize("top, step, expected", [
    # universal matching: empty keys and '*' match everything, empty stored values included
    ({"PatientName": "", "PatientID": "", "AccessionNumber": ""}, {"ScheduledStationAETitle": "", "Modality": ""}, ALL),
    ({"PatientName": "*", "AccessionNumber": "*"}, {"ScheduledStationAETitle": "*", "ScheduledStationName": "*"}, ALL),
    ({"ReferringPhysicianName": "*", "PatientSex": "*"}, {}, ALL),
    # single value: exact, case-sensitive for everything but PN, spaces at either end not significant
    ({"AccessionNumber": "ACC1"}, {}, {"ACC1"}),
    ({"AccessionNumber": " ACC1 "}, {}, {"ACC1"}),
    ({"AccessionNumber": "acc1"}, {}, set()),
    ({}, {"Modality": "CT"}, {"ACC1", "AB_1"}),
    ({}, {"Modality": "ct"}, set()),
    ({"PatientID": "PAT3"}, {}, {"ABX1"}),
    ({"PatientID": "PAT3", "IssuerOfPatientID": "GENHOSP"}, {}, set()),
    ({"IssuerOfPatientID": "OTHER"}, {}, {"ABX1"}),
    ({"RequestedProcedureID": "RP-ABX1"}, {}, {"ABX1"}),
    ({"PlacerOrderNumberImagingServiceRequest": "P-ACC1"}, {}, {"ACC1"}),
    ({"FillerOrderNumberImagingServiceRequest": "FP-AB_1"}, {}, {"AB_1"}),
    ({"AdmissionID": "V3"}, {}, {"ABX1"}),
    ({"RequestedProcedurePriority": "STAT"}, {}, {"AB_1"}),
    ({"PatientSex": "F"}, {}, {"ACC1", "AB_1"}),
    ({}, {"ScheduledProcedureStepID": "SPS-ABX1"}, {"ABX1"}),
    ({}, {"ScheduledStationName": "MR1"}, {"ABX1"}),
    ({}, {"ScheduledProcedureStepLocation": "MRROOM1"}, {"ABX1"}),
    # wildcards; '_' and '%' in stored data are literal characters, not SQL wildcards
    ({}, {"ScheduledStationAETitle": "CT1_AE"}, {"ACC1"}),
    ({}, {"ScheduledStationAETitle": "CT1_*"}, {"ACC1"}),
    ({}, {"ScheduledStationAETitle": "CT1?AE"}, {"ACC1", "AB_1"}),
    ({}, {"ScheduledStationAETitle": "*AE"}, {"ACC1", "AB_1", "ABX1"}),
    ({"AccessionNumber": "AB_*"}, {}, {"AB_1"}),
    ({"AccessionNumber": "AB_1"}, {}, {"AB_1"}),
    ({"AccessionNumber": "AB%*"}, {}, {"AB%2"}),
    ({"AccessionNumber": "AB%2"}, {}, {"AB%2"}),
    ({"AccessionNumber": "AB?1"}, {}, {"AB_1", "ABX1"}),
    ({"AccessionNumber": "AB?"}, {}, set()),
    ({"AccessionNumber": "A*1"}, {}, {"ACC1", "AB_1", "ABX1"}),
    ({"AccessionNumber": "a*"}, {}, set()),
    ({}, {"ScheduledProcedureStepID": "SPS-AB*"}, {"AB_1", "ABX1", "AB%2"}),
    # empty stored values never match a non-empty key other than '*'
    ({}, {"ScheduledStationName": "?*"}, {"ACC1", "AB_1", "ABX1"}),
    ({}, {"ScheduledStationAETitle": "?*"}, {"ACC1", "AB_1", "ABX1"}),
    ({"PatientBirthDate": "-20300101"}, {}, {"ACC1", "AB_1", "ABX1"}),
    ({"PatientBirthDate": "19000101-"}, {}, {"ACC1", "AB_1", "ABX1"}),
    ({"PatientSex": "?"}, {}, {"ACC1", "AB_1", "ABX1"}),
    ({"ReferringPhysicianName": "?*"}, {}, {"ACC1", "AB_1", "ABX1"}),
    ({"RequestingPhysician": "G*"}, {}, {"ACC1", "AB_1", "ABX1"}),
    ({"AdmissionID": "V*"}, {}, {"ACC1", "AB_1", "ABX1"}),
    # date single value and ranges
    ({"PatientBirthDate": "19780214"}, {}, {"ACC1"}),
    ({"PatientBirthDate": "19700101-19801231"}, {}, {"ACC1"}),
    ({"PatientBirthDate": "-19600101"}, {}, {"ABX1"}),
    # list of UIDs (and a single UID)
    ({"StudyInstanceUID": "1.2.3.2"}, {}, {"AB_1"}),
    ({"StudyInstanceUID": "1.2.3.1\\1.2.3.3\\9.9.9"}, {}, {"ACC1", "ABX1"}),
    # PN: case-insensitive, accent-insensitive, trailing empty components ignored
    ({"PatientName": "müller*"}, {}, {"ACC1", "AB%2"}),
    ({"PatientName": "MULLER*"}, {}, {"ACC1", "AB%2"}),
    ({"PatientName": "Müller^Anna*"}, {}, {"ACC1"}),
    ({"PatientName": "müller^anna^maria^dr."}, {}, {"ACC1"}),
    ({"PatientName": "MULLER^ANNA"}, {}, set()),          # single value: the whole name
    ({"PatientName": "muller^hans^^^"}, {}, {"AB%2"}),
    ({"PatientName": "ODEGARD^KARI"}, {}, {"AB_1"}),
    ({"PatientName": "ødegård*"}, {}, {"AB_1"}),
    ({"PatientName": "M?LLER*"}, {}, {"ACC1", "AB%2"}),
    ({"PatientName": "smith^john"}, {}, {"ABX1"}),
    ({"PatientName": "*^JOHN"}, {}, {"ABX1"}),
    ({"PatientName": "SMITH"}, {}, set()),
    ({"ReferringPhysicianName": "house^allison"}, {}, {"ABX1"}),
    ({"ReferringPhysicianName": "GREY*"}, {}, {"ACC1", "AB_1"}),
    ({}, {"ScheduledPerformingPhysicianName": "house*"}, {"ACC1"}),
    # several keys are ANDed, top level with SPS item
    ({"PatientName": "M*"}, {"Modality": "CT"}, {"ACC1"}),
    ({"PatientSex": "F"}, {"ScheduledStationAETitle": "MR1_AE"}, set()),
])
def test_matching(worklist: Pipeline, top: dict, step: dict, expected: set[str]) -> None:
    assert accessions(worklist, top, step) == expected


def test_requested_procedure_code_sequence_matching(worklist: Pipeline) -> None:
    assert accessions(worklist, code={"CodeValue": "MRBRAIN", "CodingSchemeDesignator": "99RAD"}) == {"ABX1"}
    assert accessions(worklist, code={"CodeValue": "MRBRAIN", "CodingSchemeDesignator": "DCM"}) == set()
    assert accessions(worklist, code={"CodeValue": "", "CodingSchemeDesignator": ""}) == ALL
    assert accessions(worklist, code={"CodeValue": "CT*"}) == {"ACC1", "AB_1"}


def test_station_restriction_limits_every_query(worklist: Pipeline) -> None:
    assert accessions(worklist, stations=("CT1_AE",)) == {"ACC1"}
    both = accessions(worklist, step={"ScheduledStationAETitle": "*"}, stations=("CT1_AE", "MR1_AE"))
    assert both == {"ACC1", "ABX1"}
    assert accessions(worklist, step={"ScheduledStationAETitle": "MR1_AE"}, stations=("CT1_AE",)) == set()
    assert accessions(worklist, top={"PatientName": "SMITH*"}, stations=("CT1_AE",)) == set()
    assert accessions(worklist) == ALL  # no restriction


def test_items_are_flat_and_carry_the_stored_values(worklist: Pipeline) -> None:
    [item] = find(worklist, top={"AccessionNumber": "ACC1"})
    assert item.attributes["PatientName"] == "MÜLLER^ANNA^MARIA^DR."
    assert (item.attributes["PatientID"], item.attributes["IssuerOfPatientID"]) == ("PAT1", "GENHOSP")
    assert item.attributes["StudyInstanceUID"] == "1.2.3.1"
    assert item.attributes["RequestedProcedureID"] == "RP-ACC1"
    assert item.attributes["RequestedProcedureCodeSequence"][0]["CodeValue"] == "CTCHEST"
    assert item.step["ScheduledStationAETitle"] == "CT1_AE"
    assert (item.step["ScheduledProcedureStepStartDate"], item.step["ScheduledProcedureStepStartTime"]) == (
        "20250304", "100000")
    assert item.step["ScheduledProcedureStepStatus"] == "SCHEDULED"
    assert item.step["ScheduledPerformingPhysicianName"] == "HOUSE^GREGORY"
    [empty] = find(worklist, top={"AccessionNumber": "AB%2"})
    assert "ScheduledStationAETitle" not in empty.step and "ScheduledStationName" not in empty.step


def test_items_come_ordered_by_start(pipeline: Pipeline) -> None:
    starts = (("NOON", "20250304120000"), ("NEXT", "20250305070000"), ("EARLY", "20250304080000"),
              ("TEN", "20250304100000"))
    send_all(pipeline, *(dict(accession=accession, start=start, patient=f"P-{accession}") for accession, start in
                         starts))
    assert [i.accession_number for i in find(pipeline)] == ["EARLY", "TEN", "NOON", "NEXT"]
    assert [i.accession_number for i in find(pipeline, top={"PatientID": "P-*"})] == ["EARLY", "TEN", "NOON", "NEXT"]


# -- SWF.md 5.6: which statuses are offered ------------------------------------------------------------
@pytest.fixture
def statuses(pipeline: Pipeline) -> Pipeline:
    send_all(pipeline,
             dict(accession="S-SCHED"),
             dict(accession="S-START", status="IP"),                     # NW/IP: created STARTED
             dict(accession="S-DONE"),
             dict(accession="S-DONE", control="XO", status="CM"),        # -> COMPLETED
             dict(accession="S-CANC"),
             dict(accession="S-CANC", control="CA", status="CA"))        # -> CANCELED
    rows = pipeline.read("SELECT r.accession_number, s.status FROM scheduled_steps s"
                         " JOIN requested_procedures r ON r.id = s.requested_procedure_ref")
    assert {r["accession_number"]: r["status"] for r in rows} == {
        "S-SCHED": "SCHEDULED", "S-START": "STARTED", "S-DONE": "COMPLETED", "S-CANC": "CANCELED"}
    return pipeline


@pytest.mark.parametrize("status_key, expected", [
    (None, {"S-SCHED"}),
    ("", {"S-SCHED"}),
    ("SCHEDULED", {"S-SCHED"}),
    ("CANCELED", {"S-CANC"}),
    ("STARTED", {"S-START"}),
    ("COMPLETED", {"S-DONE"}),
    ("SCHEDULED\\STARTED", {"S-SCHED", "S-START"}),
    ("*", {"S-SCHED", "S-START", "S-DONE", "S-CANC"}),
    ("S*", {"S-SCHED", "S-START"}),
])
def test_only_open_steps_are_offered_unless_the_status_is_asked_for(statuses: Pipeline, status_key: str | None,
                                                                    expected: set[str]) -> None:
    step = {} if status_key is None else {"ScheduledProcedureStepStatus": status_key}
    assert accessions(statuses, step=step) == expected
    assert accessions(statuses, top={"AccessionNumber": "S-DONE"}, step=step) == expected & {"S-DONE"}


# -- the SQL itself ------------------------------------------------------------------------------------
def test_query_is_parameterised_and_escapes_like() -> None:
    query = build_worklist_query({"AccessionNumber": "A_%'*"}, {"ScheduledStationAETitle": "CT1_AE"})
    assert "A_%'" not in query.sql and "CT1_AE" not in query.sql
    assert "A\\_\\%'%" in query.params and "CT1_AE" in query.params


# -- the C-FIND handler: request identifier in, response identifier out ----------------------------------
def sps_item(**keys: str) -> Dataset:
    item = Dataset()
    for keyword, value in keys.items():
        setattr(item, keyword, value)
    return item


def rad5_identifier() -> Dataset:
    """The 09:55 RAD-5 request of SWF.md section 9."""
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.ScheduledProcedureStepSequence = Sequence([sps_item(
        ScheduledStationAETitle="CT1_AE", Modality="CT", ScheduledProcedureStepStartDate="20250304",
        ScheduledProcedureStepStartTime="", ScheduledProcedureStepID="", ScheduledProcedureStepDescription="")])
    return ds


def test_request_keys_go_to_their_level() -> None:
    request, unsupported = request_from_identifier(rad5_identifier())
    assert not unsupported
    assert request.top == {"PatientName": "", "PatientID": "", "AccessionNumber": "", "StudyInstanceUID": "",
                           "RequestedProcedureID": ""}
    assert request.step == {"ScheduledStationAETitle": "CT1_AE", "Modality": "CT",
                            "ScheduledProcedureStepStartDate": "20250304", "ScheduledProcedureStepStartTime": "",
                            "ScheduledProcedureStepID": ""}


@pytest.mark.parametrize("change", [
    lambda ds: setattr(ds, "PatientWeight", "68"),                                   # not a matching key
    lambda ds: setattr(ds, "Modality", "CT"),                                        # an SPS key at top level
    lambda ds: setattr(ds.ScheduledProcedureStepSequence[0], "PatientName", "X*"),   # a top key inside the item
    lambda ds: setattr(ds.ScheduledProcedureStepSequence[0], "ScheduledProcedureStepDescription", "Chest*"),
    lambda ds: setattr(ds, "ReferencedStudySequence", Sequence([sps_item(ReferencedSOPClassUID="1.2")])),
    lambda ds: setattr(ds, "RequestedProcedureCodeSequence", Sequence([sps_item(CodeMeaning="CT chest")])),
])
def test_non_empty_unsupported_keys_are_flagged(change) -> None:
    ds = rad5_identifier()
    change(ds)
    request, unsupported = request_from_identifier(ds)
    assert unsupported
    assert "PatientName" not in request.step and "Modality" not in request.top


def test_empty_unsupported_keys_are_only_return_keys() -> None:
    ds = rad5_identifier()
    ds.PatientWeight = None
    ds.ReferencedStudySequence = Sequence([])
    ds.RequestedProcedureCodeSequence = Sequence([sps_item(CodeValue="", CodeMeaning="")])
    assert request_from_identifier(ds)[1] is False


def test_more_than_one_item_in_a_sequence_key_is_refused() -> None:
    ds = rad5_identifier()
    ds.ScheduledProcedureStepSequence.append(sps_item(Modality="MR"))
    with pytest.raises(BadIdentifier, match="2 items"):
        request_from_identifier(ds)


def test_undecodable_bytes_match_any_character(caplog: pytest.LogCaptureFixture) -> None:
    ds = rad5_identifier()
    ds.PatientName = "M\ufffdLLER*"
    with caplog.at_level(logging.WARNING):
        request, _ = request_from_identifier(ds)
    assert request.top["PatientName"] == "M?LLER*"
    assert "undecodable" in caplog.text


def item_of(worklist: Pipeline, accession: str) -> WorklistItem:
    [item] = find(worklist, top={"AccessionNumber": accession})
    return item


def test_response_holds_exactly_the_requested_keys(worklist: Pipeline) -> None:
    answer = build_response(item_of(worklist, "ACC1"), rad5_identifier(), "ISO_IR 192")
    response = answer.dataset()
    assert {e.keyword for e in response} == {"SpecificCharacterSet", "PatientName", "PatientID", "AccessionNumber",
                                              "StudyInstanceUID", "RequestedProcedureID",
                                              "ScheduledProcedureStepSequence"}
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == "MÜLLER^ANNA^MARIA^DR."
    assert (response.PatientID, response.AccessionNumber, response.StudyInstanceUID, response.RequestedProcedureID) == (
        "PAT1", "ACC1", "1.2.3.1", "RP-ACC1")
    [sps] = response.ScheduledProcedureStepSequence
    assert {e.keyword: e.value for e in sps} == {
        "ScheduledStationAETitle": "CT1_AE", "Modality": "CT", "ScheduledProcedureStepStartDate": "20250304",
        "ScheduledProcedureStepStartTime": "100000", "ScheduledProcedureStepID": "SPS-ACC1",
        "ScheduledProcedureStepDescription": "Protocol CT"}
    assert answer.missing == []


def test_response_without_non_ascii_values_has_no_character_set(worklist: Pipeline) -> None:
    ds = rad5_identifier()
    ds.SpecificCharacterSet = "ISO_IR 192"
    response = build_response(item_of(worklist, "ABX1"), ds, "ISO_IR 192").dataset()
    assert "SpecificCharacterSet" not in response
    assert str(response.PatientName) == "SMITH^JOHN"
    # the same item with a non-ASCII key requested gets it
    ds = Dataset()
    ds.PatientName = ""
    assert "SpecificCharacterSet" not in build_response(item_of(worklist, "ABX1"), ds, "ISO_IR 192").dataset()
    assert build_response(item_of(worklist, "AB_1"), ds, "ISO_IR 192").dataset().SpecificCharacterSet == "ISO_IR 192"
    # a non-ASCII attribute that was not requested does not count
    ds = Dataset()
    ds.PatientID = ""
    assert "SpecificCharacterSet" not in build_response(item_of(worklist, "ACC1"), ds, "ISO_IR 192").dataset()


def test_values_outside_a_single_byte_repertoire_are_replaced(pipeline: Pipeline) -> None:
    send_all(pipeline, dict(accession="CYR1", name="ИВАНОВА^ОЛЬГА"),
             dict(accession="LAT1", patient="PAT9", name="MÜLLER^ANNA"))
    ds = Dataset()
    ds.PatientName = ""
    [cyrillic] = find(pipeline, top={"AccessionNumber": "CYR1"})
    response = build_response(cyrillic, ds, "ISO_IR 100").dataset()
    assert response.SpecificCharacterSet == "ISO_IR 100" and str(response.PatientName) == "???????^?????"
    [latin] = find(pipeline, top={"AccessionNumber": "LAT1"})
    assert str(build_response(latin, ds, "ISO_IR 100").dataset().PatientName) == "MÜLLER^ANNA"


def test_sequence_keys_universal_and_reduced(worklist: Pipeline) -> None:
    item = item_of(worklist, "ACC1")
    ds = Dataset()
    ds.ScheduledProcedureStepSequence = Sequence([Dataset()])      # one empty item: the whole stored item
    ds.RequestedProcedureCodeSequence = Sequence([])               # zero-length: the whole stored sequence
    ds.ReferencedStudySequence = Sequence([])                      # nothing stored: zero-length
    response = build_response(item, ds, "ISO_IR 192").dataset()
    [sps] = response.ScheduledProcedureStepSequence
    assert {e.keyword for e in sps} >= {"ScheduledStationAETitle", "ScheduledStationName", "Modality",
                                        "ScheduledProcedureStepID", "ScheduledProcedureStepStartDate",
                                        "ScheduledProcedureStepStartTime", "ScheduledProcedureStepStatus",
                                        "ScheduledProcedureStepLocation", "ScheduledProtocolCodeSequence",
                                        "ScheduledPerformingPhysicianName"}
    assert sps.ScheduledProtocolCodeSequence[0].CodeValue == "PROT-CT"
    [code] = response.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("CTCHEST", "99RAD", "CT chest")
    assert len(response.ReferencedStudySequence) == 0
    # an item with keys: reduced to those keys
    ds = Dataset()
    ds.RequestedProcedureCodeSequence = Sequence([sps_item(CodeValue="")])
    assert {e.keyword for e in build_response(item, ds, "ISO_IR 192").dataset().RequestedProcedureCodeSequence[0]} == {
        "CodeValue"}


def test_unknown_and_private_keys_come_back_zero_length(worklist: Pipeline) -> None:
    ds = Dataset()
    ds.add_new(0x00091010, "LO", "")
    ds.PatientWeight = None
    response = build_response(item_of(worklist, "ABX1"), ds, "ISO_IR 192").dataset()
    assert response[0x00091010].value in (None, "")
    assert response.PatientWeight is None or response.PatientWeight == ""


def test_items_lacking_a_requested_type1_value_are_not_offered(worklist: Pipeline) -> None:
    item = item_of(worklist, "AB%2")     # no station AE title
    assert build_response(item, rad5_identifier(), "ISO_IR 192").missing == [
        "ScheduledProcedureStepSequence>ScheduledStationAETitle"]
    ds = Dataset()
    ds.AccessionNumber = ""
    assert build_response(item, ds, "ISO_IR 192").missing == []


# -- the C-FIND handler end to end, without a network ------------------------------------------------------
class CancelAfter:
    """The SCU's C-CANCEL, seen by the handler after ``checks`` cancellation checks (never when None)."""

    def __init__(self, checks: int | None):
        self.remaining = checks

    def __call__(self) -> bool:
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining < 0


def run_find(pipeline: Pipeline, identifier: Dataset, calling: str = "CT1_AE", aes: dict | None = None,
             allow_any: bool = True, cancel_after: int | None = None) -> list[tuple[int, Any]]:
    context = DicomContext(pipeline.config, pipeline.store, AEDirectory.from_config(aes or {}, allow_any))
    results = []
    for status, found in WorklistService(context).answer(identifier, calling, CancelAfter(cancel_after)):
        results.append((status if isinstance(status, int) else status.Status,
                        found.dataset() if found is not None else status))
    return results


def codes(results: list[tuple[int, Any]]) -> list[int]:
    return [code for code, _ in results]


def test_handler_pending_then_success_and_cancel(worklist: Pipeline) -> None:
    query = item_query(PatientName="", AccessionNumber="")
    results = run_find(worklist, query)
    assert codes(results) == [0xFF00] * 4 + [0x0000]
    assert [found.AccessionNumber for code, found in results[:-1]] == ["ACC1", "AB_1", "ABX1", "AB%2"]
    assert codes(run_find(worklist, query, cancel_after=1)) == [0xFF00, 0xFE00]


def test_handler_failures_carry_an_error_comment(worklist: Pipeline) -> None:
    [(code, status)] = run_find(worklist, rad5_identifier_with(ScheduledProcedureStepStartDate="20250230"))
    assert code == 0xA900 and "ScheduledProcedureStepStartDate" in status.ErrorComment
    two = rad5_identifier()
    two.ScheduledProcedureStepSequence.append(sps_item(Modality="MR"))
    [(code, status)] = run_find(worklist, two)
    assert code == 0xA900 and "2 items" in status.ErrorComment
    assert len(status.ErrorComment) <= 64
    worklist.store.close()                                   # the database is gone: unable to process
    [(code, status)] = run_find(worklist, item_query(PatientName=""))
    assert code == 0xC000 and "unable to process" in status.ErrorComment


def test_handler_warning_status_for_unsupported_keys(worklist: Pipeline) -> None:
    results = run_find(worklist, item_query(AccessionNumber="ABX1", PatientWeight="70"))
    assert codes(results) == [0xFF01, 0x0000]


def test_handler_does_not_offer_items_lacking_a_requested_type1_value(worklist: Pipeline,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    query = rad5_identifier()
    query.ScheduledProcedureStepSequence[0].ScheduledStationAETitle = ""
    query.ScheduledProcedureStepSequence[0].Modality = ""
    query.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate = ""
    with caplog.at_level(logging.WARNING):
        results = run_find(worklist, query)
    assert [found.AccessionNumber for code, found in results if code == 0xFF00] == ["ACC1", "AB_1", "ABX1"]
    assert "AB%2 not offered" in caplog.text and "ScheduledStationAETitle" in caplog.text


def test_handler_applies_the_calling_aes_entry(worklist: Pipeline) -> None:
    aes = {"CT1_AE": {"stations": ["CT1_AE"], "charset": "ISO_IR 100"}, "PACS": {"permissions": ["query"]}}
    results = run_find(worklist, item_query(PatientName="", AccessionNumber=""), "CT1_AE", aes, allow_any=False)
    [(code, found), final] = results
    assert (code, found.AccessionNumber, final[0]) == (0xFF00, "ACC1", 0x0000)
    assert found.SpecificCharacterSet == "ISO_IR 100" and str(found.PatientName) == "MÜLLER^ANNA^MARIA^DR."
    [(code, status)] = run_find(worklist, item_query(PatientName=""), "PACS", aes, allow_any=False)
    assert code == 0xC000 and "PACS" in status.ErrorComment
    [(code, _)] = run_find(worklist, item_query(PatientName=""), "STRANGER", aes, allow_any=False)
    assert code == 0xC000


def item_query(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def rad5_identifier_with(**step: str) -> Dataset:
    ds = rad5_identifier()
    for keyword, value in step.items():
        setattr(ds.ScheduledProcedureStepSequence[0], keyword, value)
    return ds
