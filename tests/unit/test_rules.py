"""The routing rules language (routes/README.md): matching, evaluation, validation with file:line, CLI."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.hl7.message import Message
from engine.hl7.profiles import load_profiles
from engine.rules.ruleset import RuleSet, load_ruleset
from engine.rules.watcher import load_checked
from engine.yamlfile import YamlProblem, load_yaml

ROOT = Path(__file__).resolve().parents[2]


# -- helpers -----------------------------------------------------------------------------------------
def seg(name: str, **fields: str) -> str:
    """A segment with fields by number: seg("OBR", f1="1", f24="CT")."""
    size = max((int(key[1:]) for key in fields), default=0)
    values = [name] + [""] * size
    for key, value in fields.items():
        values[int(key[1:])] = value
    return "|".join(values)


def msh(app: str = "RIS", facility: str = "GENHOSP", code: str = "ORM^O01", version: str = "2.3.1",
        processing: str = "P") -> str:
    return f"MSH|^~\\&|{app}|{facility}|SWF_ENGINE|RADIOLOGY|20250304083000||{code}|C1|{processing}|{version}"


def message(*segments: str, **header: str) -> Message:
    return Message("\r".join((msh(**header),) + segments))


def order(modality: str = "CT", *more_obr: str, **header: str) -> Message:
    obrs = [seg("OBR", f1="1", f4="CTCHEST^CT chest^99RAD", f24=modality)]
    obrs += [seg("OBR", f1=str(n + 2), f24=m) for n, m in enumerate(more_obr)]
    return message(seg("PID", f3="PAT1^^^GENHOSP~ALT-1^^^OTHER&2.999.1&ISO^PI", f5="DOE^JANE"),
                   seg("ORC", f1="NW", f2="PLC-1"), *obrs, **header)


def write(folder: Path, text: str, name: str = "10-test.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return folder


def rules(tmp_path: Path, text: str) -> RuleSet:
    return load_ruleset(write(tmp_path / "routes", text))


def problems(folder: Path, profile_names: set[str] | None = None) -> list[tuple[str, int, str]]:
    """(file name, line, reason) of every problem; fails when the folder loads."""
    with pytest.raises(ExceptionGroup) as caught:
        if profile_names is None:
            load_ruleset(folder)
        else:
            load_checked(folder, profile_names)
    found = []
    for problem in caught.value.exceptions:
        assert isinstance(problem, YamlProblem), problem
        where = f"{problem.file}:{problem.line}" if problem.line else problem.file  # 0: the folder itself
        assert str(problem) == f"{where}: {problem.reason}"
        found.append((Path(problem.file).name, problem.line, problem.reason))
    return found


def one_problem(tmp_path: Path, text: str, profile_names: set[str] | None = None) -> tuple[str, int, str]:
    found = problems(write(tmp_path / "routes", text), profile_names)
    assert len(found) == 1, found
    return found[0]


def matches(tmp_path: Path, condition: str, msg: Message) -> bool:
    ruleset = rules(tmp_path, f"""
        rules:
          - name: probe
            when: {condition}
        """)
    return ruleset.evaluate(msg).rules == ["probe"]


# -- matchers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("condition, app, expected", [
    ("{MSH-3: RIS}", "RIS", True),
    ("{MSH-3: RIS}", "RIS2", False),
    ("{MSH-3: RIS}", "ris", False),                     # case-sensitive
    ("{MSH-3: [HIS, RIS]}", "RIS", True),               # a list: any of
    ("{MSH-3: [HIS, CPOE]}", "RIS", False),
    ("{MSH-3: RIS_*}", "RIS_NORTH", True),              # * any text
    ("{MSH-3: RIS_*}", "RIS_", True),                   # ... also none
    ("{MSH-3: RIS_*}", "XRIS_NORTH", False),            # the whole value must match
    ("{MSH-3: 'RIS?'}", "RIS7", True),                    # ? exactly one character
    ("{MSH-3: 'RIS?'}", "RIS77", False),
    ("{MSH-3: 'A[1]*'}", "A[1]X", True),                # [ is literal, not a character class
    ("{MSH-3: 'A[1]*'}", "A1X", False),
    ("{MSH-3: 'A.*'}", "AB", False),                    # . is literal in a wildcard
    ("{MSH-3: 're:^HIS_'}", "HIS_WARD3", True),
    ("{MSH-3: 're:^HIS_'}", "XHIS_WARD3", False),
    ("{MSH-3: 're:WARD\\d'}", "HIS_WARD3", True),       # searched, not anchored
    ("{MSH-3: 're:(?i)^his$'}", "HIS", True),
    ("{MSH-3: {not: RIS}}", "HIS", True),
    ("{MSH-3: {not: RIS}}", "RIS", False),
    ("{MSH-3: {not: [RIS, 'HIS_*']}}", "HIS_A", False),
    ("{MSH-3: {not: [RIS, 'HIS_*']}}", "PACS", True),
    ("{MSH-3: null}", "", True),                        # null = empty
    ("{MSH-3: null}", "RIS", False),
    ("{MSH-3: {not: null}}", "RIS", True),
    ("{MSH-3: {not: null}}", "", False),
    ("{MSH-3: [null, RIS]}", "", True),
])
def test_matcher_kinds(tmp_path: Path, condition: str, app: str, expected: bool) -> None:
    assert matches(tmp_path, condition, order(app=app)) is expected


def test_null_matches_a_missing_segment_and_an_empty_field(tmp_path: Path) -> None:
    msg = order()  # no IPC segment, OBR-18 empty
    assert matches(tmp_path, "{IPC-9: null, OBR-18: null}", msg)
    assert not matches(tmp_path / "2", "{IPC-9: {not: null}}", msg)
    assert not matches(tmp_path / "3", "{OBR-24: null}", msg)


def test_message_and_version_conditions(tmp_path: Path) -> None:
    adt = message(seg("PID", f3="P1"), code="ADT^A08^ADT_A01", version="2.5.1")
    assert matches(tmp_path / "a", "{message: ADT^A08, version: 2.5.1}", adt)  # MSH-9.3 is not part of it
    assert not matches(tmp_path / "b", "{message: ADT^A08^ADT_A01}", adt)
    assert not matches(tmp_path / "c", "{message: ADT^A08, version: 2.3.1}", adt)
    assert matches(tmp_path / "d", "{message: 'ADT^*'}", adt)
    no_trigger = message(code="ORM")
    assert matches(tmp_path / "e", "{message: ORM}", no_trigger)


def test_field_paths_with_repetitions_components_and_subcomponents(tmp_path: Path) -> None:
    msg = order(facility="GENHOSP^1.2.3^ISO")
    assert matches(tmp_path / "a", "\n              PID-3.1: PAT1\n              PID-3[2].1: ALT-1\n"
                                   "              PID-3[2].4: OTHER", msg)          # block style: no quotes needed
    assert matches(tmp_path / "b", "{'PID-3[2].4.2': 2.999.1, 'PID-3[2].5': PI}", msg)  # flow style: quoted
    assert not matches(tmp_path / "c", "{PID-3.4: OTHER}", msg)              # first repetition: GENHOSP
    assert not matches(tmp_path / "d", "{MSH-4: GENHOSP}", msg)              # whole field, as sent
    assert matches(tmp_path / "e", "{MSH-4: GENHOSP^1.2.3^ISO, MSH-4.1: GENHOSP}", msg)


def test_a_condition_looks_at_the_first_occurrence_of_a_segment(tmp_path: Path) -> None:
    msg = order("CT", "MR")
    assert matches(tmp_path / "a", "{OBR-24: CT}", msg)
    assert not matches(tmp_path / "b", "{OBR-24: MR}", msg)


def test_values_are_decoded_and_trimmed_before_comparing(tmp_path: Path) -> None:
    msg = message(seg("OBR", f1="1", f4="X^CT \\T\\ MR^L", f24=" CT "))
    assert matches(tmp_path / "a", "{OBR-4.2: CT & MR, OBR-24: CT}", msg)


def test_plain_yaml_values_stay_text(tmp_path: Path) -> None:
    """0123 is not octal 83, NO is not false, 2.50 is not 2.5 (YAML 1.1 would turn them into those)."""
    msg = message(seg("PID", f3="0123", f8="NO"), seg("ZZZ", f1="2.50", f2="1:30"), facility="0123")
    assert matches(tmp_path / "a", "{MSH-4: 0123, PID-3: 0123, PID-8: NO, ZZZ-1: 2.50, ZZZ-2: 1:30}", msg)
    assert not matches(tmp_path / "b", "{PID-3: 83}", msg)
    quoted = message(seg("ZZZ", f1="true"))
    assert matches(tmp_path / "c", "{ZZZ-1: 'true'}", quoted)


def test_a_rule_without_when_matches_every_message(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: everything
            mode: filler
        """)
    assert ruleset.evaluate(message(code="ADT^A01")).mode == "filler"
    assert ruleset.evaluate(order()).rules == ["everything"]


