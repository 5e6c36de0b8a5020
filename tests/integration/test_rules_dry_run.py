"""`swf rules dry-run` against traffic a real engine received over MLLP: a candidate rules set with one room
changed lists exactly the orders of that room, a broken candidate is refused with file:line, the journal is
read and never written; `swf rules list` names each rule's file:line."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from tests.conftest import ROOT, run_swf


def orm(number: int, modality: str, processing: str = "P") -> str:
    return (f"MSH|^~\\&|RIS|H|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|DRY{number}|{processing}|2.3.1\n"
            f"PID|1||PAT{number}^^^H^MR||DOE^JOHN\n"
            f"ORC|NW|P{number}|F{number}||SC||1^once^^20250304100000^^R\n"
            f"OBR|1|P{number}|F{number}|X^Exam^99RAD||||||||||||||ACC{number}|RP{number}|SPS{number}||||{modality}\n")


def traffic(tmp_path: Path) -> Path:
    path = tmp_path / "traffic.hl7"
    path.write_text("\n".join([orm(1, "CT"), orm(2, "MR"), orm(3, "US"), orm(4, "MR"), orm(5, "CT", "T"),
                               "MSH|^~\\&|HIS|H|SWF_ENGINE|RADIOLOGY|20250304083000||ADT^A08|DRY6|P|2.3.1\n"
                               "EVN|A08\nPID|1||PAT1^^^H^MR||DOE^JANE\n"]))
    return path


def candidate(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "candidate"
    shutil.copytree(ROOT / "routes", folder)
    rooms = folder / "20-rooms.yaml"
    assert old in rooms.read_text()
    rooms.write_text(rooms.read_text().replace(old, new))
    return folder


def journal(data_dir: Path) -> list[tuple]:
    with sqlite3.connect(data_dir / "swf.sqlite") as db:
        return db.execute("SELECT id, received_at, control_id, status, ack_code, ack, reason, rule, raw"
                          " FROM journal ORDER BY id").fetchall()


def table_sizes(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(data_dir / "swf.sqlite") as db:
        names = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0] for name in names}


def test_a_changed_room_lists_exactly_its_orders_and_the_journal_stays_as_it_was(start_engine, tmp_path: Path) -> None:
    engine = start_engine()
    run_swf("replay", str(traffic(tmp_path)), "--to", engine.address, "--no-progress")
    before, sizes = journal(engine.data_dir), table_sizes(engine.data_dir)
    assert [(row[2], row[3]) for row in before] == [("DRY1", "applied"), ("DRY2", "applied"), ("DRY3", "applied"),
                                                    ("DRY4", "applied"), ("DRY5", "rejected"), ("DRY6", "applied")]
    folder = candidate(tmp_path, "station_ae: MR1_AE", "station_ae: MR2_AE")
    data = ("--data-dir", str(engine.data_dir), "--routes", str(engine.routes))
    shown = run_swf("rules", "dry-run", "--candidate", str(folder), *data, "--no-progress")
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if "DRY" in line]
    assert [line.split()[:4] for line in rows] == [["2", "DRY2", "ORM^O01", "station"],
                                                   ["4", "DRY4", "ORM^O01", "station"]]
    assert all("MR@MR1_AE(MR1/MRROOM1)" in line and "MR@MR2_AE(MR1/MRROOM1)" in line for line in rows)
    assert "6 message(s) read, 2 changed (station 2), 4 unchanged" in shown.stdout
    report = json.loads(run_swf("rules", "dry-run", "--candidate", str(folder), *data, "--json").stdout)
    assert [(d["control_id"], d["recorded_status"], d["today"]["steps"][0]["station_ae"],
             d["candidate"]["steps"][0]["station_ae"]) for d in report["differences"]] == [
        ("DRY2", "applied", "MR1_AE", "MR2_AE"), ("DRY4", "applied", "MR1_AE", "MR2_AE")]
    assert report["differences"][0]["candidate"]["places"][-1] == f"{folder}/20-rooms.yaml:16"
    received = [row[1] for row in before]
    ranged = json.loads(run_swf("rules", "dry-run", "--candidate", str(folder), *data, "--json",
                                "--since", received[1], "--until", received[3]).stdout)
    assert (ranged["messages"], [d["control_id"] for d in ranged["differences"]]) == (2, ["DRY2"])
    later = run_swf("rules", "dry-run", "--candidate", str(folder), *data, "--since", "2999-01-01")
    assert (later.returncode, later.stdout.strip()) == (0, "no message in that range")
    same = run_swf("rules", "dry-run", "--candidate", str(engine.routes), *data)
    assert "no change: the 6 message(s) are decided the same" in same.stdout
    assert journal(engine.data_dir) == before          # read only: rows, statuses, ACKs and bytes unchanged
    assert table_sizes(engine.data_dir) == sizes                # no order, event or outbox row either
    order = run_swf("orders", "ACC2", "--data-dir", str(engine.data_dir)).stdout
    assert "MR on MR1_AE" in order and "MR2_AE" not in order


def test_a_broken_candidate_is_refused_with_file_and_line(tmp_path: Path) -> None:
    folder = candidate(tmp_path, "modality: [MR, NMR]\n    schedule:", "modality: [MR, NMR]\n    shedule:")
    messages = traffic(tmp_path)
    result = run_swf("rules", "dry-run", "--candidate", str(folder), "--messages", str(messages))
    assert result.returncode == 1
    assert f"{folder}/20-rooms.yaml:20: unknown rule key 'shedule'" in result.stderr
    assert result.stdout == ""
    (folder / "20-rooms.yaml").write_text("rules:\n  - name: x\n    when: {MSH-3: [RIS\n")
    result = run_swf("rules", "dry-run", "--candidate", str(folder), "--messages", str(messages))
    assert result.returncode == 1 and f"{folder}/20-rooms.yaml:" in result.stderr and "YAML syntax" in result.stderr


def test_posted_messages_need_no_database_and_rules_list_names_file_and_line(tmp_path: Path) -> None:
    folder = candidate(tmp_path, "name: ultrasound orders", "name: US orders")
    result = run_swf("rules", "dry-run", "--candidate", str(folder), "--messages", str(traffic(tmp_path)),
                     "--data-dir", str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if "DRY" in line] == ["DRY3"]
    assert "changed (rules 1)" in result.stdout      # renamed: the journal would record another rule name
    listed = run_swf("rules", "list").stdout.splitlines()
    ct = next(line for line in listed if "CT orders to CT room 1" in line)
    assert "routes/20-rooms.yaml:10" in ct and "modality: CT -> schedule: station_ae=CT1_AE" in ct
    assert (ROOT / "routes/20-rooms.yaml").read_text().splitlines()[9].strip() == "- name: CT orders to CT room 1"
