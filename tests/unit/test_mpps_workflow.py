"""MPPS workflow (RAD-6 / RAD-7) without sockets: orders come in as HL7 through the real ingest
pipeline on a real SQLite file, then N-CREATE / N-SET requests (built by the DICOM adapter's own
helpers from pydicom datasets) run through the store's writer thread (SWF.md 4.1, 4.2, 6)."""
from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from engine.store import reports
from engine.dicom.services import mpps as adapter
from engine.workflow import mpps
from engine.workflow.mpps import MppsRefused, Refusal
from engine.workflow.worklist import WorklistRequest, find_items
from tests.conftest import Pipeline, hl7

MSH = "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{cid}|P|2.3.1"
PID = "PID|1||PAT4711^^^GENHOSP^MR||MÜLLER^ANNA^MARIA^^DR.||19780214|F"
UID_A, UID_B = "1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.2"


def order(cid: str, placer: str = "PLC-1", accession: str = "ACC1", sps: str = "SPS-1", study: str = "1.2.3.4.5",
          modality: str = "CT") -> bytes:
    return hl7(MSH.format(cid=cid), PID,
               f"ORC|NW|{placer}^HIS|FIL-{placer}^RIS||SC||1^once^^20250304100000^^R",
               f"OBR|1|{placer}^HIS|FIL-{placer}^RIS|CTCHEST^CT chest^99RAD||||||||||||||{accession}|RP-{accession}"
               f"|{sps}||||{modality}",
               f"ZDS|{study}^RIS^Application^DICOM")


def ssa_item(study: str = "1.2.3.4.5", accession: str = "ACC1", rp: str = "RP-ACC1", sps: str = "SPS-1") -> Dataset:
    item = Dataset()
    item.StudyInstanceUID = study
    item.AccessionNumber = accession
    item.RequestedProcedureID = rp
    item.ScheduledProcedureStepID = sps
    return item


def in_progress(*items: Dataset, **overrides: object) -> Dataset:
    """An N-CREATE attribute list as a modality sends it (SWF.md 9, 10:03)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "MÜLLER^ANNA^MARIA^DR."
    ds.PatientID = "PAT4711"
    ds.PatientBirthDate = "19780214"
    ds.PatientSex = "F"
    ds.StudyID = "S1"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS-8831"
    ds.PerformedStationAETitle = "CT1_AE"
    ds.PerformedProcedureStepStartDate = "20250304"
    ds.PerformedProcedureStepStartTime = "100312"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.PerformedSeriesSequence = []
    ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = []
    ds.ScheduledStepAttributesSequence = list(items) or [ssa_item()]
    for keyword, value in overrides.items():
        setattr(ds, keyword, value)
    return ds


def final(status: str = "COMPLETED", reason: str = "", series: bool = True) -> Dataset:
    """An N-SET modification list that ends the step (SWF.md 9, 10:20)."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20250304"
    ds.PerformedProcedureStepEndTime = "101945"
    items = []
    if series:
        item = Dataset()
        item.SeriesInstanceUID = "1.2.3.4.5.1"
        item.ProtocolName = "CHEST_C"
        image = Dataset()
        image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        image.ReferencedSOPInstanceUID = "1.2.3.4.5.1.1"
        item.ReferencedImageSequence = [image]
        items.append(item)
    ds.PerformedSeriesSequence = items
    if reason:
        code = Dataset()
        code.CodeValue = reason
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Incorrect worklist entry selected" if reason == "110514" else "Discontinued"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [code]
    return ds


def create(p: Pipeline, ds: Dataset, uid: str = UID_A, calling: str = "CT1_AE") -> mpps.MppsResult:
    request = adapter.create_request(ds, uid, calling)
    return p.store.write(lambda txn: mpps.create(txn, request))


def update(p: Pipeline, ds: Dataset, uid: str = UID_A, calling: str = "CT1_AE") -> mpps.MppsResult:
    request = adapter.update_request(ds, uid, calling)
    return p.store.write(lambda txn: mpps.update(txn, request))