# -- evaluation -----------------------------------------------------------------------------------------
def test_first_match_wins(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: not this
            when: {OBR-24: MR}
            schedule: {station_ae: MR1_AE}
          - name: first
            when: {OBR-24: CT}
            schedule: {station_ae: CT1_AE}
          - name: second
            when: {MSH-3: RIS}
            schedule: {station_ae: OTHER_AE}
            mode: filler
        """)
    decision = ruleset.evaluate(order("CT"))
    assert decision.rules == ["first"]
    assert decision.schedule == {"station_ae": "CT1_AE"}
    assert decision.mode == ""


def test_no_matching_rule_gives_an_empty_decision(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: MR only
            when: {OBR-24: MR}
            mode: broker
        """)
    decision = ruleset.evaluate(order("CT"))
    assert (decision.rules, decision.mode, decision.schedule, decision.reject, decision.drop) == ([], "", {}, {}, "")


def test_files_are_evaluated_in_file_name_order_yaml_and_yml_together(tmp_path: Path) -> None:
    folder = tmp_path / "routes"
    write(folder, "rules: [{name: from 20, mode: broker}]\n", "20-late.yaml")
    write(folder, "rules: [{name: from 05, mode: filler}]\n", "05-early.yml")
    write(folder, "rules: [{name: from 10, mode: broker}]\n", "10-middle.yaml")
    ruleset = load_ruleset(folder)
    assert [Path(f).name for f in ruleset.files] == ["05-early.yml", "10-middle.yaml", "20-late.yaml"]
    assert ruleset.evaluate(order()).rules == ["from 05"]


