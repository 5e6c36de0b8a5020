"""The sample traffic in samples/ replayed against a real engine process (see samples/README.md).

Each test starts its own engine (``start_engine``), sends a sample file over MLLP with ``swf replay`` or
python-hl7's ``mllp_send`` and checks the ACK summary, the journal and the resulting orders/patients
through the ``swf`` CLI, the way an operator would.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


from tests.conftest import ROOT, EngineProcess, run_swf

SAMPLES = ROOT / "samples"
DAY_V231 = SAMPLES / "day-v231.hl7"
DAY_V251 = SAMPLES / "day-v251.hl7"
MALFORMED = SAMPLES / "malformed.hl7"

GENERATED_ACCESSION = re.compile(r"accession (A\d{11})\b")
SUMMARY = re.compile(r"^sent (\d+): AA (\d+), AE (\d+), AR (\d+), no answer (\d+)$", re.M)

# malformed.hl7, in file order: (control ID as replay prints it, ACK code, ERR code, words of the reason)
MALFORMED_EXPECTED = [
    ("(no MSH)", "AR", 100, "does not start with an MSH"),
    ("(no MSH-10)", "AR", 101, "MSH-10"),
    ("LAB39000001", "AR", 200, "ORU"),
    ("HIS39000002", "AR", 201, "A99"),
    ("RIS39000001", "AE", 101, "OBR-4"),
    ("RIS39000002", "AE", 204, "HP399999"),
    ("RIS39000003", "AE", 103, "NW/CM"),
    ("RIS39000004", "AE", 102, "20250230"),
    ("HIS39000005", "AE", 101, "PID-3"),
    ("HIS39000006", "AE", 101, "MRG-1"),
    ("HIS39000007", "AR", 203, "2.9"),
    ("HIS39000008", "AR", 207, "processing ID T"),
]


# -- helpers ------------------------------------------------------------------------------------
def control_ids(path: Path) -> list[str]:
    """MSH-10 of every message in a sample file, in order (the samples are MSH-first, blank-line separated)."""
    return [line.split(b"|")[9].decode("ascii") for line in path.read_bytes().splitlines() if line.startswith(b"MSH|")]


def replay(engine: EngineProcess, path: Path) -> subprocess.CompletedProcess:
    return run_swf("replay", str(path), "--to", engine.address, "--no-progress", timeout=60)


def summary(output: str) -> tuple[int, int, int, int, int]:
    match = SUMMARY.search(output)
    assert match, f"no summary line in replay output:\n{output}"
    return tuple(int(n) for n in match.groups())  # type: ignore[return-value]


def not_accepted(output: str) -> list[tuple[str, str, str]]:
    """``  CODE CONTROLID: reason`` lines of the replay summary, in order."""
    return re.findall(r"^  (AA|AE|AR|CA|CE|CR|\?) (\(no MSH(?:-10)?\)|\S+): (.*)$", output, re.M)


def swf(engine: EngineProcess, *args: str) -> str:
    done = run_swf(*args, "--data-dir", str(engine.data_dir))
    assert done.returncode == 0, f"swf {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def journal(engine: EngineProcess) -> list[dict[str, str]]:
    """``swf journal`` rows, oldest first (fixed-width columns, see engine/cli.py cmd_journal)."""
    rows = []
    for line in swf(engine, "journal", "--limit", "1000").splitlines():
        if not line.startswith("#"):
            continue
        rows.append({"id": line[1:8].strip(), "message_code": line[34:42].strip(), "control_id": line[43:65].strip(),
                     "status": line[66:75].strip(), "ack_code": line[76:79].strip(), "reason": line[80:].strip()})
    return rows[::-1]


def err_code(ack: str) -> int:
    """HL7 table 0357 code of the first ERR segment: ERR-3.1 (v2.5+) or ERR-1.4.1 (v2.3.1/v2.4)."""
    segment = next(line for line in ack.splitlines() if line.startswith("ERR|"))
    fields = segment.split("|")
    if len(fields) > 3 and fields[3]:
        return int(fields[3].split("^")[0])
    return int(fields[1].split("^")[3].split("&")[0])


def step_line(order_output: str, sps_id: str) -> str:
    lines = [line for line in order_output.splitlines() if line.strip().startswith(f"SPS {sps_id} ")]
    assert len(lines) == 1, f"SPS {sps_id} not shown exactly once:\n{order_output}"
    return " ".join(lines[0].split())


def only_step(order_output: str) -> str:
    lines = [" ".join(line.split()) for line in order_output.splitlines() if line.startswith("  SPS ")]
    assert len(lines) == 1, f"expected exactly one SPS:\n{order_output}"
    return lines[0]


# -- (a) + (b): day in v2.3.1 --------------------------------------------------------------------
def test_day_v231_is_accepted_and_builds_the_expected_worklist(start_engine) -> None:
    engine = start_engine()
    ids = control_ids(DAY_V231)
    assert len(ids) == len(set(ids)) == 32
    done = replay(engine, DAY_V231)
    assert summary(done.stdout) == (32, 32, 0, 0, 0), done.stdout + done.stderr
    assert done.returncode == 0

    # broker-mode CT order: the RIS's identifiers, routed by OBR-24 to CT room 1, Latin-1 name intact
    order = swf(engine, "orders", "R2503050001")
    assert "mode broker  from RIS" in order
    assert "patient PAT20001^RIVERSIDE  BAUMGÄRTNER^JÜRGEN" in order
    assert "requested procedure RP2503050001  accession R2503050001" in order
    assert step_line(order, "SP2503050001-1") == "SPS SP2503050001-1 SCHEDULED CT CT1_AE 20250305083000"

    # XO/SC from the RIS moved the US exam from 10:00 to 11:45
    order = swf(engine, "orders", "R2503050003")
    assert step_line(order, "SP2503050003-1") == "SPS SP2503050003-1 SCHEDULED US US1_AE 20250305114500"
    assert re.search(r"SPS rescheduled +SPS SP2503050003-1: start_datetime +\[ORM\^O01 RIS31000006 AA\]", order)
    assert "DUBOIS^HÉLÈNE^MARIE" in order

    # filler-mode CR order from the HIS: generated identifiers, then CA/CA -> CANCELED
    order = swf(engine, "orders", "HP310004")
    assert "mode filler  from HIS" in order and re.search(r"filler F\d{9} ", order)
    accession = GENERATED_ACCESSION.search(order)
    assert accession, order
    assert f"SPS {accession.group(1)}-1-1 " in order
    assert "status CA" in order
    assert re.search(r"SPS A\d{11}-1-1 CANCELED CR CR1_AE 20250305090000", only_step(order))
    assert "by ORC-1=CA  [ORM^O01 HIS31000012 AA]" in order

    # DC/CA from the RIS: the CT head is DISCONTINUED
    order = swf(engine, "orders", "R2503050002")
    assert "status DC" in order
    assert step_line(order, "SP2503050002-1") == "SPS SP2503050002-1 DISCONTINUED CT CT1_AE 20250305091500"

    # filler-mode MR orders: routed to MR room 1; XO/SC from the HIS moved one from 14:30 to 15:15
    order = swf(engine, "orders", "HP310002")
    assert "SMITH^JOHN^ROBERT" in order
    assert re.search(r"SPS A\d{11}-1-1 SCHEDULED MR MR1_AE 20250305110000", only_step(order))
    order = swf(engine, "orders", "HP310008")
    assert re.search(r"SPS A\d{11}-1-1 SCHEDULED MR MR1_AE 20250305151500", only_step(order))
    assert "SPS rescheduled" in order and "[ORM^O01 HIS31000017 AA]" in order

    # filler-mode US order without a start time: scheduled at the message time (MSH-7)
    order = swf(engine, "orders", "HP310010")
    assert re.search(r"SPS A\d{11}-1-1 SCHEDULED US US1_AE 20250305103240", only_step(order))

    # broker MR and portable CR
    order = swf(engine, "orders", "R2503050005")
    assert "WEISS^RENÉE" in order
    assert step_line(order, "SP2503050005-1") == "SPS SP2503050005-1 SCHEDULED MR MR1_AE 20250305130000"
    order = swf(engine, "orders", "R2503050007")
    assert step_line(order, "SP2503050007-1") == "SPS SP2503050007-1 SCHEDULED CR CR1_AE 20250305111500"

    # RAD-4 with two ORC/OBR pairs: one requested procedure, two SPS
    order = swf(engine, "orders", "R2503050006")
    assert order.count("requested procedure RP2503050006") == 1
    assert step_line(order, "SP2503050006-1") == "SPS SP2503050006-1 SCHEDULED CT CT1_AE 20250305103000"
    assert step_line(order, "SP2503050006-2") == "SPS SP2503050006-2 SCHEDULED CT CT1_AE 20250305103000"
    assert "LEFÈVRE^AMÉLIE" in order

    # A40: PAT20060 (ER duplicate) merged into PAT20006 with its CR order
    survivor = swf(engine, "patients", "PAT20006")
    assert "patient PAT20006^RIVERSIDE  ØSTERGAARD^SØREN" in survivor
    assert "merged ID PAT20060^RIVERSIDE" in survivor
    assert "orders: 1" in survivor
    prior = swf(engine, "patients", "PAT20060")
    assert "MERGED into PAT20006^RIVERSIDE" in prior and "orders: 0" in prior
    order = swf(engine, "orders", "R2503050004")
    assert "patient PAT20006^RIVERSIDE  ØSTERGAARD^SØREN" in order
    assert "patient merged" in order and "[ADT^A40 HIS31000015 AA]" in order

    # A08 corrected the birth date; A03 discharged; A05 then A01 made the pre-admission active
    patient = swf(engine, "patients", "PAT20005")
    assert "GARCÍA LÓPEZ^JOSÉ^MARÍA  born 19830412  sex M" in patient
    assert "updated          ADT^A08: PatientBirthDate" in patient
    assert "visit V31000007 class I discharged" in swf(engine, "patients", "PAT20007")
    assert "visit V31000003 class I active" in swf(engine, "patients", "PAT20003")
    assert "BAUMGÄRTNER^JÜRGEN  born 19610722" in swf(engine, "patients", "PAT20001")


def test_day_v231_two_orders_in_one_message_are_routed_by_their_own_modality(start_engine) -> None:
    engine = start_engine()
    done = replay(engine, DAY_V231)
    assert summary(done.stdout) == (32, 32, 0, 0, 0), done.stdout + done.stderr
    assert re.search(r"SPS A\d{11}-1-1 SCHEDULED US US1_AE", only_step(swf(engine, "orders", "HP310010")))
    assert re.search(r"SPS A\d{11}-1-1 SCHEDULED CR CR1_AE 20250305110000",
                     only_step(swf(engine, "orders", "HP310012")))


def test_day_v231_two_sps_rad4_accepted_when_nw_for_existing_is_reject(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("orders:\n  nw_for_existing: reject\n")
    engine = start_engine("--config", str(config))
    done = replay(engine, DAY_V231)
    assert summary(done.stdout) == (32, 32, 0, 0, 0), done.stdout + done.stderr
    order = swf(engine, "orders", "R2503050006")
    assert "SP2503050006-1" in order and "SP2503050006-2" in order


# -- (a) + (b): day in v2.5.1 --------------------------------------------------------------------
def test_day_v251_is_accepted_and_builds_the_expected_worklist(start_engine) -> None:
    engine = start_engine()
    ids = control_ids(DAY_V251)
    assert len(ids) == len(set(ids)) == 25
    done = replay(engine, DAY_V251)
    assert summary(done.stdout) == (25, 25, 0, 0, 0), done.stdout + done.stderr
    assert done.returncode == 0

    # UTF-8 names from five scripts come through intact
    names = {"PAT30001": "MÜLLER^JOHANNES", "PAT30002": "WIŚNIEWSKI^ŁUKASZ", "PAT30003": "Ødegård^Kari",
             "PAT30004": "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΕΩΡΓΙΟΣ", "PAT30005": "ИВАНОВА^ОЛЬГА^СЕРГЕЕВНА", "PAT30007": "KOVÁČ^MÁRIA"}
    for patient_id, name in names.items():
        assert f"patient {patient_id}^RIVERSIDE  {name}  " in swf(engine, "patients", patient_id)

    # OMI with IPC-9 = CT1_AE, later XO/CM -> COMPLETED; the A08 birth date survived the later order message
    order = swf(engine, "orders", "R2503060001")
    assert "status CM" in order and "MÜLLER^JOHANNES" in order
    assert step_line(order, "SP2503060001-1") == "SPS SP2503060001-1 COMPLETED CT CT1_AE 20250306083000"
    assert "MÜLLER^JOHANNES  born 19540711" in swf(engine, "patients", "PAT30001")

    # OMI without IPC-9: the rules route the MR to MR1_AE
    order = swf(engine, "orders", "R2503060002")
    assert step_line(order, "SP2503060002-1") == "SPS SP2503060002-1 SCHEDULED MR MR1_AE 20250306093000"

    # OMI with IPC-9 = MR2_AE keeps the RIS's station; XO/SC moved it from 14:00 to 16:30 (TQ1-7)
    order = swf(engine, "orders", "R2503060004")
    assert "ИВАНОВА^ОЛЬГА^СЕРГЕЕВНА" in order
    assert step_line(order, "SP2503060004-1") == "SPS SP2503060004-1 SCHEDULED MR MR2_AE 20250306163000"
    assert "SPS rescheduled" in order and "[OMI^O23 RIS51000006 AA]" in order

    # DC/CA -> DISCONTINUED; the A11 cancelled the pre-admission visit
    order = swf(engine, "orders", "R2503060003")
    assert step_line(order, "SP2503060003-1") == "SPS SP2503060003-1 DISCONTINUED CR CR1_AE 20250306091000"
    assert "visit V51000004 class P cancelled" in swf(engine, "patients", "PAT30004")

    # OMG^O19 from the HIS: filler mode, generated identifiers; the placer's CA (ORC-5 empty) -> CANCELED
    order = swf(engine, "orders", "HP510003")
    assert "mode filler  from HIS" in order and "Ødegård^Kari" in order
    assert re.search(r"SPS A\d{11}-1-1 SCHEDULED US US1_AE 20250306110000", only_step(order))
    order = swf(engine, "orders", "HP510007")
    assert "status CA" in order
    assert re.search(r"SPS A\d{11}-1-1 CANCELED CT CT1_AE 20250306133000", only_step(order))

    # A40: the ER record PAT30062 merged into PAT30002 with its CT order
    survivor = swf(engine, "patients", "PAT30002")
    assert "merged ID PAT30062^RIVERSIDE" in survivor and "orders: 2" in survivor
    assert "MERGED into PAT30002^RIVERSIDE" in swf(engine, "patients", "PAT30062")
    order = swf(engine, "orders", "R2503060005")
    assert "patient PAT30002^RIVERSIDE  WIŚNIEWSKI^ŁUKASZ" in order and "patient merged" in order

    # one OBR with two IPC: one requested procedure, two SPS
    order = swf(engine, "orders", "R2503060006")
    assert order.count("requested procedure RP2503060006") == 1
    assert step_line(order, "SP2503060006-1") == "SPS SP2503060006-1 SCHEDULED CT CT1_AE 20250306120000"
    assert step_line(order, "SP2503060006-2") == "SPS SP2503060006-2 SCHEDULED CT CT1_AE 20250306120000"


def test_journal_entry_shows_utf8_message_text(start_engine) -> None:
    engine = start_engine()
    done = replay(engine, DAY_V251)
    assert summary(done.stdout) == (25, 25, 0, 0, 0), done.stdout + done.stderr
    entry = next(row for row in journal(engine) if row["control_id"] == "HIS51000003")
    shown = swf(engine, "journal", entry["id"])
    assert "PID|1||PAT30003^^^RIVERSIDE&2.999.7.1&ISO^MR||Ødegård^Kari^^^^^L||" in shown


# -- (c): python-hl7's mllp_send as the sender ------------------------------------------------------
def test_mllp_send_delivers_every_message_of_day_v231(start_engine) -> None:
    mllp_send = Path(sys.executable).with_name("mllp_send")
    assert mllp_send.exists(), "python-hl7's mllp_send is missing: pip install -e '.[test]'"
    engine = start_engine()
    done = subprocess.run([str(mllp_send), "--loose", "-f", str(DAY_V231), "-p", str(engine.mllp_port), "127.0.0.1"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(b"MSA|AA|") == 32, done.stdout

    rows = journal(engine)
    assert [row["control_id"] for row in rows] == control_ids(DAY_V231)
    assert {(row["status"], row["ack_code"]) for row in rows} == {("applied", "AA")}
    assert "BAUMGÄRTNER^JÜRGEN" in swf(engine, "patients", "PAT20001")
    assert "merged ID PAT20060^RIVERSIDE" in swf(engine, "patients", "PAT20006")


# -- (a) + (d): malformed messages -----------------------------------------------------------------
def test_malformed_messages_get_their_expected_ack(start_engine) -> None:
    engine = start_engine()
    done = replay(engine, MALFORMED)
    assert done.returncode == 1
    assert summary(done.stdout) == (12, 0, 6, 6, 0), done.stdout + done.stderr

    refused = not_accepted(done.stdout)
    assert [(control_id, code) for code, control_id, _ in refused] == [
        (control_id, code) for control_id, code, _, _ in MALFORMED_EXPECTED]
    for (_, _, reason), (control_id, _, _, words) in zip(refused, MALFORMED_EXPECTED):
        assert words in reason, f"{control_id}: {reason!r} does not mention {words!r}"

    rows = journal(engine)
    assert len(rows) == len(MALFORMED_EXPECTED)
    for row, (control_id, code, error, _) in zip(rows, MALFORMED_EXPECTED):
        assert row["status"] == "rejected" and row["ack_code"] == code, (control_id, row)
        if not control_id.startswith("("):
            assert row["control_id"] == control_id
        ack = swf(engine, "journal", row["id"]).split("-- ACK:", 1)[1]
        assert re.search(rf"^MSA\|{code}\|", ack, re.M), (control_id, ack)
        assert err_code(ack) == error, (control_id, ack)

    # rejected messages leave nothing behind
    assert run_swf("patients", "PAT29001", "--data-dir", str(engine.data_dir)).returncode == 1
    assert run_swf("orders", "RF390001", "--data-dir", str(engine.data_dir)).returncode == 1