def step_status(p: Pipeline, sps: str = "SPS-1") -> str:
    return p.read("SELECT status FROM scheduled_steps WHERE sps_id = ?", (sps,))[0]["status"]


def order_status(p: Pipeline, accession: str = "ACC1") -> str:
    return p.store.read(lambda txn: reports.order_detail(txn, accession)).status


def history(p: Pipeline, kind_prefix: str = "MPPS") -> list[dict]:
    return p.read("SELECT kind, detail FROM order_history WHERE kind LIKE ? ORDER BY id", (kind_prefix + "%",))


def events(p: Pipeline) -> list[dict]:
    return p.read("SELECT kind, subject, detail, order_ref FROM events WHERE kind LIKE 'mpps.%' ORDER BY id")


def counts(p: Pipeline) -> tuple[int, int, int]:
    return tuple(p.read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
                 for table in ("performed_steps", "performed_step_versions", "performed_step_links"))


@pytest.fixture
def ordered(pipeline: Pipeline) -> Pipeline:
    assert pipeline.send(order("O1")).ack_code == "AA"
    assert step_status(pipeline) == "SCHEDULED" and order_status(pipeline) == "SC"
    return pipeline


# -- RAD-6 N-CREATE ------------------------------------------------------------------------------------
def test_in_progress_starts_the_step_and_keeps_the_full_dataset(ordered: Pipeline) -> None:
    result = create(ordered, in_progress())
    assert (result.status, result.unscheduled, result.order_statuses) == ("IN PROGRESS", False, {"ACC1": "IP"})
    assert step_status(ordered) == "STARTED" and order_status(ordered) == "IP"
    row = ordered.read("SELECT * FROM performed_steps")[0]
    assert (row["sop_instance_uid"], row["status"], row["pps_id"], row["performed_station_ae_title"],
            row["calling_ae_title"], row["study_instance_uid"], row["unscheduled"]) == (
        UID_A, "IN PROGRESS", "PPS-8831", "CT1_AE", "CT1_AE", "1.2.3.4.5", 0)
    stored = adapter.decode_dataset(row["dataset"])
    assert str(stored.PatientName) == "MÜLLER^ANNA^MARIA^DR."          # non-ASCII survives
    assert "PerformedSeriesSequence" in stored and stored.PerformedProcedureStepEndDate in ("", None)
    assert stored.file_meta.MediaStorageSOPInstanceUID == UID_A
    versions = ordered.read("SELECT operation, status FROM performed_step_versions")
    assert versions == [{"operation": "N-CREATE", "status": "IN PROGRESS"}]
    link = ordered.read("SELECT s.sps_id FROM performed_step_links l JOIN scheduled_steps s ON s.id = l.step_ref")
    assert link == [{"sps_id": "SPS-1"}]
    [entry] = history(ordered)
    assert entry["kind"] == "MPPS IN PROGRESS"
    assert entry["detail"].startswith(f"{UID_A} on CT1_AE:") and "SCHEDULED -> STARTED" in entry["detail"]
    assert "order SC -> IP" in entry["detail"]
    [event] = events(ordered)
    order_ref = ordered.read("SELECT id FROM orders")[0]["id"]
    assert (event["kind"], event["subject"], event["order_ref"]) == ("mpps.in_progress", "ACC1", order_ref)
    assert UID_A in event["detail"] and "SC -> IP" in event["detail"]
    # the step has left the default worklist
    assert ordered.store.read(lambda txn: find_items(txn, WorklistRequest(top={"AccessionNumber": "ACC1"}))) == []


