"""Mapping profiles (profiles/README.md): loading, validation with file:line, extends, selection, types, lookup."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.hl7.mapping import MappingError, Profile
from engine.hl7.message import Message
from engine.hl7.profiles import load_profiles, select_profile
from engine.rules.ruleset import load_ruleset
from engine.yamlfile import YamlProblem
from tests.conftest import Pipeline, hl7

ROOT = Path(__file__).resolve().parents[2]
VARIANT = "example-accession-in-orc3"


def seg(name: str, **fields: str) -> str:
    size = max((int(key[1:]) for key in fields), default=0)
    values = [name] + [""] * size
    for key, value in fields.items():
        values[int(key[1:])] = value
    return "|".join(values)


def message(*segments: str, code: str = "ORM^O01", app: str = "RIS") -> Message:
    return Message("\r".join((f"MSH|^~\\&|{app}|GENHOSP|SWF|RAD|20250304083000||{code}|C1|P|2.3.1",) + segments))


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(folder: Path) -> list[tuple[str, int, str]]:
    with pytest.raises(ExceptionGroup) as caught:
        load_profiles(folder)
    found = []
    for problem in caught.value.exceptions:
        assert isinstance(problem, YamlProblem), problem
        found.append((Path(problem.file).name, problem.line, problem.reason))
    return found


def one_profile(tmp_path: Path, text: str) -> Profile:
    write(tmp_path / "p", "t.yaml", "name: t\n" + textwrap.dedent(text).lstrip("\n"))
    return load_profiles(tmp_path / "p")["t"]


def first_step(profile: Profile, msg: Message):
    return profile.step_contexts(msg, profile.groups(msg)[0])[0]


# -- the shipped profiles ---------------------------------------------------------------------------
def test_shipped_profiles_load() -> None:
    profiles = load_profiles(ROOT / "profiles")
    assert {"ihe-v231-orm", "ihe-v251-omi", VARIANT} <= set(profiles)
    v231, v251 = profiles["ihe-v231-orm"], profiles["ihe-v251-omi"]
    assert (v231.step_segment, v251.step_segment) == ("OBR", "IPC")
    assert "ORM^O01" in v231.messages and "ADT^A08" in v231.messages
    assert v251.messages == ["OMI^O23", "OMG^O19"]
    assert profiles[VARIANT].extends == "ihe-v231-orm"


@pytest.mark.parametrize("code, expected", [
    ("ORM^O01", "ihe-v231-orm"), ("ADT^A08", "ihe-v231-orm"), ("ADT^A40", "ihe-v231-orm"),
    ("OMI^O23", "ihe-v251-omi"), ("OMG^O19", "ihe-v251-omi"), ("ORU^R01", None),
])
def test_select_profile_by_message_type(code: str, expected: str | None) -> None:
    profile = select_profile(load_profiles(ROOT / "profiles"), code)
    assert (profile.name if profile else None) == expected


def test_a_rule_names_the_profile_whatever_the_message_type() -> None:
    profiles = load_profiles(ROOT / "profiles")
    assert select_profile(profiles, "ORM^O01", VARIANT).name == VARIANT
    assert select_profile(profiles, "OMI^O23", "ihe-v231-orm").name == "ihe-v231-orm"
    assert select_profile(profiles, "ORM^O01", "no-such") is None


def test_a_variant_is_never_chosen_by_message_type_even_when_it_lists_it(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    shutil.copy(ROOT / "profiles" / "ihe-v231-orm.yaml", folder)
    write(folder, "aaa.yaml", "extends: ihe-v231-orm\nmessages: [ORM^O01]\n")  # sorts first
    profiles = load_profiles(folder)
    assert select_profile(profiles, "ORM^O01").name == "ihe-v231-orm"
    assert profiles["aaa"].messages == ["ORM^O01"]


ORM = (seg("PID", f3="PAT1^^^GENHOSP", f5="DOE^JANE"),
       seg("ORC", f1="NW", f2="PLC-1^HIS", f3="ACC77^RIS", f7="1^once^^20250304100000^^R"),
       seg("OBR", f1="1", f2="PLC-1^HIS", f3="ACC77^RIS", f4="CTCHEST^CT chest^99RAD", f18="OBR18ACC",
           f20="SPS-1", f21="MR^Magnetic resonance", f24="CT"))


def test_the_shipped_variant_reads_accession_from_orc3_and_modality_from_obr21() -> None:
    profiles = load_profiles(ROOT / "profiles")
    msg = message(*ORM)
    base, variant = profiles["ihe-v231-orm"], profiles[VARIANT]
    base_step, variant_step = first_step(base, msg), first_step(variant, msg)
    assert base.request_attributes(base_step)["AccessionNumber"] == "OBR18ACC"
    assert variant.request_attributes(variant_step)["AccessionNumber"] == "ACC77"
    assert base.step_attributes(base_step)["Modality"] == "CT"
    assert variant.step_attributes(variant_step)["Modality"] == "MR"
    # everything else is inherited
    assert variant.patient_attributes(msg) == base.patient_attributes(msg)
    assert variant.step_attributes(variant_step)["ScheduledProcedureStepID"] == "SPS-1"
    assert variant.modality_map == base.modality_map and variant.title != base.title


def test_a_rule_with_profile_uses_the_variant(tmp_path: Path) -> None:
    routes = write(tmp_path / "routes", "10-site.yaml", f"""
        rules:
          - name: site RIS uses its variant
            when: {{MSH-3.1: SITE_RIS}}
            profile: {VARIANT}
        """).parent
    profiles = load_profiles(ROOT / "profiles")
    ruleset = load_ruleset(routes, set(profiles))
    for app, accession in (("SITE_RIS", "ACC77"), ("RIS", "OBR18ACC")):
        msg = message(*ORM, app=app)
        profile = select_profile(profiles, msg.message_code, ruleset.evaluate(msg).profile)
        assert profile.request_attributes(first_step(profile, msg))["AccessionNumber"] == accession


def test_a_rule_with_profile_uses_the_variant_end_to_end(tmp_path: Path, make_pipeline) -> None:
    routes = write(tmp_path / "routes", "10-site.yaml", f"""
        rules:
          - name: site RIS uses its variant
            when: {{MSH-3.1: SITE_RIS}}
            profile: {VARIANT}
            mode: broker
        """).parent
    pipeline: Pipeline = make_pipeline(routes=routes)
    result = pipeline.send(hl7("MSH|^~\\&|SITE_RIS|GENHOSP|SWF|RAD|20250304083000||ORM^O01|V1|P|2.3.1", *ORM))
    assert (result.ack_code, result.status) == ("AA", "applied"), result.reason
    [journal] = pipeline.read("SELECT rule FROM journal")
    assert journal["rule"] == "site RIS uses its variant"
    [procedure] = pipeline.read("SELECT * FROM requested_procedures")
    assert procedure["accession_number"] == "ACC77"
    [step] = pipeline.read("SELECT * FROM scheduled_steps")
    assert (step["modality"], step["sps_id"]) == ("MR", "SPS-1")
    other = pipeline.send(hl7("MSH|^~\\&|RIS|GENHOSP|SWF|RAD|20250304083000||ORM^O01|V2|P|2.3.1",
                              *(s.replace("ACC77", "ACC78").replace("PLC-1", "PLC-2").replace("SPS-1", "SPS-2")
                                for s in ORM)))
    assert other.ack_code == "AA"
    accessions = [r["accession_number"] for r in pipeline.read("SELECT * FROM requested_procedures ORDER BY id")]
    assert accessions == ["ACC77", "OBR18ACC"]


# -- extends -----------------------------------------------------------------------------------------
BASE = """
name: base
title: The base
messages: [ORM^O01]
coding_schemes: {L: 99LOCAL}
modality_map: {NMR: MR}
truncate: false
patient:
  PatientName: {path: PID-5, type: xpn}
  PatientSex: {path: PID-8, type: sex}
