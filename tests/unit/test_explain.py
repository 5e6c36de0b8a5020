"""The domain part of ``swf explain`` (engine/workflow/explain.py): stored steps and journaled messages given
as records, the shipped profiles and rules loaded from their files; no SQL, no sockets."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import Config
from engine.hl7.profiles import load_profiles
from engine.rules.ruleset import load_ruleset
from engine.store.explain import JournaledMessage, OperatorChange, StoredStep
from engine.workflow.explain import ExplainedAttribute, Explanation, explain

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "profiles")
RULES = load_ruleset(ROOT / "routes")

TWO_STEPS = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207080000||ORM^O01|TWO-1|P|2.3.1\r"
             "PID|1||PAT1^^^GENHOSP^MR||DOE^JANE||19700101|F\r"
             "ORC|NW|P1^HIS|F1^RIS||SC||1^once^^20261207100000^^R\r"
             "OBR|1|P1^HIS|F1^RIS|CTHEAD^CT head^99RAD||||||||||||||ACC1|RP1|SPS-A||||CT\r"
             "OBR|2|P1^HIS|F1^RIS|CTNECK^CT neck^99RAD||||||||||||||ACC1|RP1|SPS-B||||MR\r")
UPDATE = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207090000||ORM^O01|TWO-2|P|2.3.1\r"
          "PID|1||PAT1^^^GENHOSP^MR||DOE^JANE||19700101|F\r"
          "ORC|XO|P1^HIS|F1^RIS||SC\r"
          "OBR|1|P1^HIS|F1^RIS|CTNECK^CT neck with contrast^99RAD||||||||||||||ACC1|RP1|SPS-B||||MR\r")
CANCEL = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207093000||ORM^O01|TWO-3|P|2.3.1\r"
          "PID|1||PAT1^^^GENHOSP^MR||DOE^JANE||19700101|F\r"
          "ORC|CA|P1^HIS|F1^RIS||CA\r"
          "OBR|1|P1^HIS|F1^RIS|XX^Something else^99RAD||||||||||||||ACC1|RP1|SPS-B||||US\r")


def journaled(number: int, text: str, rule: str = "RIS orders (broker mode), CT orders to CT room 1") -> JournaledMessage:
    """A journal entry as ingest leaves it; ``rule`` is what the whole-message pass matched (the first step's)."""
    control_id = text.split("|")[9]
    return JournaledMessage(number, "2026-12-07T08:00:00.000+00:00", control_id, "ORM^O01", rule,
                            text.encode("latin-1"))


def step_b(**changes: object) -> StoredStep:
    """SPS-B as the workflow stores it after TWO_STEPS (second OBR, MR room)."""
    values: dict = dict(
        sps_id="SPS-B", status="SCHEDULED", station_ae_title="MR1_AE", station_name="MR1", location="MRROOM1",
        modality="MR", step_attributes={"ScheduledProcedureStepDescription": "CT neck",
                                        "ScheduledProcedureStepStartDate": "20261207",
                                        "ScheduledProcedureStepStartTime": "100000"},
        accession_number="ACC1", requested_procedure_id="RP1", study_instance_uid="2.25.1",
        procedure_attributes={"RequestedProcedureDescription": "CT neck"}, placer_order_number="P1",
        filler_order_number="F1", patient_id="PAT1", issuer="GENHOSP",
        patient_attributes={"PatientName": "DOE^JANE"}, order_ref=1, patient_ref=1, other_sps_ids=("SPS-A",))
    values.update(changes)
    return StoredStep(**values)


def attribute(explanation: Explanation, keyword: str) -> ExplainedAttribute:
    return next(a for a in explanation.attributes if a.keyword == keyword)


def config() -> Config:
    return Config(routes_dir=str(ROOT / "routes"), profiles_dir=str(ROOT / "profiles"))


def test_the_second_step_of_a_message_is_explained_from_its_own_obr() -> None:
    explanation = explain(step_b(), [journaled(1, TWO_STEPS)], [], config(), PROFILES, RULES)
    sps = attribute(explanation, "ScheduledProcedureStepID")
    assert sps.origin.kind == "hl7" and sps.origin.where.startswith("OBR(2)-20 (message TWO-1, journal #1)")
    description = attribute(explanation, "ScheduledProcedureStepDescription")
    assert description.origin.where.startswith("OBR(2)-4.2 ")
    station = attribute(explanation, "ScheduledStationAETitle")
    assert station.origin.kind == "rule" and "'MR orders to MR room 1 (the HIS codes MR as NMR)'" in station.origin.where
    assert not any(a.differs for a in explanation.attributes), [a for a in explanation.attributes if a.differs]
    assert explanation.other_sps_ids == ("SPS-A",)
    assert len(explanation.notes) == 1 and "as they are now" in explanation.notes[0]   # no rules changed since
    changed = explain(step_b(), [journaled(1, TWO_STEPS, rule="an old rule")], [], config(), PROFILES, RULES)
    assert ("journal #1 matched rules [an old rule] at ingest; the rules in force now match [RIS orders (broker "
            "mode), CT orders to CT room 1]: the rules changed since") in changed.notes


def test_a_later_update_is_named_and_a_cancel_changes_no_attribute() -> None:
    stored = step_b(step_attributes={"ScheduledProcedureStepDescription": "CT neck with contrast",
                                     "ScheduledProcedureStepStartDate": "20261207",
                                     "ScheduledProcedureStepStartTime": "100000"}, status="CANCELED")
    messages = [journaled(1, TWO_STEPS), journaled(2, UPDATE), journaled(3, CANCEL)]
    explanation = explain(stored, messages, [], config(), PROFILES, RULES)
    description = attribute(explanation, "ScheduledProcedureStepDescription")
    assert description.value == "CT neck with contrast" and not description.differs
    assert "(message TWO-2, journal #2)" in description.origin.where
    start = attribute(explanation, "ScheduledProcedureStepStartTime")   # the XO gives none: the NW's is kept
    assert start.origin.where.startswith("ORC-7.4 (message TWO-1, journal #1)") and not start.differs
    assert attribute(explanation, "Modality").value == "MR" and not attribute(explanation, "Modality").differs
    assert len(explanation.messages) == 3


def test_a_stored_value_the_messages_do_not_give_is_flagged() -> None:
    stored = step_b(step_attributes={"ScheduledProcedureStepDescription": "edited by hand",
                                     "ScheduledProcedureStepStartDate": "20261207",
                                     "ScheduledProcedureStepStartTime": "100000"})
    explanation = explain(stored, [journaled(1, TWO_STEPS)], [], config(), PROFILES, RULES)
    description = attribute(explanation, "ScheduledProcedureStepDescription")
    assert description.differs and description.rederived == "CT neck" and description.value == "edited by hand"
    as_json = explanation.to_json()
    flagged = [a for a in as_json["attributes"] if a["differs"]]
    assert flagged == [{"keyword": "ScheduledProcedureStepDescription", "tag": "(0040,0007)", "level": "step",
                        "value": "edited by hand", "from": {"kind": description.origin.kind,
                                                           "where": description.origin.where},
                        "differs": True, "rederived": "CT neck"}]


def test_an_operator_reschedule_is_the_origin_of_the_new_station() -> None:
    stored = step_b(station_ae_title="MR2_AE")
    change = OperatorChange("2026-12-07T09:00:00", "SPS rescheduled", "SPS SPS-B by the operator: room 1 broken")
    explanation = explain(stored, [journaled(1, TWO_STEPS)], [change], config(), PROFILES, RULES)
    station = attribute(explanation, "ScheduledStationAETitle")
    assert station.origin.kind == "operator" and "room 1 broken" in station.origin.where
    assert station.differs and station.rederived == "MR1_AE"


def test_a_message_the_rules_now_reject_is_said_and_gives_nothing(tmp_path: Path) -> None:
    (tmp_path / "10-reject.yaml").write_text("rules:\n  - name: no RIS\n    when: {MSH-3: RIS}\n"
                                             "    reject: no RIS any more\n")
    explanation = explain(step_b(), [journaled(1, TWO_STEPS)], [], config(), PROFILES, load_ruleset(tmp_path))
    assert "journal #1 (TWO-1) now rejected by rule 'no RIS': its values are not explained" in explanation.notes
    description = attribute(explanation, "ScheduledProcedureStepDescription")
    assert description.differs and description.origin.where == "stored; no journaled message gives it now"


def test_a_site_variant_names_its_own_lines_and_its_base_lines(tmp_path: Path) -> None:
    variant = ROOT / "profiles" / "example-accession-in-orc3.yaml"
    base = ROOT / "profiles" / "ihe-v231-orm.yaml"
    profile = PROFILES["example-accession-in-orc3"]

    def line(path: Path, text: str) -> int:
        return next(n for n, row in enumerate(path.read_text().splitlines(), 1) if row.startswith(text))

    assert profile.where["request.AccessionNumber"] == f"{ROOT / 'profiles'}/{variant.name}:" \
                                                       f"{line(variant, '  AccessionNumber:')}"
    assert profile.where["step.ScheduledProcedureStepID"] == f"{ROOT / 'profiles'}/{base.name}:" \
                                                             f"{line(base, '  ScheduledProcedureStepID:')}"
    rules = {rule.keyword: rule.where for rule in profile.step}
    assert rules["Modality"].endswith(f"{variant.name}:{line(variant, '  Modality:')}")
    (tmp_path / "base.yaml").write_text("name: base\nmessages: [ORM^O01]\nstep:\n  Modality: OBR-24\n"
                                        "  ScheduledProcedureStepID: OBR-20\n")
    (tmp_path / "site.yaml").write_text("name: site\nextends: base\nstep:\n  Modality: null\n")
    site = load_profiles(tmp_path)["site"]
    assert "step.Modality" not in site.where and site.where["step.ScheduledProcedureStepID"].endswith("base.yaml:5")


@pytest.mark.parametrize("keyword", ["AccessionNumber", "RequestedProcedureID", "ScheduledProcedureStepID"])
def test_identifiers_the_message_names_are_hl7_not_generated(keyword: str) -> None:
    explanation = explain(step_b(), [journaled(1, TWO_STEPS)], [], config(), PROFILES, RULES)
    assert attribute(explanation, keyword).origin.kind == "hl7"
