"""Hot reload of routes/ (RulesHolder): good edits apply, broken edits are refused and the old rules stay."""
from __future__ import annotations

import logging
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from engine.hl7.message import Message
from engine.rules.watcher import RulesHolder

ROOT = Path(__file__).resolve().parents[2]
PROFILES = {"ihe-v231-orm", "ihe-v251-omi"}

CT_RULES = """
rules:
  - name: CT room
    when:
      OBR-24: CT
    schedule: {station_ae: CT1_AE}
"""


def ct_order() -> Message:
    return Message("MSH|^~\\&|RIS|GENHOSP|SWF|RAD|20250304||ORM^O01|C1|P|2.3.1\r"
                   "ORC|NW|PLC-1\rOBR|1" + "|" * 23 + "CT")


def station(holder: RulesHolder) -> str:
    return holder().evaluate(ct_order()).schedule.get("station_ae", "")


def write(folder: Path, text: str, name: str = "20-rooms.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    folder = tmp_path / "routes"
    folder.mkdir()
    write(folder, CT_RULES)
    return folder


def test_nothing_changed_nothing_reloaded(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    first = holder.current
    assert holder.reload_if_changed() is False
    assert holder.current is first and station(holder) == "CT1_AE"


def test_a_good_edit_applies(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    write(routes, CT_RULES.replace("CT1_AE", "CT2_AE"))
    assert holder.reload_if_changed() is True
    assert station(holder) == "CT2_AE"
    assert holder.last_problems == []


def test_an_edit_that_keeps_size_and_modification_time_is_seen(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    path = routes / "20-rooms.yaml"
    before = os.stat(path)
    write(routes, CT_RULES.replace("CT1_AE", "CT9_AE"))             # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))      # same mtime (coarse clock, cp -p ...)
    assert holder.reload_if_changed() is True
    assert station(holder) == "CT9_AE"


def test_a_broken_edit_is_refused_with_file_line_reason_and_the_old_rules_stay(routes: Path, caplog) -> None:
    holder = RulesHolder(routes, PROFILES)
    path = write(routes, CT_RULES.replace("CT1_AE", "CT2_AE") + "    mode: brokr\n")
    with caplog.at_level(logging.ERROR, logger="engine.rules.watcher"):
        assert holder.reload_if_changed() is False
    assert [(p.file, p.line, p.reason) for p in holder.last_problems] == [
        (str(path), 6, "mode must be broker or filler, not 'brokr'")]
    assert station(holder) == "CT1_AE"                              # the last good rules are in force
    assert f"rules refused: {path}:6: mode must be broker or filler" in caplog.text
    assert "keeping the last good rules (1 rules)" in caplog.text
    # not retried (nor logged again) until the folder changes again
    assert holder.reload_if_changed() is False
    assert len(holder.last_problems) == 1 and station(holder) == "CT1_AE"
    # fixing the file applies it and clears the problems
    write(routes, CT_RULES.replace("CT1_AE", "CT2_AE") + "    mode: broker\n")
    assert holder.reload_if_changed() is True
    assert station(holder) == "CT2_AE" and holder().evaluate(ct_order()).mode == "broker"
    assert holder.last_problems == []


def test_a_broken_file_refuses_the_whole_edit(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    write(routes, CT_RULES.replace("CT1_AE", "CT2_AE"))              # good on its own ...
    write(routes, "rules:\n  - name: x\n    when: {MSH-3: [RIS}\n", "30-new.yaml")   # ... but not this one
    assert holder.reload_if_changed() is False
    assert [(Path(p.file).name, p.line) for p in holder.last_problems] == [("30-new.yaml", 3)]
    assert station(holder) == "CT1_AE"


def test_a_rule_naming_an_unknown_profile_is_refused(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    write(routes, CT_RULES + "    profile: ihe-v231\n")
    assert holder.reload_if_changed() is False
    [problem] = holder.last_problems
    assert (Path(problem.file).name, problem.line) == ("20-rooms.yaml", 6)
    assert "unknown profile 'ihe-v231'" in problem.reason
    write(routes, CT_RULES + "    profile: ihe-v231-orm\n")
    assert holder.reload_if_changed() is True
    assert holder().evaluate(ct_order()).profile == "ihe-v231-orm"


def test_added_and_removed_files_are_seen(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    write(routes, "rules:\n  - name: first\n    schedule: {station_ae: EARLY_AE}\n", "10-early.yml")
    assert holder.reload_if_changed() is True
    assert station(holder) == "EARLY_AE"
    (routes / "10-early.yml").unlink()
    assert holder.reload_if_changed() is True
    assert station(holder) == "CT1_AE"


def test_editor_lock_and_backup_files_do_not_trigger_a_reload(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    write(routes, "rules: [broken\n", ".#20-rooms.yaml")
    write(routes, "rules: [broken\n", "20-rooms.yaml~")
    assert holder.reload_if_changed() is False
    assert holder.last_problems == []


def test_a_removed_folder_keeps_the_rules(routes: Path) -> None:
    holder = RulesHolder(routes, PROFILES)
    shutil.rmtree(routes)
    assert holder.reload_if_changed() is False
    assert holder.last_problems[0].reason == "rules folder does not exist"
    assert station(holder) == "CT1_AE"


def test_a_broken_folder_at_start_raises_the_problems(routes: Path) -> None:
    write(routes, "rules: [{name: a, mode: x}]\n")
    with pytest.raises(ExceptionGroup) as caught:
        RulesHolder(routes, PROFILES)
    assert [p.line for p in caught.value.exceptions] == [1]


def test_the_shipped_routes_reload_after_a_copy(tmp_path: Path) -> None:
    folder = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", folder)
    holder = RulesHolder(folder, PROFILES)
    assert len(holder().rules) == 11
    rooms = folder / "20-rooms.yaml"
    rooms.write_text(rooms.read_text().replace("station_ae: CT1_AE", "station_ae: CT7_AE"))
    assert holder.reload_if_changed() is True
    assert station(holder) == "CT7_AE"