request:
  AccessionNumber: OBR-18
step:
  Modality: OBR-24
  ScheduledPerformingPhysicianName: {path: OBR-34, type: xcn}
"""


def test_extends_merges_sections_key_by_key_and_null_removes(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    write(folder, "base.yaml", BASE)
    write(folder, "variant.yaml", """
        extends: base
        modality_map: {MRT: MR}
        truncate: true
        request:
          AccessionNumber: ORC-3.1
          RequestedProcedureID: OBR-19
        step:
          ScheduledPerformingPhysicianName: null
        """)
    write(folder, "grandchild.yaml", """
        name: grandchild
        extends: variant
        patient:
          PatientSex: PID-8
        """)
    profiles = load_profiles(folder)
    variant, grandchild = profiles["variant"], profiles["grandchild"]
    assert [(r.keyword, r.paths) for r in variant.request] == [("AccessionNumber", ("ORC-3.1",)),
                                                              ("RequestedProcedureID", ("OBR-19",))]
    assert [r.keyword for r in variant.step] == ["Modality"]                 # removed by null
    assert [r.keyword for r in variant.patient] == ["PatientName", "PatientSex"]  # inherited
    assert variant.modality_map == {"NMR": "MR", "MRT": "MR"}               # merged
    assert variant.coding_schemes == {"L": "99LOCAL"}                       # inherited
    assert variant.messages == ["ORM^O01"] and variant.truncate is True     # inherited / replaced
    assert variant.title == "variant"                                       # title is not inherited
    assert [(r.keyword, r.kind) for r in grandchild.patient] == [("PatientName", "xpn"), ("PatientSex", "text")]
    assert [r.keyword for r in grandchild.request] == ["AccessionNumber", "RequestedProcedureID"]
    assert select_profile(profiles, "ORM^O01").name == "base"


def test_extends_problems(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    write(folder, "a.yaml", "title: A\nextends: b\n")
    write(folder, "b.yaml", "title: B\nextends: a\n")
    write(folder, "c.yaml", "extends: nope\n")
    found = problems(folder)
    assert ("b.yaml", 2, "circular extends: a -> b -> a") in found
    assert ("c.yaml", 1, "extends unknown profile 'nope'; known: a, b, c") in found
    assert len(found) == 2


def test_null_is_only_allowed_in_a_variant(tmp_path: Path) -> None:
    write(tmp_path / "p", "t.yaml", "request:\n  AccessionNumber: null\n")
    [(file, line, reason)] = problems(tmp_path / "p")
    assert (file, line) == ("t.yaml", 2) and "null only removes an inherited attribute" in reason


# -- validation ---------------------------------------------------------------------------------------
def test_every_problem_with_its_line(tmp_path: Path) -> None:
    write(tmp_path / "p", "bad.yaml", """
        name: bad
        messages: [ORM^O01, ORM-O01]
        step_segment: obr
        order_control: ORC1
        truncat: true
        patient:
          PatientsName: PID-5
          PatientSex: PID8
          PatientBirthDate: {path: PID-7, type: datetime}
          PatientAddress: {path: [PID-11, 5], type: joined}
          PatientWeight: {type: obx_weight}
          Allergies: {path: AL1-3.2, type: list, every_segment: "yes"}
        request:
          AccessionNumber: {type: text}
          RequestedProcedureCodeSequence: {path: OBR-4.1, type: codes, components: [1, 2]}
          RequestedProcedureDescription: {path: OBR-4.2, max_length: sixty, lenght: 64}
          IssueDateOfImagingServiceRequest: {path: ORC-9, type: date, every_segment: true}
          RequestingPhysician: {path: OBR-16, type: xcn, match: {codes: "1"}}
        step:
          Modality: 24
        """)
    found = problems(tmp_path / "p")
    by_line = {}
    for file, line, reason in found:
        assert file == "bad.yaml"
        by_line.setdefault(line, []).append(reason)
    assert sorted(by_line) == [2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20]
    assert by_line[2] == ["'ORM-O01' is not a message type such as ORM^O01"]
    assert by_line[3] == ["step_segment must be a segment name such as ORC, OBR, IPC"]
    assert by_line[4][0].startswith("not a field path: 'ORC1'")
    assert by_line[5][0].startswith("unknown profile key 'truncat'")
    assert by_line[7] == ["'PatientsName' is not a DICOM attribute keyword"]
    assert by_line[8][0].startswith("not a field path: 'PID8'")
    assert by_line[9][0].startswith("unknown type 'datetime'")
    assert by_line[10][0].startswith("a field path must be text")
    assert by_line[11][0].startswith("type obx_weight needs match")
    assert by_line[12] == ["every_segment must be true or false"]
    assert by_line[14] == ["AccessionNumber needs a path"]
    assert sorted(by_line[15]) == ["components must be three component numbers [value, meaning, scheme], e.g. [4, 5, 6]",
                                   "type codes reads a whole field: use OBR-4, not OBR-4.1"]
    assert sorted(r.split(" ")[0] for r in by_line[16]) == ["max_length", "unknown"]
    assert by_line[17][0].startswith("every_segment works with type")
    assert by_line[18] == ["match is only for obx_weight/obx_size"]
    assert by_line[20] == ["Modality: expected a path, a list of paths or a mapping"]


def test_bad_types_do_not_crash_the_loader(tmp_path: Path) -> None:
    write(tmp_path / "p", "t.yaml", """
        messages: ORM^O01
        truncate: maybe
        modality_map: [NMR, MR]
        request:
          AccessionNumber: {path: OBR-18, type: [text]}
          RequestedProcedureID: {path: 19}
        """)
    assert [line for _, line, _ in problems(tmp_path / "p")] == [1, 2, 3, 5, 6]


def test_yaml_syntax_error_and_duplicate_key_lines(tmp_path: Path) -> None:
    write(tmp_path / "p", "a.yaml", "request:\n  AccessionNumber: OBR-18\n  AccessionNumber: IPC-1.1\n")
    write(tmp_path / "p", "b.yaml", "request:\n  AccessionNumber: [OBR-18\nstep: {}\n")
    found = problems(tmp_path / "p")
    assert found[0] == ("a.yaml", 3, "YAML syntax: duplicate key 'AccessionNumber'")
    assert found[1][:2] == ("b.yaml", 3) and found[1][2].startswith("YAML syntax:")


def test_duplicate_names_and_doubly_claimed_message_types(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write(folder, "a.yaml", "name: same\nmessages: [ORM^O01]\n")
    write(folder, "b.yaml", "name: same\n")
    write(folder, "c.yaml", "messages: [ADT^A01,\n  ORM^O01]\n")
    found = problems(folder)
    assert found[0][:2] == ("b.yaml", 1) and found[0][2].startswith("profile name 'same' also defined in")
    assert found[1] == ("a.yaml", 2, "ORM^O01 is already mapped by base profile 'c'; make this profile extend it "
                                     "and name it from a rule, or drop ORM^O01 here")
    assert len(found) == 2


def test_missing_folder(tmp_path: Path) -> None:
    assert problems(tmp_path / "nowhere") == [("nowhere", 0, "profiles folder does not exist")]


def test_a_yml_profile_is_loaded_and_hidden_files_ignored(tmp_path: Path) -> None:
    write(tmp_path / "p", "site.yml", "messages: [ORM^O01]\nrequest: {AccessionNumber: OBR-18}\n")
    write(tmp_path / "p", ".#site.yaml", "broken: [\n")
    assert list(load_profiles(tmp_path / "p")) == ["site"]


# -- types --------------------------------------------------------------------------------------------
TYPES = """
patient:
  PatientName: {path: PID-5, type: xpn}
  PatientBirthDate: {path: PID-7, type: date}
  PatientSex: {path: PID-8, type: sex}
  PatientAddress: {path: PID-11, type: joined}
  ReferringPhysicianName: {path: PV1-8, type: xcn}
  PregnancyStatus: {path: PV1-15, type: pregnancy}
  PatientWeight: {type: obx_weight, match: {codes: "29463-7|3141-9", text: BODY WEIGHT}}
  PatientSize: {type: obx_size, match: {codes: "8302-2", text: BODY HEIGHT}}
  Allergies: {path: AL1-3.2, type: list, every_segment: true}
  AdmissionID: [PV1-19.1, PID-18.1]
  EthnicGroup: {path: PID-22, type: number}
