"""The ingest pipeline without sockets: journal, ACK codes, patients, orders, steps, history.

Each test drives the real Ingestor on a real SQLite file through the store's writer thread.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Pipeline, hl7

MSH_ADT = "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304081502||ADT^{t}^ADT_A01|{cid}|P|2.5.1||||||UNICODE UTF-8"
MSH_ORM = "MSH|^~\\&|{app}|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{cid}|P|2.3.1"
PID = "PID|1||PAT4711^^^GENHOSP&2.999.1.1&ISO^MR~ALT-1^^^OTHER^PI||MÜLLER^ANNA^MARIA^^DR.||19780214|F"


def adt(trigger: str, cid: str, pid: str = PID, *extra: str) -> bytes:
    return hl7(MSH_ADT.format(t=trigger, cid=cid), f"EVN|{trigger}|20250304081500", pid,
               "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V17", *extra)


def orm(cid: str, control: str = "NW", status: str = "SC", placer: str = "PLC-1", accession: str = "ACC1",
        sps: str = "SPS-1", start: str = "20250304100000", modality: str = "CT", app: str = "RIS",
        study: str = "1.2.3.4.5", service: str = "CTCHEST^CT chest^99RAD", pid: str = PID) -> bytes:
    return hl7(MSH_ORM.format(app=app, cid=cid), pid,
               f"ORC|{control}|{placer}^HIS|FIL-{placer}^RIS||{status}||1^once^^{start}^^R",
               f"OBR|1|{placer}^HIS|FIL-{placer}^RIS|{service}||||||||||||||{accession}|RP-{accession}|{sps}"
               f"||||{modality}",
               f"ZDS|{study}^RIS^Application^DICOM")


def ack_segments(result) -> dict[str, list[str]]:
    segments = {}
    for line in result.ack.decode("latin-1").split("\r"):
        if line:
            segments[line[:3]] = line.split("|")
    return segments


def steps(p: Pipeline) -> list[dict]:
    return p.read("SELECT s.*, r.accession_number, r.study_instance_uid FROM scheduled_steps s"
                  " JOIN requested_procedures r ON r.id = s.requested_procedure_ref ORDER BY s.id")


# -- patients --------------------------------------------------------------------------------------
def test_registration_keeps_identifiers_with_issuers_and_visit(pipeline: Pipeline) -> None:
    result = pipeline.send(adt("A04", "C1"))
    assert result.ack_code == "AA" and result.status == "applied"
    patient = pipeline.read("SELECT * FROM patients")[0]
    assert (patient["patient_id"], patient["issuer"]) == ("PAT4711", "GENHOSP")
    attributes = json.loads(patient["attributes"])
    assert attributes["PatientName"] == "MÜLLER^ANNA^MARIA^DR."
    assert attributes["PatientBirthDate"] == "19780214"
    assert attributes["IssuerOfPatientIDQualifiersSequence"][0]["UniversalEntityID"] == "2.999.1.1"
    identifiers = {(r["patient_id"], r["issuer"]) for r in pipeline.read("SELECT * FROM patient_identifiers")}
    assert identifiers == {("PAT4711", "GENHOSP"), ("ALT-1", "OTHER")}
    assert pipeline.read("SELECT visit_number, status FROM visits") == [{"visit_number": "V17", "status": "active"}]


def test_update_changes_demographics_and_cancel_visit(pipeline: Pipeline) -> None:
    pipeline.send(adt("A04", "C1"))
    changed = PID.replace("19780214", "19780215")
    assert pipeline.send(adt("A08", "C2", changed)).ack_code == "AA"
    assert json.loads(pipeline.read("SELECT attributes FROM patients")[0]["attributes"])["PatientBirthDate"] == "19780215"
    assert pipeline.send(adt("A11", "C3")).ack_code == "AA"
    assert pipeline.read("SELECT status FROM visits")[0]["status"] == "cancelled"


def test_merge_moves_orders_and_resolves_the_prior_id_later(pipeline: Pipeline) -> None:
    prior_pid = "PID|1||PAT9999^^^GENHOSP^MR||MULLER^ANNA"
    assert pipeline.send(orm("O1", pid=prior_pid)).ack_code == "AA"
    pipeline.send(adt("A04", "C1"))
    merge = adt("A40", "C2", PID, "MRG|PAT9999^^^GENHOSP^MR")
    assert pipeline.send(merge).ack_code == "AA"
    survivor, prior = (pipeline.read("SELECT id FROM patients WHERE patient_id = ?", (pid,))[0]["id"]
                       for pid in ("PAT4711", "PAT9999"))
    assert pipeline.read("SELECT patient_ref FROM orders")[0]["patient_ref"] == survivor
    assert pipeline.read("SELECT merged_into FROM patients WHERE id = ?", (prior,))[0]["merged_into"] == survivor
    # A later order naming the prior ID lands on the survivor.
    assert pipeline.send(orm("O2", placer="PLC-2", accession="ACC2", study="1.2.3.6", pid=prior_pid)).ack_code == "AA"
    assert {r["patient_ref"] for r in pipeline.read("SELECT patient_ref FROM orders")} == {survivor}


def test_merge_without_mrg_is_rejected_at_mrg_1(pipeline: Pipeline) -> None:
    result = pipeline.send(adt("A40", "C9"))
    assert result.ack_code == "AE"
    err = ack_segments(result)["ERR"]
    assert err[2].startswith("MRG^1^1") and err[3].startswith("101^")
    assert pipeline.read("SELECT COUNT(*) AS n FROM patients")[0]["n"] == 0  # effects rolled back
    assert pipeline.read("SELECT status FROM journal")[0]["status"] == "rejected"


def test_strict_merged_ids_rejects_the_prior_id(make_pipeline) -> None:
    pipeline = make_pipeline()
    pipeline.config.hl7.strict_merged_ids = True
    pipeline.send(adt("A04", "C1", "PID|1||PAT9999^^^GENHOSP^MR||MULLER^ANNA"))
    pipeline.send(adt("A40", "C2", PID, "MRG|PAT9999^^^GENHOSP^MR"))
    result = pipeline.send(orm("O1", pid="PID|1||PAT9999^^^GENHOSP^MR||MULLER^ANNA"))
    assert result.ack_code == "AE" and "^204&" in "|".join(ack_segments(result)["ERR"])


# -- orders ----------------------------------------------------------------------------------------
def test_broker_order_keeps_the_ris_identifiers_and_is_scheduled_by_rule(pipeline: Pipeline) -> None:
    result = pipeline.send(orm("O1"))
    assert result.ack_code == "AA", result.reason
    [step] = steps(pipeline)
    assert (step["accession_number"], step["sps_id"], step["study_instance_uid"]) == ("ACC1", "SPS-1", "1.2.3.4.5")
    assert (step["status"], step["station_ae_title"], step["modality"]) == ("SCHEDULED", "CT1_AE", "CT")
    assert step["start_datetime"].startswith("20250304100000")
    assert pipeline.read("SELECT deployment_mode FROM orders")[0]["deployment_mode"] == "broker"


def test_filler_order_gets_generated_identifiers_once(pipeline: Pipeline) -> None:
    bare = hl7(MSH_ORM.format(app="HIS", cid="H1"), PID, "ORC|NW|PLC-77^HIS",
               "OBR|1|PLC-77^HIS||USABD^US abdomen^99RAD||||||||||||||||||||US")
    first = pipeline.send(bare)
    assert first.ack_code == "AA", first.reason
    [step] = steps(pipeline)
    assert step["accession_number"].startswith("A") and len(step["accession_number"]) <= 16
    assert step["study_instance_uid"].startswith("2.25.")
    assert step["sps_id"] and step["station_ae_title"] == "US1_AE"
    order = pipeline.read("SELECT * FROM orders")[0]
    assert order["deployment_mode"] == "filler" and order["filler_order_number"]
    again = pipeline.send(bare)
    assert again.status == "duplicate" and again.ack == first.ack
    assert len(steps(pipeline)) == 1 and steps(pipeline)[0]["accession_number"] == step["accession_number"]


def test_control_id_reused_with_other_content_is_rejected(pipeline: Pipeline) -> None:
    pipeline.send(orm("O1"))
    result = pipeline.send(orm("O1", accession="ACC-OTHER", study="1.2.9"))
    assert result.ack_code == "AE" and "different content" in result.reason


def test_reschedule_cancel_and_refusals(pipeline: Pipeline) -> None:
    pipeline.send(orm("O1"))
    moved = pipeline.send(orm("O2", control="XO", status="SC", start="20250305083000"))
    assert moved.ack_code == "AA", moved.reason
    assert steps(pipeline)[0]["start_datetime"].startswith("20250305083000")
    cancelled = pipeline.send(orm("O3", control="CA", status="CA"))
    assert cancelled.ack_code == "AA"
    assert steps(pipeline)[0]["status"] == "CANCELED"
    after_final = pipeline.send(orm("O4", control="XO", status="SC", start="20250306083000"))
    assert after_final.ack_code == "AE" and "final state" in after_final.reason
    unknown = pipeline.send(orm("O5", control="CA", status="CA", placer="PLC-404"))
    assert unknown.ack_code == "AE" and "ORC^1^2^204&" in "|".join(ack_segments(unknown)["ERR"])


def test_started_step_cannot_be_cancelled_or_moved_but_can_be_discontinued(pipeline: Pipeline) -> None:
    assert pipeline.send(orm("O1", control="NW", status="IP")).ack_code == "AA"
    assert steps(pipeline)[0]["status"] == "STARTED"
    refused = pipeline.send(orm("O2", control="CA", status="CA"))
    assert refused.ack_code == "AE" and "in progress" in refused.reason
    moved = pipeline.send(orm("O3", control="XO", status="SC", modality="MR"))
    assert moved.ack_code == "AE" and "step in progress" in moved.reason
    assert pipeline.send(orm("O4", control="DC", status="CA")).ack_code == "AA"
    assert steps(pipeline)[0]["status"] == "DISCONTINUED"
    history = [r["kind"] for r in pipeline.read("SELECT kind FROM order_history ORDER BY id")]
    assert history[0] == "order NW" and "SPS DISCONTINUED" in history


def test_unsupported_order_control_pair_is_103_at_orc_1(pipeline: Pipeline) -> None:
    result = pipeline.send(orm("O1", control="NW", status="CM"))
    assert result.ack_code == "AE"
    assert ack_segments(result)["ERR"][1].startswith("ORC^1^1") and "103&" in ack_segments(result)["ERR"][1]


def test_bad_start_date_is_102(pipeline: Pipeline) -> None:
    result = pipeline.send(orm("O1", start="20250230100000"))
    assert result.ack_code == "AE" and "102&" in ack_segments(result)["ERR"][1]
    assert steps(pipeline) == []


def test_missing_segments_and_fields(pipeline: Pipeline) -> None:
    no_pid = hl7(MSH_ORM.format(app="RIS", cid="X1"), "ORC|NW|P1^HIS", "OBR|1|P1^HIS||CT^CT^99RAD")
    assert pipeline.send(no_pid).ack_code == "AE"
    no_orc = hl7(MSH_ORM.format(app="RIS", cid="X2"), PID, "OBR|1|P1^HIS||CT^CT^99RAD")
    result = pipeline.send(no_orc)
    assert result.ack_code == "AE" and "100&" in ack_segments(result)["ERR"][1]
    empty_name = hl7(MSH_ORM.format(app="RIS", cid="X3"), "PID|1||PAT1^^^H^MR||", "ORC|NW|P1^HIS",
                     "OBR|1|P1^HIS||CT^CT^99RAD")
    assert "PID-5" in pipeline.send(empty_name).reason
    statuses = {r["status"] for r in pipeline.read("SELECT status FROM journal")}
    assert statuses == {"rejected"}


@pytest.mark.parametrize("header,code,err", [
    ("MSH|^~\\&|RIS|H|E|R|20250304||ORU^R01|U1|P|2.5.1", "AR", "200^"),
    ("MSH|^~\\&|RIS|H|E|R|20250304||ADT^A99^ADT_A01|U2|P|2.5.1", "AR", "201^"),
    ("MSH|^~\\&|RIS|H|E|R|20250304||ADT^A04^ADT_A01|U3|P|2.9", "AR", "203^"),
    ("MSH|^~\\&|RIS|H|E|R|20250304||ADT^A04^ADT_A01||P|2.5.1", "AR", "101^"),
    ("MSH|^~\\&|RIS|H|E|R|20250304||ADT^A04^ADT_A01|U5|X|2.5.1", "AR", "202^"),
])
def test_header_problems_are_rejected_with_ar(pipeline: Pipeline, header: str, code: str, err: str) -> None:
    result = pipeline.send(hl7(header, PID))
    assert result.ack_code == code
    assert err in ack_segments(result)["ERR"][3]
    assert pipeline.read("SELECT status, raw FROM journal")[0]["status"] == "rejected"


def test_unreadable_message_is_journaled_and_answered_ar(pipeline: Pipeline) -> None:
    result = pipeline.send(b"this is not HL7")
    assert result.ack_code == "AR"
    msh, msa = result.ack.decode().split("\r")[:2]
    assert msh.startswith("MSH|^~\\&|SWF_ENGINE|RADIOLOGY") and msa == "MSA|AR|"
    assert bytes(pipeline.read("SELECT raw FROM journal")[0]["raw"]) == b"this is not HL7"


def test_rule_reject_and_drop(tmp_path: Path, make_pipeline) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(
        "rules:\n"
        "  - name: no training\n    when: {MSH-3: TRAIN*}\n    reject: {code: AR, reason: training system}\n"
        "  - name: ignore MR\n    when: {OBR-24: MR}\n    drop: MR is scheduled elsewhere\n")
    pipeline = make_pipeline(routes=routes)
    rejected = pipeline.send(orm("R1", app="TRAINER"))
    assert rejected.ack_code == "AR" and "training system" in rejected.reason
    dropped = pipeline.send(orm("R2", modality="MR"))
    assert dropped.ack_code == "AA" and dropped.status == "dropped"
    assert steps(pipeline) == []
    assert [r["status"] for r in pipeline.read("SELECT status FROM journal ORDER BY id")] == ["rejected", "dropped"]


def test_enhanced_mode_accept_acks(pipeline: Pipeline) -> None:
    always = hl7(MSH_ORM.format(app="RIS", cid="E1") + "|||AL|NE", PID, "ORC|NW|P1^HIS",
                 "OBR|1|P1^HIS||CT^CT^99RAD||||||||||||||||||||CT")
    result = pipeline.send(always)
    assert ack_segments(result)["MSA"][1] == "CA"
    never = hl7(MSH_ORM.format(app="RIS", cid="E2") + "|||NE|NE", PID, "ORC|NW|P2^HIS",
                "OBR|1|P2^HIS||CT^CT^99RAD||||||||||||||||||||CT")
    assert pipeline.send(never).ack is None


def test_omi_with_two_ipc_and_repeated_sps_id_merges_protocols(pipeline: Pipeline) -> None:
    message = hl7(
        "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||OMI^O23^OMI_O23|RIS0000456|P|2.5.1||||||UNICODE UTF-8",
        PID, "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V20250304-17",
        "ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||||20250304082955",
        "TQ1|1||||||20250304100000|20250304103000|R^Routine^HL70078",
        "OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest with contrast^99RAD||||||||||||||||||||CT",
        "IPC|ACC25030417^GENHOSP|RP-0417-1|2.25.1964|SPS-0417-1|CT^CT^DCM|CTCH-P1^Chest CT^99RAD|CT1|CTROOM1^CT room 1|CT9_AE",
        "IPC|ACC25030417^GENHOSP|RP-0417-1|2.25.1964|SPS-0417-1|CT^CT^DCM|CTCH-P2^Chest CT late^99RAD|CT1|CTROOM1^CT room 1|CT9_AE")
    result = pipeline.send(message)
    assert result.ack_code == "AA", result.reason
    [step] = steps(pipeline)
    assert step["station_ae_title"] == "CT9_AE"  # the RIS chose the station; the room rule keeps it
    attributes = json.loads(step["attributes"])
    assert [c["CodeValue"] for c in attributes["ScheduledProtocolCodeSequence"]] == ["CTCH-P1", "CTCH-P2"]
    assert attributes["ScheduledProcedureStepStartTime"] == "100000"
    rp = pipeline.read("SELECT attributes FROM requested_procedures")[0]
    assert json.loads(rp["attributes"])["RequestedProcedurePriority"] == "ROUTINE"
    assert ack_segments(result)["MSH"][8] == "ACK^O23^ACK"


def test_latin1_message_without_msh18_keeps_its_name(pipeline: Pipeline) -> None:
    raw = orm("L1").replace("MÜLLER".encode("utf-8"), "MÜLLER".encode("latin-1"))
    assert pipeline.send(raw).ack_code == "AA"
    patient = pipeline.read("SELECT attributes, name_norm FROM patients")[0]
    assert json.loads(patient["attributes"])["PatientName"].startswith("MÜLLER")
    assert patient["name_norm"].startswith("MULLER^ANNA")


def test_duplicate_window_is_configurable(pipeline: Pipeline) -> None:
    pipeline.send(orm("W1"))
    pipeline.config.hl7.duplicate_window_days = 0  # everything earlier is outside the window
    again = pipeline.send(orm("W1"))
    assert again.status == "applied"
    kinds = [r["kind"] for r in pipeline.read("SELECT kind FROM order_history ORDER BY id")]
    assert "NW used as update" in kinds


def test_order_without_own_nte_does_not_take_the_patient_note(pipeline: Pipeline) -> None:
    message = hl7(MSH_ORM.format(app="RIS", cid="N1"), PID, "NTE|1||patient is deaf",
                  "ORC|NW|PN1^HIS|F-PN1^RIS||SC||1^once^^20250304100000^^R",
                  "OBR|1|PN1^HIS|F-PN1^RIS|CT1^CT head^99RAD||||||||||||||ACCN1|RPN1|SPSN1||||CT",
                  "ORC|NW|PN2^HIS|F-PN2^RIS||SC||1^once^^20250304110000^^R",
                  "OBR|1|PN2^HIS|F-PN2^RIS|CT2^CT neck^99RAD||||||||||||||ACCN2|RPN2|SPSN2||||CT",
                  "NTE|1||contrast allergy suspected")
    assert pipeline.send(message).ack_code == "AA"
    comments = {row["accession_number"]: json.loads(row["attributes"]).get("RequestedProcedureComments")
                for row in pipeline.read("SELECT accession_number, attributes FROM requested_procedures")}
    assert comments == {"ACCN1": None, "ACCN2": ["contrast allergy suspected"]}