def test_duplicate_n_create_is_refused_and_changes_nothing(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    before = counts(ordered)
    with pytest.raises(MppsRefused) as refused:
        create(ordered, in_progress())
    assert refused.value.refusal is Refusal.DUPLICATE
    assert counts(ordered) == before and len(history(ordered)) == 1


@pytest.mark.parametrize("keyword", mpps.REQUIRED_AT_CREATE)
def test_each_missing_type1_attribute_is_named(ordered: Pipeline, keyword: str) -> None:
    ds = in_progress()
    delattr(ds, keyword)
    with pytest.raises(MppsRefused) as refused:
        create(ordered, ds)
    assert refused.value.refusal is Refusal.MISSING_ATTRIBUTE
    assert refused.value.keywords == (keyword,)
    assert counts(ordered) == (0, 0, 0) and step_status(ordered) == "SCHEDULED"


def test_missing_and_empty_study_uid_in_the_scheduled_step_item(ordered: Pipeline) -> None:
    item = ssa_item()
    del item.StudyInstanceUID
    with pytest.raises(MppsRefused) as refused:
        create(ordered, in_progress(item))
    assert (refused.value.refusal, refused.value.keywords) == (Refusal.MISSING_ATTRIBUTE, ("StudyInstanceUID",))
    with pytest.raises(MppsRefused) as refused:
        create(ordered, in_progress(ssa_item(study="")))
    assert (refused.value.refusal, refused.value.keywords) == (Refusal.MISSING_VALUE, ("StudyInstanceUID",))
    with pytest.raises(MppsRefused) as refused:
        create(ordered, in_progress(ScheduledStepAttributesSequence=[]))
    assert refused.value.keywords == ("ScheduledStepAttributesSequence",)
    assert counts(ordered) == (0, 0, 0)


def test_empty_type1_values_and_wrong_status(ordered: Pipeline) -> None:
    with pytest.raises(MppsRefused) as refused:
        create(ordered, in_progress(PerformedProcedureStepID="", Modality=None))
    assert refused.value.refusal is Refusal.MISSING_VALUE
    assert set(refused.value.keywords) == {"PerformedProcedureStepID", "Modality"}
    with pytest.raises(MppsRefused) as refused:
        create(ordered, in_progress(PerformedProcedureStepStatus="COMPLETED"))
    assert (refused.value.refusal, refused.value.keywords) == (Refusal.INVALID_VALUE, ("PerformedProcedureStepStatus",))
    assert counts(ordered) == (0, 0, 0) and step_status(ordered) == "SCHEDULED"


def test_type2_attributes_may_be_absent(ordered: Pipeline) -> None:
    ds = in_progress()
    for keyword in ("PatientName", "PatientBirthDate", "PerformedSeriesSequence", "PerformedProcedureStepEndDate"):
        delattr(ds, keyword)
    assert create(ordered, ds).order_statuses == {"ACC1": "IP"}


def test_unscheduled_mpps_is_kept_visible_and_touches_no_order(ordered: Pipeline) -> None:
    result = create(ordered, in_progress(ssa_item(study="1.2.999", accession="", rp="", sps="")))
    assert result.unscheduled and result.linked == []
    assert step_status(ordered) == "SCHEDULED" and history(ordered) == []
    row = ordered.read("SELECT unscheduled, study_instance_uid FROM performed_steps")[0]
    assert (row["unscheduled"], row["study_instance_uid"]) == (1, "1.2.999")
    assert [(e["kind"], e["subject"]) for e in events(ordered)] == [("mpps.unscheduled", "1.2.999")]
    listed = ordered.store.read(lambda txn: reports.performed_step_list(txn, 10, unscheduled_only=True))
    assert [(r.sop_instance_uid, r.unscheduled, list(r.accessions)) for r in listed] == [(UID_A, 1, [])]
    # it completes like any other, still without an order to change
    assert update(ordered, final()).status == "COMPLETED"
    assert step_status(ordered) == "SCHEDULED" and events(ordered)[-1]["kind"] == "mpps.unscheduled"


def test_identifiers_matching_nothing_are_kept_unscheduled(ordered: Pipeline) -> None:
    result = create(ordered, in_progress(ssa_item(accession="NOPE", rp="RP-NOPE", sps="SPS-NOPE", study="1.2.8")))
    assert result.unscheduled and step_status(ordered) == "SCHEDULED"


@pytest.mark.parametrize("item", [
    ssa_item(accession="", sps=""),                                   # Study Instance UID + RP ID
    ssa_item(study="1.2.777", rp="", sps=""),                          # accession alone
    ssa_item(study="1.2.777", accession="ACC1", rp="RP-WRONG", sps="SPS-1"),  # accession, SPS ID preferred
], ids=["study+rp", "accession", "accession+sps"])
def test_linking_falls_back_as_section_4_2_says(ordered: Pipeline, item: Dataset) -> None:
    result = create(ordered, in_progress(item))
    assert not result.unscheduled and result.linked == ["ACC1/SPS-1 -> STARTED"]


def test_linking_prefers_the_exact_sps_of_a_multi_step_procedure(pipeline: Pipeline) -> None:
    two_steps = hl7(MSH.format(cid="O1"), PID, "ORC|NW|PLC-1^HIS|FIL-PLC-1^RIS||SC||1^once^^20250304100000^^R",
                    "OBR|1|PLC-1^HIS|FIL-PLC-1^RIS|CTCHEST^CT chest^99RAD||||||||||||||ACC1|RP-ACC1|SPS-1||||CT",
                    "ORC|NW|PLC-1^HIS|FIL-PLC-1^RIS||SC||1^once^^20250304110000^^R",
                    "OBR|2|PLC-1^HIS|FIL-PLC-1^RIS|CTCHEST^CT chest^99RAD||||||||||||||ACC1|RP-ACC1|SPS-2||||CT",
                    "ZDS|1.2.3.4.5^RIS^Application^DICOM")
    assert pipeline.send(two_steps).ack_code == "AA"
    assert {r["sps_id"] for r in pipeline.read("SELECT sps_id FROM scheduled_steps")} == {"SPS-1", "SPS-2"}
    create(pipeline, in_progress(ssa_item(sps="SPS-2")))
    assert (step_status(pipeline, "SPS-1"), step_status(pipeline, "SPS-2")) == ("SCHEDULED", "STARTED")
    assert order_status(pipeline) == "IP" and [e["kind"] for e in events(pipeline)] == ["mpps.in_progress"]
    # the order's second step starting is no news for the outbound side (SWF.md 4.3: the first N-CREATE)
    create(pipeline, in_progress(ssa_item(sps="SPS-1")), uid=UID_B)
    assert step_status(pipeline, "SPS-1") == "STARTED" and len(events(pipeline)) == 1
    assert "SCHEDULED -> STARTED" in history(pipeline)[-1]["detail"]
    # completing one step while the other runs is (the order stays IP)
    assert update(pipeline, final(), uid=UID_B).order_statuses == {"ACC1": "IP"}
    assert [e["kind"] for e in events(pipeline)] == ["mpps.in_progress", "mpps.completed"]


def test_group_case_one_mpps_performs_two_orders(pipeline: Pipeline) -> None:
    assert pipeline.send(order("O1")).ack_code == "AA"
    assert pipeline.send(order("O2", placer="PLC-2", accession="ACC2", sps="SPS-2", study="1.2.3.4.6")).ack_code == "AA"
    result = create(pipeline, in_progress(ssa_item(), ssa_item("1.2.3.4.6", "ACC2", "RP-ACC2", "SPS-2")))
    assert result.order_statuses == {"ACC1": "IP", "ACC2": "IP"}
    assert {e["subject"] for e in events(pipeline)} == {"ACC1", "ACC2"}
    done = update(pipeline, final())
    assert done.order_statuses == {"ACC1": "CM", "ACC2": "CM"}
    assert (order_status(pipeline, "ACC1"), order_status(pipeline, "ACC2")) == ("CM", "CM")


# -- RAD-7 N-SET ----------------------------------------------------------------------------------------
def test_completed_completes_step_and_order_then_no_more_updates(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    result = update(ordered, final())
    assert (result.status, result.order_statuses) == ("COMPLETED", {"ACC1": "CM"})
    assert step_status(ordered) == "COMPLETED" and order_status(ordered) == "CM"
    row = ordered.read("SELECT status, dataset FROM performed_steps")[0]
    stored = adapter.decode_dataset(row["dataset"])
    assert row["status"] == "COMPLETED" and stored.PerformedProcedureStepEndTime == "101945"
    assert stored.PerformedSeriesSequence[0].ProtocolName == "CHEST_C"
    assert str(stored.PatientName) == "MÜLLER^ANNA^MARIA^DR."          # N-CREATE attributes kept
    assert [v["operation"] for v in ordered.read("SELECT operation FROM performed_step_versions ORDER BY id")] == [
        "N-CREATE", "N-SET"]
    assert history(ordered)[-1]["kind"] == "MPPS COMPLETED"
    assert "STARTED -> COMPLETED; order IP -> CM" in history(ordered)[-1]["detail"]
    assert [e["kind"] for e in events(ordered)] == ["mpps.in_progress", "mpps.completed"]
    # 10:25: a late N-SET changes nothing
    before = counts(ordered)
    with pytest.raises(MppsRefused) as refused:
        update(ordered, final("DISCONTINUED", reason="110513"))
    assert refused.value.refusal is Refusal.NOT_UPDATABLE
    assert refused.value.comment == "Performed Procedure Step Object may no longer be updated"
    assert counts(ordered) == before and step_status(ordered) == "COMPLETED"


def test_in_progress_n_set_updates_attributes_only(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    change = Dataset()
    change.PerformedProcedureStepDescription = "CT chest, contrast given"
    change.PerformedProcedureStepStatus = "IN PROGRESS"
    assert update(ordered, change).status == "IN PROGRESS"
    stored = adapter.decode_dataset(ordered.read("SELECT dataset FROM performed_steps")[0]["dataset"])
    assert stored.PerformedProcedureStepDescription == "CT chest, contrast given"
    assert len(ordered.read("SELECT id FROM performed_step_versions")) == 2
    assert step_status(ordered) == "STARTED" and len(events(ordered)) == 1 and len(history(ordered)) == 1


def test_discontinued_for_a_wrong_worklist_entry_reoffers_the_step(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    result = update(ordered, final("DISCONTINUED", reason="110514"))
    assert result.order_statuses == {"ACC1": "SC"}
    assert step_status(ordered) == "SCHEDULED" and order_status(ordered) == "SC"
    assert "STARTED -> SCHEDULED" in history(ordered)[-1]["detail"] and "110514" in history(ordered)[-1]["detail"]
    assert events(ordered)[-1]["kind"] == "mpps.discontinued" and "re-offered" in events(ordered)[-1]["detail"]
    hidden = {row["uid"] for row in ordered.read("SELECT uid FROM hidden_references")}
    assert hidden == {"1.2.3.4.5.1", "1.2.3.4.5.1.1"}  # its series and images are withdrawn from Q/R
    offered = ordered.store.read(lambda txn: find_items(txn, WorklistRequest(top={"AccessionNumber": "ACC1"})))
    assert [item.step["ScheduledProcedureStepID"] for item in offered] == ["SPS-1"]
    # the modality then performs the right entry: a new MPPS starts it again
    create(ordered, in_progress(), uid=UID_B)
    assert step_status(ordered) == "STARTED"


def test_discontinued_for_another_reason_discontinues(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    assert update(ordered, final("DISCONTINUED", reason="110513")).order_statuses == {"ACC1": "DC"}
    assert step_status(ordered) == "DISCONTINUED" and order_status(ordered) == "DC"
    assert events(ordered)[-1]["kind"] == "mpps.discontinued" and "110513" in events(ordered)[-1]["detail"]


def test_a_later_mpps_for_a_completed_step_is_an_append(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    update(ordered, final())
    result = create(ordered, in_progress(), uid=UID_B)
    assert not result.unscheduled and result.linked == ["ACC1/SPS-1 -> COMPLETED"]
    assert step_status(ordered) == "COMPLETED" and order_status(ordered) == "CM"
    assert history(ordered)[-1]["kind"] == "MPPS APPENDED" and UID_B in history(ordered)[-1]["detail"]
    assert [e["kind"] for e in events(ordered)] == ["mpps.in_progress", "mpps.completed"]   # no new event
    assert update(ordered, final(), uid=UID_B).status == "COMPLETED"
    assert history(ordered)[-1]["kind"] == "MPPS APPENDED" and len(events(ordered)) == 2


def test_n_set_refusals(ordered: Pipeline) -> None:
    with pytest.raises(MppsRefused) as refused:
        update(ordered, final())
    assert refused.value.refusal is Refusal.NO_SUCH_INSTANCE
    create(ordered, in_progress())
    not_allowed = final()
    not_allowed.PatientID = "OTHER"
    not_allowed.PerformedProcedureStepStartTime = "090000"
    with pytest.raises(MppsRefused) as refused:
        update(ordered, not_allowed)
    assert refused.value.refusal is Refusal.NOT_ALLOWED
    assert set(refused.value.keywords) == {"PatientID", "PerformedProcedureStepStartTime"}
    with pytest.raises(MppsRefused) as refused:
        update(ordered, final("DONE"))
    assert (refused.value.refusal, refused.value.keywords) == (Refusal.INVALID_VALUE, ("PerformedProcedureStepStatus",))
    with pytest.raises(MppsRefused) as refused:
        update(ordered, final(series=False))
    assert (refused.value.refusal, refused.value.keywords) == (Refusal.MISSING_VALUE, ("PerformedSeriesSequence",))
    no_end = final()
    no_end.PerformedProcedureStepEndTime = None
    no_end.PerformedSeriesSequence[0].ProtocolName = ""
    with pytest.raises(MppsRefused) as refused:
        update(ordered, no_end)
    assert set(refused.value.keywords) == {"PerformedProcedureStepEndTime", "ProtocolName"}
    # none of it was applied
    assert ordered.read("SELECT status FROM performed_steps")[0]["status"] == "IN PROGRESS"
    assert len(ordered.read("SELECT id FROM performed_step_versions")) == 1 and step_status(ordered) == "STARTED"


def test_end_values_given_at_n_create_count_for_the_final_n_set(ordered: Pipeline) -> None:
    create(ordered, in_progress(PerformedProcedureStepEndDate="20250304", PerformedProcedureStepEndTime="101945",
                                PerformedSeriesSequence=final().PerformedSeriesSequence))
    finish = Dataset()
    finish.PerformedProcedureStepStatus = "COMPLETED"
    assert update(ordered, finish).order_statuses == {"ACC1": "CM"}


def test_detail_report_lists_links_and_versions(ordered: Pipeline) -> None:
    create(ordered, in_progress())
    update(ordered, final())
    detail = ordered.store.read(lambda txn: reports.performed_step_detail(txn, UID_A))
    assert [(s.accession_number, s.sps_id, s.status) for s in detail.linked_steps] == [
        ("ACC1", "SPS-1", "COMPLETED")]
    assert [(v.operation, v.status) for v in detail.versions] == [
        ("N-CREATE", "IN PROGRESS"), ("N-SET", "COMPLETED")]
    summary = detail.summary
    assert (summary.patient_id, summary.series, summary.images, summary.end) == (
        "PAT4711", 1, 1, "20250304 101945")
    by_pps_id = ordered.store.read(lambda txn: reports.performed_step_detail(txn, "PPS-8831"))
    assert by_pps_id.step.sop_instance_uid == UID_A
    assert ordered.store.read(lambda txn: reports.performed_step_detail(txn, "1.2.3.nothing")) is None


def test_wrong_worklist_entry_withdraws_the_performed_images() -> None:
    from engine.workflow.mpps import performed_references

    attributes = {"PerformedSeriesSequence": [
        {"SeriesInstanceUID": "1.2.3.1", "ReferencedImageSequence": [{"ReferencedSOPInstanceUID": "1.2.3.1.1"},
                                                                     {"ReferencedSOPInstanceUID": "1.2.3.1.2"}]},
        {"SeriesInstanceUID": "1.2.3.2"}, "not an item"]}
    assert performed_references(attributes) == (["1.2.3.1", "1.2.3.2"], ["1.2.3.1.1", "1.2.3.1.2"])
    assert performed_references({}) == ([], [])