request:
  RequestedProcedurePriority: {path: ORC-7.6, type: priority}
  IssueTimeOfImagingServiceRequest: {path: ORC-9, type: time}
  RequestedProcedureCodeSequence: {path: OBR-4, type: codes}
  ReasonForRequestedProcedureCodeSequence: {path: OBR-31, type: code}
  MedicalAlerts: {path: OBR-13, type: list}
step:
  ScheduledProcedureStepStartDateTime: {path: ORC-7.4, type: ts}
  ScheduledProtocolCodeSequence: {path: OBR-4, type: codes, components: [4, 5, 6]}
  Modality: OBR-24
"""

TYPES_MESSAGE = (
    seg("PID", f3="P1", f5="SMITH^JOHN^^^^^A~MÜLLER^ANNA^MARIA^^DR.^^L", f7="19780214", f8="A",
        f11="1 MAIN ST^^TOWN^^12345^^", f18="ACCT9", f22="12.5"),
    seg("PV1", f1="1", f2="O", f8="2345^GREY^MEREDITH^^^DR", f15="B6"),
    seg("OBX", f1="1", f2="NM", f3="29463-7^Body weight^LN", f5="72500", f6="g"),
    seg("OBX", f1="2", f2="NM", f3="X^BODY HEIGHT^L", f5="172", f6="cm"),
    seg("AL1", f1="1", f3="^Iodine"), seg("AL1", f1="2", f3="^Latex"),
    seg("ORC", f1="NW", f2="P1", f7="1^once^^20250304100000^^S", f9="202503040815"),
    seg("OBR", f1="1", f4="CTCHEST^CT chest^L^P1^Protocol one^99RAD~CTABD^CT abdomen^99RAD",
        f13="ALLERGY~DIABETES", f24="NMR", f31="R1^Reason one^99RAD"),
)


def test_types_convert_as_documented(tmp_path: Path) -> None:
    profile = one_profile(tmp_path, "coding_schemes: {L: 99LOCAL}\nmodality_map: {NMR: MR}\n" + TYPES)
    msg = message(*TYPES_MESSAGE)
    patient = profile.patient_attributes(msg)
    assert patient == {
        "PatientName": "MÜLLER^ANNA^MARIA^DR.",               # the legal-name repetition
        "PatientBirthDate": "19780214",
        "PatientSex": "O",
        "PatientAddress": "1 MAIN ST^^TOWN^^12345",
        "ReferringPhysicianName": "GREY^MEREDITH^^DR",
        "PregnancyStatus": 3,
        "PatientWeight": "72.5",
        "PatientSize": "1.72",
        "Allergies": ["Iodine", "Latex"],
        "AdmissionID": "ACCT9",                               # PV1-19.1 empty: the next path
        "EthnicGroup": "12.5",
    }
    step = first_step(profile, msg)
    assert profile.request_attributes(step) == {
        "RequestedProcedurePriority": "STAT",
        "IssueTimeOfImagingServiceRequest": "0815",
        "RequestedProcedureCodeSequence": [
            {"CodeValue": "CTCHEST", "CodeMeaning": "CT chest", "CodingSchemeDesignator": "99LOCAL"},
            {"CodeValue": "CTABD", "CodeMeaning": "CT abdomen", "CodingSchemeDesignator": "99RAD"}],
        "ReasonForRequestedProcedureCodeSequence": {"CodeValue": "R1", "CodeMeaning": "Reason one",
                                                    "CodingSchemeDesignator": "99RAD"},
        "MedicalAlerts": ["ALLERGY", "DIABETES"],
    }
    assert profile.step_attributes(step) == {
        "ScheduledProcedureStepStartDateTime": "20250304T100000",
        "ScheduledProtocolCodeSequence": [{"CodeValue": "P1", "CodeMeaning": "Protocol one",
                                           "CodingSchemeDesignator": "99RAD"}],  # 2nd repetition has no .4-.6
        "Modality": "MR",                                                         # through modality_map
    }


def test_empty_and_explicit_null_values_leave_the_attribute_out(tmp_path: Path) -> None:
    profile = one_profile(tmp_path, TYPES)
    msg = message(seg("PID", f3="P1", f5='""', f7="", f8="U", f22='""'), seg("PV1", f1="1", f15="B1"))
    assert profile.patient_attributes(msg) == {}


def test_a_value_that_is_no_number_is_a_mapping_error_at_the_path(tmp_path: Path) -> None:
    profile = one_profile(tmp_path, TYPES)
    with pytest.raises(MappingError) as caught:
        profile.patient_attributes(message(seg("PID", f3="P1", f22="n/a")))
    assert (caught.value.path, caught.value.reason) == ("PID-22", "not an HL7 number (NM): 'n/a'")


def test_too_long_values_are_refused_unless_truncated(tmp_path: Path) -> None:
    msg = message(seg("ORC", f1="NW"), seg("OBR", f1="1", f18="ACCESSION-NUMBER-TOO-LONG"))
    strict = one_profile(tmp_path / "a", "request: {AccessionNumber: OBR-18}\n")
    with pytest.raises(MappingError) as caught:
        strict.request_attributes(first_step(strict, msg))
    assert caught.value.path == "OBR-18" and "longer than 16" in caught.value.reason
    cut = one_profile(tmp_path / "b", "request: {AccessionNumber: {path: OBR-18, truncate: true}}\n")
    assert cut.request_attributes(first_step(cut, msg)) == {"AccessionNumber": "ACCESSION-NUMBER"}
    everywhere = one_profile(tmp_path / "c", "truncate: true\nrequest: {AccessionNumber: OBR-18}\n")
    assert everywhere.request_attributes(first_step(everywhere, msg))["AccessionNumber"] == "ACCESSION-NUMBER"
    longer = one_profile(tmp_path / "d", "request: {AccessionNumber: {path: OBR-18, max_length: 0}}\n")
    assert longer.request_attributes(first_step(longer, msg))["AccessionNumber"] == "ACCESSION-NUMBER-TOO-LONG"


def test_a_bad_date_is_a_mapping_error_at_the_path(tmp_path: Path) -> None:
    profile = one_profile(tmp_path, "patient: {PatientBirthDate: {path: [PID-7], type: date}}\n")
    with pytest.raises(MappingError) as caught:
        profile.patient_attributes(message(seg("PID", f3="P1", f7="20251340")))
    assert caught.value.path == "PID-7"


# -- where a path is looked up ------------------------------------------------------------------------
def test_each_step_reads_its_own_step_segment_and_the_segments_after_it() -> None:
    profile = load_profiles(ROOT / "profiles")["ihe-v231-orm"]
    msg = message(seg("PID", f3="P1", f5="DOE"),
                  seg("ORC", f1="NW", f2="A"), seg("OBR", f1="1", f18="ACC-A", f20="SPS-A", f24="CT"),
                  seg("ZDS", f1="1.2.3.1^RIS^Application^DICOM"),
                  seg("ORC", f1="NW", f2="B"), seg("OBR", f1="1", f18="ACC-B1", f20="SPS-B1", f24="MR"),
                  seg("ZDS", f1="1.2.3.2^RIS^Application^DICOM"),
                  seg("OBR", f1="2", f18="ACC-B2", f20="SPS-B2", f24="NMR"),
                  seg("ZDS", f1="1.2.3.3^RIS^Application^DICOM"))
    groups = profile.groups(msg)
    assert len(groups) == 2
    seen = []
    for group in groups:
        for context in profile.step_contexts(msg, group):
            request, step = profile.request_attributes(context), profile.step_attributes(context)
            seen.append((request["AccessionNumber"], request["StudyInstanceUID"], step["ScheduledProcedureStepID"],
                         step["Modality"]))
    assert seen == [("ACC-A", "1.2.3.1", "SPS-A", "CT"), ("ACC-B1", "1.2.3.2", "SPS-B1", "MR"),
                    ("ACC-B2", "1.2.3.3", "SPS-B2", "MR")]


def test_v251_steps_per_ipc_read_the_obr_before_them() -> None:
    profile = load_profiles(ROOT / "profiles")["ihe-v251-omi"]
    msg = message(seg("PID", f3="P1", f5="DOE"), seg("ORC", f1="NW", f2="A"), seg("TQ1", f1="1", f7="20250304100000"),
                  seg("OBR", f1="1", f4="CTCHEST^CT chest^L", f24="CT"),
                  seg("IPC", f1="ACC1", f2="RP1", f3="1.2.3", f4="SPS1", f5="CT", f9="CT1_AE"),
                  seg("IPC", f1="ACC1", f2="RP1", f3="1.2.3", f4="SPS2", f5="MR", f9="MR1_AE"),
                  code="OMI^O23")
    contexts = profile.step_contexts(msg, profile.groups(msg)[0])
    steps = [profile.step_attributes(c) for c in contexts]
    assert [(s["ScheduledProcedureStepID"], s["Modality"], s["ScheduledStationAETitle"]) for s in steps] == [
        ("SPS1", "CT", "CT1_AE"), ("SPS2", "MR", "MR1_AE")]
    assert all(s["ScheduledProcedureStepStartDateTime"] == "20250304T100000" for s in steps)
    assert all(profile.request_attributes(c)["RequestedProcedureDescription"] == "CT chest" for c in contexts)


def test_patient_attributes_read_the_first_occurrence_in_the_message() -> None:
    profile = load_profiles(ROOT / "profiles")["ihe-v231-orm"]
    msg = message(seg("PID", f3="P1", f5="FIRST^ONE"), seg("PID", f3="P2", f5="SECOND^TWO"))
    assert profile.patient_attributes(msg)["PatientName"] == "FIRST^ONE"


def test_the_profile_readme_names_every_type() -> None:
    from engine.hl7.mapping import KINDS

    readme = (ROOT / "profiles" / "README.md").read_text(encoding="utf-8")
    assert [kind for kind in sorted(KINDS) if f"| `{kind}`" not in readme] == []


def test_every_shipped_profile_is_documented() -> None:
    readme = (ROOT / "profiles" / "README.md").read_text(encoding="utf-8")
    assert [name for name in load_profiles(ROOT / "profiles") if f"### `{name}`" not in readme] == []
