"""``swf explain ACCESSION`` over the wire: orders replayed over MLLP into a real engine, then every worklist
attribute of the step with where it came from: the HL7 field and the profile line, the rule and its file:line
(a room rule's schedule, a rule's ``set``), the profile's modality_map, a generated identifier, a default,
an operator's reschedule; and what changed since (the rules) is said, not hidden.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from tests.conftest import ROOT, EngineProcess, run_swf

RIS_ORDER = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207080000||ORM^O01|EXPL-RIS-1|P|2.3.1\n"
             "PID|1||PAT7001^^^GENHOSP^MR||KOWALSKI^JAN||19700101|M\n"
             "ORC|NW|P-EX1^HIS|F-EX1^RIS||SC||1^once^^20261207110000^^R\n"
             "OBR|1|P-EX1^HIS|F-EX1^RIS|CTHEAD^CT head^99RAD||||||||||||||ACC-EX1|RP-EX1|SPS-EX1|||"
             "|CT||||||STRETCHER\n\n")
# A bare HIS placer order (filler mode): no accession, RP or SPS ID, no start; modality sent as CAT.
HIS_ORDER = ("MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207081500||ORM^O01|EXPL-HIS-1|P|2.3.1\n"
             "PID|1||PAT7002^^^GENHOSP^MR||NOWAK^EWA||19800101|F\n"
             "ORC|NW|P-EX2^HIS|||SC\n"
             "OBR|1|P-EX2^HIS||CTABD^CT abdomen^99RAD" + "|" * 20 + "CAT\n\n")
TRANSPORT_RULE = """rules:
  - name: RIS transport is always on foot
    when:
      MSH-3: RIS
    set:
      OBR-30: WALK
    continue: true
"""


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def rows(output: str) -> dict[str, str]:
    """ATTRIBUTE keyword -> the rest of its table line."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^([A-Za-z]+) \([0-9A-F]{4},[0-9A-F]{4}\)\s+(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def start(start_engine, tmp_path: Path) -> tuple[EngineProcess, Path, Path]:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    (routes / "15-transport.yaml").write_text(TRANSPORT_RULE)
    config = tmp_path / "engine.yaml"
    config.write_text("orders:\n  default_station_ae: UNASSIGNED\n")
    engine = start_engine("--config", str(config), routes=routes)
    orders = tmp_path / "orders.hl7"
    orders.write_text(RIS_ORDER + HIS_ORDER)
    replay = run_swf("replay", str(orders), "--to", engine.address, "--no-progress", timeout=60)
    assert replay.returncode == 0 and "sent 2: AA 2" in replay.stdout, replay.stdout + replay.stderr
    return engine, routes, config


def explain(engine: EngineProcess, routes: Path, config: Path, *args: str):
    return run_swf("explain", *args, "--data-dir", str(engine.data_dir), "--config", str(config),
                   "--routes", str(routes), timeout=60)


def test_explain_names_the_origin_of_every_worklist_value(start_engine, tmp_path) -> None:
    engine, routes, config = start(start_engine, tmp_path)

    shown = explain(engine, routes, config, "ACC-EX1")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.splitlines()[0] == "accession ACC-EX1  SPS SPS-EX1"
    assert re.search(r"^ATTRIBUTE +VALUE +FROM$", shown.stdout, re.M), shown.stdout
    table = rows(shown.stdout)
    profile = ROOT / "profiles" / "ihe-v231-orm.yaml"
    name_line = line_of(profile, "PatientName:")
    assert re.match(rf"KOWALSKI\^JAN +hl7: PID-5 \(message EXPL-RIS-1, journal #1\) via profile 'ihe-v231-orm' "
                    rf"\S*profiles/ihe-v231-orm.yaml:{name_line}$", table["PatientName"]), table["PatientName"]
    assert table["AccessionNumber"].startswith("ACC-EX1") and "hl7: OBR-18 (message EXPL-RIS-1" in \
        table["AccessionNumber"]
    room = routes / "20-rooms.yaml"
    room_line = line_of(room, "- name: CT orders to CT room 1")
    assert re.match(rf"CT1_AE +rule: rule 'CT orders to CT room 1' {re.escape(str(room))}:{room_line} "
                    r"\(schedule.station_ae; message EXPL-RIS-1, journal #1\)$",
                    table["ScheduledStationAETitle"]), table["ScheduledStationAETitle"]
    set_line = line_of(routes / "15-transport.yaml", "set:")
    assert re.match(rf"WALK +rule: rule 'RIS transport is always on foot' \S*15-transport.yaml:{set_line} "
                    r"\(set OBR-30, sent 'STRETCHER'", table["PatientTransportArrangements"]), \
        table["PatientTransportArrangements"]
    assert table["ScheduledProcedureStepStartDate"].startswith("20261207") and "hl7: ORC-7.4" in \
        table["ScheduledProcedureStepStartDate"]
    assert table["ScheduledProcedureStepStatus"].startswith("SCHEDULED") and "derived:" in \
        table["ScheduledProcedureStepStatus"]
    assert "DIFFERS" not in shown.stdout

    as_json = json.loads(explain(engine, routes, config, "ACC-EX1", "--json").stdout)
    assert (as_json["accession_number"], as_json["sps_id"]) == ("ACC-EX1", "SPS-EX1")
    generated = [line.split()[0] for line in run_swf("orders", "--data-dir", str(engine.data_dir)).stdout.splitlines()
                 if "PAT7002" in line]
    assert len(generated) == 1 and generated[0].startswith("A"), generated
    bare = explain(engine, routes, config, generated[0], "--json")
    assert bare.returncode == 0, bare.stderr
    by_keyword = {a["keyword"]: a for a in json.loads(bare.stdout)["attributes"]}
    assert by_keyword["AccessionNumber"]["from"] == {
        "kind": "generated", "where": "generated accession (orders.accession_prefix 'A' + yyMMdd + daily sequence)"}
    assert by_keyword["ScheduledProcedureStepID"]["from"]["kind"] == "generated"
    assert by_keyword["ScheduledStationAETitle"]["value"] == "UNASSIGNED"
    assert by_keyword["ScheduledStationAETitle"]["from"]["kind"] == "default"
    assert "orders.default_station_ae" in by_keyword["ScheduledStationAETitle"]["from"]["where"]
    map_line = line_of(profile, "modality_map:")
    assert by_keyword["Modality"]["value"] == "CT"
    assert by_keyword["Modality"]["from"]["kind"] == "profile"
    assert re.match(rf"profile 'ihe-v231-orm' modality_map CAT -> CT \S*ihe-v231-orm.yaml:{map_line} \(sent OBR-24 ",
                    by_keyword["Modality"]["from"]["where"]), by_keyword["Modality"]
    assert by_keyword["ScheduledProcedureStepStartTime"]["from"]["kind"] == "default"
    assert "MSH-7" in by_keyword["ScheduledProcedureStepStartTime"]["from"]["where"]
    assert by_keyword["ScheduledProcedureStepStartTime"]["value"] == "081500"
    assert by_keyword["FillerOrderNumberImagingServiceRequest"]["from"]["kind"] == "generated"


