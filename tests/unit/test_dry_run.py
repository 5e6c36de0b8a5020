"""The rules dry-run (engine/workflow/dry_run.py) and the rules listing/check (engine/rules/describe.py):
the same messages routed by the shipped rules and by an edited copy, and exactly the changed ones reported."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from engine.config import Config
from engine.hl7.profiles import load_profiles
from engine.rules.describe import check_rules, describe_rules
from engine.rules.ruleset import Rule, RuleSet, load_ruleset, load_ruleset_texts
from engine.workflow.dry_run import (ReplayMessage, RoutedDecision, RulesProbe, StepRoute, compare, differences,
                                     journal_time)

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "profiles")
RUNNING = load_ruleset(ROOT / "routes")


def orm(number: int, modality: str, sender: str = "RIS", processing: str = "P") -> bytes:
    return (f"MSH|^~\\&|{sender}|H|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|C{number}|{processing}|2.3.1\r"
            f"PID|1||PAT{number}^^^H^MR||DOE^JOHN\r"
            f"ORC|NW|P{number}|F{number}||SC||1^once^^20250304100000^^R\r"
            f"OBR|1|P{number}|F{number}|X^Exam^99RAD||||||||||||||A{number}|RP{number}|SPS{number}||||{modality}"
            ).encode()


def adt(number: int, trigger: str) -> bytes:
    return (f"MSH|^~\\&|HIS|H|SWF_ENGINE|RADIOLOGY|20250304083000||ADT^{trigger}|C{number}|P|2.3.1\r"
            f"EVN|{trigger}\rPID|1||PAT{number}^^^H^MR||DOE^JOHN").encode()


MESSAGES = [ReplayMessage(raw, number) for number, raw in enumerate(
    [orm(1, "CT"), orm(2, "MR"), orm(3, "US"), orm(4, "CT", "HIS"), adt(5, "A08"), adt(6, "A31"), b"garbage"], 1)]


def candidate(tmp_path: Path, old: str, new: str, file: str = "20-rooms.yaml") -> Path:
    folder = tmp_path / "candidate"
    if not folder.exists():
        shutil.copytree(ROOT / "routes", folder)
    text = (folder / file).read_text()
    assert old in text
    (folder / file).write_text(text.replace(old, new))
    return folder


def run(rules_dir: Path, messages=MESSAGES, limit: int = 100):
    config = Config()
    return compare(messages, RulesProbe(config, PROFILES, RUNNING),
                   RulesProbe(config, PROFILES, load_ruleset(rules_dir, set(PROFILES))), limit)


def test_the_same_rules_change_nothing() -> None:
    report = run(ROOT / "routes")
    assert (report.messages, report.changed, report.differences, report.by_kind) == (7, 0, (), {})


def test_a_room_change_reports_exactly_the_orders_of_that_modality(tmp_path: Path) -> None:
    report = run(candidate(tmp_path, "station_ae: MR1_AE", "station_ae: MR2_AE"))
    [diff] = report.differences
    assert (diff.journal_id, diff.control_id, diff.message_code, diff.kinds) == (2, "C2", "ORM^O01", ("station",))
    assert diff.today.steps == (StepRoute("A2", "SPS2", "MR1_AE", "MR1", "MRROOM1", "MR"),)
    assert diff.candidate.steps == (StepRoute("A2", "SPS2", "MR2_AE", "MR1", "MRROOM1", "MR"),)
    assert diff.today.places == (f"{ROOT}/routes/10-senders.yaml:19", f"{ROOT}/routes/20-rooms.yaml:16")
    assert diff.candidate.places[1].endswith("candidate/20-rooms.yaml:16")
    assert (report.changed, report.by_kind) == (1, {"station": 1})


def test_mode_outbound_reject_and_drop_are_told_apart(tmp_path: Path) -> None:
    folder = candidate(tmp_path, "    mode: filler\n    outbound: [his, archive]", "    mode: broker\n    outbound: [his]",
                       "10-senders.yaml")
    candidate(tmp_path, "message: [ADT^A31, ADT^A28]", "message: [ADT^A31, ADT^A28, ADT^A08]", "10-senders.yaml")
    candidate(tmp_path, "MSH-11: T", "PID-3.1: PAT3", "10-senders.yaml")
    report = run(folder)
    kinds = {diff.control_id: diff.kinds for diff in report.differences}
    assert kinds == {"C3": ("reject", "mode", "station", "outbound", "rules"),
                     "C4": ("mode", "outbound"),
                     "C5": ("drop", "outbound", "rules")}
    c3 = next(diff for diff in report.differences if diff.control_id == "C3")
    assert (c3.today.outcome, c3.candidate.outcome) == ("accepted", "rejected")
    assert c3.candidate.reject == "AR: processing ID T (training) is not accepted here"
    assert c3.candidate.summary() == "rejected AR: processing ID T (training) is not accepted here"
    assert report.by_kind == {"reject": 1, "drop": 1, "mode": 2, "station": 1, "outbound": 3, "rules": 2}


def test_a_rule_moved_by_an_edit_above_it_decides_the_same(tmp_path: Path) -> None:
    folder = candidate(tmp_path, "rules:\n", "rules:\n  - name: a new first rule for another sender\n"
                                             "    when: {MSH-3: NOBODY}\n    drop: true\n\n")
    report = run(folder)
    assert report.changed == 0, report.differences


def test_only_the_first_differences_are_kept_but_all_are_counted(tmp_path: Path) -> None:
    folder = candidate(tmp_path, "station_ae: CT1_AE", "station_ae: CT9_AE")
    many = [ReplayMessage(orm(number, "CT"), number) for number in range(1, 41)]
    many.append(ReplayMessage(orm(99, "CT"), 99, recorded_status="duplicate"))
    report = run(folder, many, limit=5)
    assert (report.messages, report.changed, len(report.differences), report.truncated, report.skipped) == (
        40, 40, 5, True, 1)
    assert [diff.journal_id for diff in report.differences] == [1, 2, 3, 4, 5]
    document = json.loads(json.dumps(report.to_json()))
    assert (document["changed"], document["truncated"], document["skipped_duplicates"]) == (40, True, 1)
    assert document["differences"][0]["candidate"]["steps"][0]["station_ae"] == "CT9_AE"


def test_differences_compare_every_field_but_file_lines() -> None:
    today = RoutedDecision("accepted", ("R",), ("a.yaml:1",), "broker", outbound=("ris",))
    assert differences(today, dataclasses.replace(today, places=("a.yaml:9",))) == ()
    assert differences(today, dataclasses.replace(today, outbound=("ris", "archive"))) == ("outbound",)
    assert differences(today, dataclasses.replace(today, mode="filler", rules=("S",))) == ("mode", "rules")
    assert differences(today, dataclasses.replace(today, problem="OBR-4 empty")) == ("refusal",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        today.mode = "filler"  # type: ignore[misc]


def test_journal_times_are_written_as_the_journal_writes_them() -> None:
    from engine.store.timestamps import now_iso

    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")
    assert stamp.match(now_iso()) and stamp.match(journal_time("2026-12-07T08:00+01:00"))
    assert journal_time("2026-12-07T07:00+00:00") == journal_time("2026-12-07T08:00+01:00")
    assert journal_time("2026-12-07")[:19] == "2026-12-07T00:00:00"   # a date alone: local midnight
    assert journal_time("") == ""
    with pytest.raises(ValueError):
        journal_time("yesterday")


def test_the_rules_are_listed_with_their_file_and_line() -> None:
    described = describe_rules(RUNNING)
    assert len(described) == len(RUNNING.rules)
    for rule in described:
        file, line = rule.where.rsplit(":", 1)
        assert Path(file).read_text().splitlines()[int(line) - 1].strip() == f"- name: {rule.name}"
    ct = next(rule for rule in described if rule.name == "CT orders to CT room 1")
    assert ct.conditions == ("message: [ORM^O01, OMI^O23, OMG^O19]", "modality: CT")
    assert ct.actions == ("schedule: station_ae=CT1_AE station_name=CT1 location=CTROOM1 modality=CT",)
    keep = next(rule for rule in described if rule.name.startswith("the RIS already chose"))
    assert keep.conditions == ("IPC-9: not null",)
    assert described[1].actions == ("mode: broker", "outbound: ris, archive", "continue")


def test_posted_rules_are_checked_like_a_folder() -> None:
    texts = {path.name: path.read_text() for path in (ROOT / "routes").glob("*.yaml")}
    check = check_rules(texts, set(PROFILES))
    assert (check.ok, check.rules, check.files) == (True, len(RUNNING.rules), 3)
    assert [rule.name for rule in load_ruleset_texts(texts).rules] == [rule.name for rule in RUNNING.rules]
    texts["20-rooms.yaml"] = texts["20-rooms.yaml"].replace("modality: CT}", "modality: ct}")
    texts["notes.txt"] = "x"
    problems = check_rules(texts).to_json()["problems"]
    assert problems == [{"file": "notes.txt", "line": 0,
                         "reason": "not a rules file name (NAME.yaml or NAME.yml, not hidden)"}]
    del texts["notes.txt"]
    [problem] = check_rules(texts).problems
    assert (problem.file, problem.line) == ("20-rooms.yaml", 14)
    assert "schedule.modality 'ct'" in problem.reason


def test_a_message_the_candidate_cannot_route_is_reported_and_the_run_goes_on() -> None:
    def broken(value: str) -> bool:
        raise ZeroDivisionError("a bug in a matcher")
    failing = RuleSet([Rule("boom", "x.yaml", 3, [("MSH-3", broken)])], {}, ["x.yaml"])
    config = Config()
    report = compare(MESSAGES[:3], RulesProbe(config, PROFILES, RUNNING), RulesProbe(config, PROFILES, failing))
    assert (report.messages, report.changed) == (3, 3)
    assert {diff.candidate.problem for diff in report.differences} == {
        "internal error: ZeroDivisionError: a bug in a matcher"}