def test_hidden_and_other_files_are_ignored(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", "rules: [{name: real, mode: broker}]\n")
    write(folder, "rules: [{name: broken\n", ".#10-test.yaml")   # an editor's lock file
    write(folder, "rules: [{name: backup, mode: filler}]\n", "10-test.yaml~")
    ruleset = load_ruleset(folder)
    assert [rule.name for rule in ruleset.rules] == ["real"]


def test_continue_accumulates_and_later_rules_override(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", """
        destinations:
          archive: {address: "pacs.example:2575", sends: procedure}
          ris: {address: "ris.example:2576"}
        rules:
          - name: sender
            when: {MSH-3: RIS}
            mode: broker
            profile: ihe-v231-orm
            schedule: {station_ae: DEFAULT_AE, location: MAIN}
            outbound: archive
            continue: true
          - name: not matching
            when: {MSH-3: HIS}
            mode: filler
            continue: true
          - name: room
            when: {OBR-24: CT}
            schedule: {station_ae: CT1_AE, modality: CT}
            outbound: [archive, ris]
            continue: true
          - name: last
            mode: filler
          - name: never reached
            schedule: {station_ae: NEVER}
        """)
    decision = load_ruleset(folder).evaluate(order("CT"))
    assert decision.rules == ["sender", "room", "last"]
    assert decision.mode == "filler"                     # overridden by the later rule
    assert decision.profile == "ihe-v231-orm"            # kept: no later rule names one
    assert decision.schedule == {"station_ae": "CT1_AE", "location": "MAIN", "modality": "CT"}
    assert decision.outbound == ["archive", "ris"]       # accumulated, each once
    assert decision.rule_names == "sender, room, last"


def test_reject_stops_evaluation(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: mode
            mode: broker
            continue: true
          - name: training
            when: {MSH-11: T}
            reject: {code: AR, reason: no training messages}
          - name: after
            mode: filler
        """)
    decision = ruleset.evaluate(order(processing="T"))
    assert decision.rules == ["mode", "training"]
    assert decision.reject == {"code": "AR", "reason": "no training messages"}
    assert decision.reject_rule == "training"
    assert decision.mode == "broker"
    assert ruleset.evaluate(order()).rules == ["mode", "after"]


def test_reject_as_text_means_ae(tmp_path: Path) -> None:
    decision = rules(tmp_path, "rules: [{name: r, reject: unknown facility}]\n").evaluate(order())
    assert decision.reject == {"code": "AE", "reason": "unknown facility"}


def test_reject_stops_even_with_continue_on_earlier_rules_and_drop_stops_too(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: person updates
            when: {message: [ADT^A31, ADT^A28]}
            drop: person-level updates are not used
          - name: quiet
            when: {message: ADT^A29}
            drop: true
          - name: not dropped
            when: {message: ADT^A30}
            drop: false
          - name: after
            mode: filler
        """)
    dropped = ruleset.evaluate(message(code="ADT^A31"))
    assert (dropped.rules, dropped.drop, dropped.mode) == (["person updates"], "person-level updates are not used", "")
    assert ruleset.evaluate(message(code="ADT^A29")).drop == 'dropped by rule "quiet"'
    kept = ruleset.evaluate(message(code="ADT^A30"))
    assert kept.drop == "" and kept.rules == ["not dropped"]   # matched, stops, but does not drop


def test_set_writes_every_occurrence_and_escapes(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: rewrite
            set:
              PV1-3.1: RAD
              OBR-21: "A^B"
              OBR-24: US
              ORC-2: null
        """)
    msg = order("CT", "MR")
    msg_with_pv1 = Message(msg.text.replace("\rORC", "\rPV1|1|O\rORC"))
    ruleset.evaluate(msg_with_pv1)
    assert msg_with_pv1.get("PV1-3.1") == "RAD"
    assert [msg_with_pv1.get("OBR-24", i) for i in msg_with_pv1.segment_indexes("OBR")] == ["US", "US"]
    assert msg_with_pv1.get("OBR-21") == "A^B"                 # one value, not two components
    assert msg_with_pv1.get("OBR-21.1") == "A^B"
    assert msg_with_pv1.get("ORC-2") == ""


def test_map_translates_each_occurrence_on_its_own(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: HIS codes
            map:
              OBR-24: {NMR: MR, CAT: CT}
              OBR-21: {"": NONE}
        """)
    msg = order("NMR", "CT", "CAT", "XA")
    ruleset.evaluate(msg)
    assert [msg.get("OBR-24", i) for i in msg.segment_indexes("OBR")] == ["MR", "CT", "CT", "XA"]
    assert [msg.get("OBR-21", i) for i in msg.segment_indexes("OBR")] == ["NONE"] * 4


def test_later_rules_see_what_set_and_map_changed(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: translate
            map: {OBR-24: {NMR: MR}}
            continue: true
          - name: CT room
            when: {OBR-24: NMR}
            schedule: {station_ae: WRONG}
          - name: MR room
            when: {OBR-24: MR}
            schedule: {station_ae: MR1_AE}
        """)
    decision = ruleset.evaluate(order("NMR"))
    assert decision.rules == ["translate", "MR room"]
    assert decision.schedule == {"station_ae": "MR1_AE"}


# -- validation: every problem with its file and line ---------------------------------------------------------
def test_unknown_rule_key_at_its_line(tmp_path: Path) -> None:
    file, line, reason = one_problem(tmp_path, """
        rules:
          - name: typo
            when: {OBR-24: CT}
            shedule: {station_ae: CT1_AE}
        """)
    assert (file, line) == ("10-test.yaml", 4)
    assert "unknown rule key 'shedule'" in reason and "schedule" in reason


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert one_problem(tmp_path, """
        rule:
          - name: x
        """)[:2] == ("10-test.yaml", 1)


def test_bad_field_path_in_when_and_set(tmp_path: Path) -> None:
    found = problems(write(tmp_path / "routes", """
        rules:
          - name: paths
            when:
              OBR24: CT
              pid-3: X
            set:
              PID-0: X
        """))
    assert [(line, reason.split(":")[0]) for _, line, reason in found] == [
        (4, "condition not a field path"), (5, "condition not a field path"), (7, "not a field path")]


def test_set_and_map_may_not_touch_delimiters_or_the_control_id(tmp_path: Path) -> None:
    found = problems(write(tmp_path / "routes", """
        rules:
          - name: x
            set: {MSH-10: NEW}
            map: {MSH-2: {a: b}}
        """))
    assert [(line, "may not change" in reason) for _, line, reason in found] == [(3, True), (4, True)]


def test_bad_regular_expression(tmp_path: Path) -> None:
    file, line, reason = one_problem(tmp_path, """
        rules:
          - name: regex
            when:
              MSH-3: RIS
              MSH-4: 're:GEN(HOSP'
        """)
    assert (file, line) == ("10-test.yaml", 5)
    assert reason.startswith("bad regular expression 'GEN(HOSP'")


def test_bad_regular_expression_in_a_multi_line_list_points_at_the_item(tmp_path: Path) -> None:
    _, line, reason = one_problem(tmp_path, """
        rules:
          - name: regex
            when:
              MSH-4:
                - GENHOSP
                - 're:[unclosed'
        """)
    assert line == 6 and "bad regular expression" in reason


def test_bad_mode(tmp_path: Path) -> None:
    assert one_problem(tmp_path, """
        rules:
          - name: mode
            mode: brokr
        """) == ("10-test.yaml", 3, "mode must be broker or filler, not 'brokr'")


def test_unknown_destination_at_the_outbound_line(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", "destinations:\n  archive: {address: 'pacs:2575'}\n", "05-dest.yaml")
    write(folder, """
        rules:
          - name: send
            when: {MSH-3: RIS}
            outbound: [archive, archiv]
        """)
    assert problems(folder) == [("10-test.yaml", 4, "rule 'send' names unknown destination 'archiv'")]


def test_destination_defined_twice(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", "destinations:\n  archive: {address: 'a:1'}\n", "05-a.yaml")
    write(folder, "destinations:\n  other: {}\n  archive: {address: 'b:2'}\n", "06-b.yaml")
    [(file, line, reason)] = problems(folder)
    assert (file, line) == ("06-b.yaml", 3)
    assert reason == f"destination 'archive' already defined at {folder / '05-a.yaml'}:2"


def test_unknown_profile_through_load_checked(tmp_path: Path) -> None:
    text = """
        rules:
          - name: site RIS
            when: {MSH-3: SITE}
            mode: broker
            profile: ihe-v231
        """
    file, line, reason = one_problem(tmp_path, text, {"ihe-v231-orm", "ihe-v251-omi"})
    assert (file, line) == ("10-test.yaml", 5)
    assert reason.startswith("rule 'site RIS' names unknown profile 'ihe-v231'; known: ihe-v231-orm")
    assert load_checked(write(tmp_path / "ok", text.replace("ihe-v231\n", "ihe-v231-orm\n")), {"ihe-v231-orm"})


def test_unknown_profile_is_reported_together_with_other_problems(tmp_path: Path) -> None:
    found = problems(write(tmp_path / "routes", """
        rules:
          - name: a
            profile: nope
          - name: b
            mode: nope
        """), {"ihe-v231-orm"})
    assert sorted(line for _, line, _ in found) == [3, 5]


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    file, line, reason = one_problem(tmp_path, """
        rules:
          - name: ok
            when: {MSH-3: RIS}
          - name: broken
            when: {MSH-3: [RIS, HIS}
        """)
    assert (file, line) == ("10-test.yaml", 5)
    assert reason.startswith("YAML syntax:")


def test_duplicate_key_line(tmp_path: Path) -> None:
    file, line, reason = one_problem(tmp_path, """
        rules:
          - name: dup
            when:
              OBR-24: CT
              MSH-3: RIS
              OBR-24: MR
        """)
    assert (file, line, reason) == ("10-test.yaml", 6, "YAML syntax: duplicate key 'OBR-24'")


def test_schedule_problems(tmp_path: Path) -> None:
    found = problems(write(tmp_path / "routes", """
        rules:
          - name: s
            schedule:
              station_ae: THIS_AE_IS_TOO_LONG
              station_name: CT1
              modality: ct
              start: "20250304100000"
              location: null
        """))
    assert [(line, reason.split(" ")[0:2]) for _, line, reason in found] == [
        (4, ["schedule.station_ae", "longer"]), (6, ["schedule.modality", "'ct':"]), (7, ["unknown", "schedule"]),
        (8, ["schedule.location", "must"])]
    assert "cannot set the start" in found[2][2]


def test_reject_drop_and_continue_problems(tmp_path: Path) -> None:
    found = problems(write(tmp_path / "routes", """
        rules:
          - name: no reason
            reject: {code: AE}
          - name: bad code
            reject: {code: XX, reason: r}
          - name: extra key
            reject: {code: AE, reason: r, text: t}
          - name: null drop
            drop: null
          - name: both
            reject: r
            drop: true
          - name: continue after reject
            reject: r
            continue: true
          - name: bad continue
            continue: yes
        """))
    assert [line for _, line, _ in found] == [3, 5, 7, 9, 10, 15, 17]
    reasons = [reason for _, _, reason in found]
    assert reasons[0].startswith("reject needs a reason")
    assert reasons[1] == "reject code must be AE or AR, not 'XX'"
    assert reasons[2].startswith("unknown reject key 'text'")
    assert reasons[3].startswith("drop must be true, false or a reason")
    assert reasons[4] == "a rule cannot both reject and drop"
    assert "cannot apply" in reasons[5]
    assert reasons[6] == "continue must be true or false"


def test_condition_value_problems(tmp_path: Path) -> None:
    found = problems(write(tmp_path / "routes", """
        rules:
          - name: c
            when:
              OBR-24: []
              MSH-3: true
              MSH-4: {nott: X}
          - name: d
            when: [MSH-3]
        """))
    assert [line for _, line, _ in found] == [4, 5, 6, 8]
    assert "never matches" in found[0][2] and "true/false" in found[1][2] and "'not'" in found[2][2]


def test_structure_problems(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", "rules:\n  name: not a list\n", "a.yaml")
    write(folder, "rules:\n  - just text\n  - {when: {MSH-3: RIS}}\n", "b.yaml")
    write(folder, "- a list\n", "c.yaml")
    write(folder, "", "d.yaml")                        # empty: fine
    found = problems(folder)
    assert [(file, line) for file, line, _ in found] == [("a.yaml", 1), ("b.yaml", 2), ("b.yaml", 3), ("c.yaml", 1)]
    assert "'rules' must be a list" in found[0][2]
    assert "rule has no 'name'" in found[2][2]


def test_all_problems_of_all_files_are_reported_together(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", "rules: [{name: a, mode: x}]\n", "10-a.yaml")
    write(folder, "rules:\n  - name: b\n    when: {OBR-24: 're:('}\n", "20-b.yaml")
    write(folder, "rules: [\n", "30-c.yaml")
    assert [(file, line) for file, line, _ in problems(folder)] == [
        ("10-a.yaml", 1), ("20-b.yaml", 3), ("30-c.yaml", 2)]


def test_missing_folder(tmp_path: Path) -> None:
    assert problems(tmp_path / "nowhere") == [("nowhere", 0, "rules folder does not exist")]


def test_yaml_merge_keys_and_anchors_work(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, """
        rules:
          - name: CT room 1
            when: {OBR-24: CT}
            schedule: &ct1 {station_ae: CT1_AE, station_name: CT1, location: CTROOM1}
          - name: CT room 1 for CTA
            when: {OBR-24: CTA}
            schedule:
              <<: *ct1
              modality: CT
        """)
    assert ruleset.evaluate(order("CTA")).schedule == {
        "station_ae": "CT1_AE", "station_name": "CT1", "location": "CTROOM1", "modality": "CT"}


def test_text_loader_keeps_booleans_and_null() -> None:
    data = load_yaml("x.yaml", "a: [true, False, ~, null, '', 0123, yes, 2.50]\n", text_scalars=True)
    assert data["a"] == [True, False, None, None, "", "0123", "yes", "2.50"]
    assert load_yaml("x.yaml", "a: 0123\n")["a"] == 83  # the config keeps YAML 1.1 numbers


# -- the shipped routes ----------------------------------------------------------------------------------
def shipped() -> RuleSet:
    return load_checked(ROOT / "routes", set(load_profiles(ROOT / "profiles")))


def test_shipped_routes_load_with_the_shipped_profiles() -> None:
    ruleset = shipped()
    assert [Path(f).name for f in ruleset.files] == ["05-destinations.yaml", "10-senders.yaml", "20-rooms.yaml"]
    assert len(ruleset.rules) == 11
    assert sorted(ruleset.destinations) == ["archive", "his", "ris"]


def test_shipped_routes_decide_as_documented() -> None:
    ruleset = shipped()
    ct = ruleset.evaluate(order("CT", app="RIS"))
    assert ct.rules == ["RIS orders (broker mode)", "CT orders to CT room 1"]
    assert (ct.mode, ct.schedule) == ("broker", {"station_ae": "CT1_AE", "station_name": "CT1",
                                                 "location": "CTROOM1", "modality": "CT"})
    mr = ruleset.evaluate(order("NMR", app="HIS_WARD3"))
    assert (mr.mode, mr.schedule["station_ae"], mr.schedule["modality"]) == ("filler", "MR1_AE", "MR")
    omi = message(seg("ORC", f1="NW"), seg("OBR", f1="1", f24="CT"), seg("IPC", f1="ACC1", f9="CT2_AE"),
                  app="RIS_NORTH", code="OMI^O23", version="2.5.1")
    kept = ruleset.evaluate(omi)
    assert kept.rules == ["RIS orders (broker mode)", "the RIS already chose the station (IPC-9 valued) - keep it"]
    assert kept.schedule == {}
    a31 = ruleset.evaluate(message(code="ADT^A31", app="HIS"))
    assert a31.drop == "person-level updates are not used"
    training = ruleset.evaluate(order("CT", processing="T"))
    assert training.reject["code"] == "AR" and training.reject_rule.startswith("test messages")
    mg = ruleset.evaluate(order("MG"))
    assert (mg.rules, mg.schedule) == (["RIS orders (broker mode)"], {})
    adt = ruleset.evaluate(message(code="ADT^A08", app="HIS"))
    assert adt.rules == ["patient updates and merges go to the archive too"] and adt.outbound == ["archive"]
    assert ruleset.evaluate(message(code="ADT^A04", app="HIS")).rules == []
    entered = ruleset.evaluate(order("CT", app="SWF_API"))  # POST /api/v1/orders and the console
    assert entered.rules == ["orders entered over the HTTP API or console (filler mode)", "CT orders to CT room 1"]
    assert (entered.mode, entered.outbound) == ("filler", ["ris", "archive"])


# -- swf rules check ----------------------------------------------------------------------------------
def rules_check(folder: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "rules", "check", str(folder),
                           "--profiles", str(ROOT / "profiles")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_check_passes_the_shipped_routes() -> None:
    result = rules_check(ROOT / "routes")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"ok: 11 rules in 3 files, 3 destinations, \d+ profiles\n", result.stdout)
    assert result.stderr == ""


def test_cli_check_lists_every_problem_as_file_line_reason_and_exits_1(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", """
        rules:
          - name: a
            mode: brokr
          - name: b
            when: {OBR24: CT}
            profile: no-such-profile
        """)
    write(folder, "rules: [{name: c\n", "20-broken.yaml")
    result = rules_check(folder)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1] == "4 problem(s)"
    file = str(folder / "10-test.yaml")
    assert lines[:-1] == [
        f"{file}:3: mode must be broker or filler, not 'brokr'",
        f"{file}:5: condition not a field path: 'OBR24' (expected e.g. PID-3, PID-3.1, PID-3[2].4.1); "
        "or use 'message' / 'version'",
        f"{folder / '20-broken.yaml'}:2: YAML syntax: flow mapping '{{' opened at :1 is not closed, found the end "
        "of the file at :2",
        f"{file}:6: rule 'b' names unknown profile 'no-such-profile'; known: "
        + ", ".join(sorted(load_profiles(ROOT / "profiles"))),
    ]


def test_cli_check_missing_folder_exits_1(tmp_path: Path) -> None:
    result = rules_check(tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{tmp_path / 'nowhere'}: rules folder does not exist", "1 problem(s)"]


def test_cli_check_names_where_an_unclosed_bracket_was_opened_and_where_it_showed(tmp_path: Path) -> None:
    folder = write(tmp_path / "routes", """
        # rooms
        rules:
          - name: RIS orders
            when:
              MSH-3: RIS
            mode: broker

          - name: CT room
            when:
              message: ORM^O01
              OBR-24: CT
            schedule: {station_ae: CT1_AE, station_name: CT1,
                       location: CTROOM1

          - name: MR room
            when:
              OBR-24: MR
        """)
    assert (folder / "10-test.yaml").read_text().splitlines()[11].lstrip().startswith("schedule: {")
    result = rules_check(folder)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (f"{folder / '10-test.yaml'}:15: YAML syntax: flow mapping '{{' opened "
                                             "at :12 is not closed, found ':' at :15")


def test_cli_check_missing_profiles_folder_names_no_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", "rules", "check", str(ROOT / "routes"),
                             "--profiles", str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"{tmp_path / 'nowhere'}: profiles folder does not exist"