def test_explain_flags_an_operator_change_and_rules_changed_since(start_engine, tmp_path) -> None:
    engine, routes, config = start(start_engine, tmp_path)
    moved = run_swf("reschedule", "ACC-EX1", "--station", "CT2_AE", "--data-dir", str(engine.data_dir))
    assert moved.returncode == 0, moved.stderr
    (routes / "15-transport.yaml").unlink()   # the rules in force now differ from those at ingest

    shown = explain(engine, routes, config, "ACC-EX1")
    assert shown.returncode == 0, shown.stderr
    table = rows(shown.stdout)
    assert re.match(r"CT2_AE +operator: SPS rescheduled at \S+ \(SPS SPS-EX1 by the operator: rescheduled by the "
                    r"operator\)  << DIFFERS: the messages give 'CT1_AE'$", table["ScheduledStationAETitle"]), \
        table["ScheduledStationAETitle"]
    assert re.match(r"WALK +.*DIFFERS", table["PatientTransportArrangements"]), table["PatientTransportArrangements"]
    assert ("note: journal #1 matched rules [RIS orders (broker mode), RIS transport is always on foot, CT orders to "
            "CT room 1] at ingest; the rules in force now match [RIS orders (broker mode), CT orders to CT room 1]: "
            "the rules changed since") in shown.stdout.splitlines(), shown.stdout


def test_explain_of_an_unknown_accession_says_so(start_engine, tmp_path) -> None:
    engine, routes, config = start(start_engine, tmp_path)
    missing = explain(engine, routes, config, "NO-SUCH")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.strip() == "no scheduled step with accession number 'NO-SUCH'"
    wrong_step = explain(engine, routes, config, "ACC-EX1", "--step", "SPS-NONE")
    assert wrong_step.returncode == 1
    assert "no scheduled step with accession number 'ACC-EX1' and SPS ID 'SPS-NONE'" in wrong_step.stderr
    no_database = run_swf("explain", "ACC-EX1", "--data-dir", str(tmp_path / "empty"))
    assert no_database.returncode == 2 and "no database" in no_database.stderr


def test_the_readme_explain_example_runs_as_written(start_engine) -> None:
    """The README's ``swf explain`` block after the quick start's replay: each command as written, and each
    line of the output shown there found in the real output."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Where a worklist value came from"):]
    commands, count_text, shown = re.findall(
        r"```sh\n(.*?)```\n\nprints, among its (\d+) attribute lines:\n\n```\n(.*?)```", section, re.S)[0]
    count = int(count_text)
    engine = start_engine()
    replay = run_swf("replay", str(ROOT / "samples" / "day-v231.hl7"), "--to", engine.address, "--no-progress",
                     timeout=60)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    outputs = []
    for line in commands.strip().splitlines():
        words = shlex.split(line.partition("#")[0])
        assert words[0] == ".venv/bin/swf" and words[1] == "explain", line
        done = run_swf(*words[1:], "--data-dir", str(engine.data_dir), timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    table, as_json = outputs
    for line in shown.strip().splitlines():
        assert line in table.splitlines(), f"README line not in the output:\n{line}\n---\n{table}"
    assert len(rows(table)) == count
    assert len(json.loads(as_json)["attributes"]) == count
