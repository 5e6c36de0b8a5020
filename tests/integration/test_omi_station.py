"""A step's station over the wire: v2.5.1 OMI^O23 with the modality in IPC-5 only reaches its room through the
shipped rules' ``modality`` condition, and a step accepted without a station is never silent (WARNING at
ingest, ``swf orders`` marks it, ``orders.default_station_ae`` offers it).

Orders arrive over MLLP (``swf replay``) at a real engine process; DCMTK ``findscu -W`` queries the worklist
with the Scheduled Station AE Title, as real modalities do.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

from tests.conftest import EngineProcess, run_swf

SPS = "ScheduledProcedureStepSequence"


def omi(control_id: str, accession: str, modality: str, patient: str = "PAT9001") -> str:
    """RAD-4 v2.5.1 OMI^O23: modality in IPC-5 only (no OBR-24, no IPC-9 station)."""
    return (f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207080000||OMI^O23^OMI_O23|{control_id}|P|2.5.1\r"
            f"PID|1||{patient}^^^GENHOSP^MR||KOWALSKI^JAN||19700101|M\r"
            f"ORC|NW|P-{accession}^HIS|F-{accession}^RIS||SC\r"
            "TQ1|1||||||20261207100000\r"
            "OBR|1|P-{0}^HIS|F-{0}^RIS|PROC^Procedure^99RAD\r".format(accession)
            + f"IPC|{accession}^GENHOSP|RP-{accession}|2.25.{abs(hash(accession)) % 10**30}|SPS-{accession}|{modality}\r")


def orm(control_id: str, accession: str, modality: str) -> str:
    """RAD-4 v2.3.1 ORM^O01 with the modality in OBR-24 (the same room rules must serve it)."""
    return (f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207080000||ORM^O01|{control_id}|P|2.3.1\r"
            "PID|1||PAT9002^^^GENHOSP^MR||NOWAK^EWA||19800101|F\r"
            f"ORC|NW|P-{accession}^HIS|F-{accession}^RIS||SC||1^once^^20261207110000^^R\r"
            f"OBR|1|P-{accession}^HIS|F-{accession}^RIS|PROC^Procedure^99RAD||||||||||||||{accession}|RP-{accession}"
            f"|SPS-{accession}||||{modality}\r")


def send(engine: EngineProcess, tmp_path: Path, *messages: str) -> None:
    path = tmp_path / "orders.hl7"
    path.write_text("\n".join(m.replace("\r", "\n") for m in messages))
    replay = run_swf("replay", str(path), "--to", engine.address, "--no-progress", timeout=60)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def findscu(engine: EngineProcess, cwd: Path, station: str, *keys: str) -> str:
    """findscu -W as modality ``station`` asking for its own Scheduled Station AE Title; its verbose output."""
    command = ["findscu", "-W", "-v", "-aet", station, "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
               "-k", "AccessionNumber", "-k", "PatientID", "-k", f"{SPS}[0].ScheduledStationAETitle={station}",
               "-k", f"{SPS}[0].Modality", "-k", f"{SPS}[0].ScheduledProcedureStepID"]
    for key in keys:
        command += ["-k", key]
    cwd.mkdir(parents=True, exist_ok=True)
    found = subprocess.run(command, cwd=cwd, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True,
                           text=True, timeout=30)
    output = found.stdout + found.stderr
    assert found.returncode == 0 and "Received Final Find Response (Success)" in output, output
    return output


def pending_count(output: str) -> int:
    return output.count("(Pending)")


def test_an_omi_with_the_modality_in_ipc5_only_reaches_its_station(start_engine, tmp_path) -> None:
    engine = start_engine()
    send(engine, tmp_path, omi("OMI-1", "ACC-OMI-CT", "CT"), orm("ORM-1", "ACC-ORM-CT", "CT"))
    output = findscu(engine, tmp_path / "q1", "CT1_AE")
    assert pending_count(output) == 2, output
    assert "ACC-OMI-CT" in output and "ACC-ORM-CT" in output
    # the room rule filled name and location too, as for the ORM
    detail = run_swf("orders", "ACC-OMI-CT", "--data-dir", str(engine.data_dir))
    assert detail.returncode == 0, detail.stderr
    assert "CT1_AE" in detail.stdout and "no station" not in detail.stdout
    assert "has no station AE" not in engine.log()


def config_file(tmp_path: Path, default_station: str = "") -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(f"orders:\n  default_station_ae: '{default_station}'\n")
    return path


def test_a_step_without_station_is_logged_at_ingest_and_marked_by_swf_orders(start_engine, tmp_path) -> None:
    engine = start_engine("--config", str(config_file(tmp_path)))
    send(engine, tmp_path, omi("OMI-2", "ACC-OMI-MG", "MG"))   # no room rule for MG, no IPC-9
    log = engine.log()
    assert "WARNING" in log and "accession ACC-OMI-MG SPS SPS-ACC-OMI-MG has no station AE" in log, log
    assert "no routing rule gave modality MG a station and the message names none" in log
    listing = run_swf("orders", "--data-dir", str(engine.data_dir))
    line = next(line for line in listing.stdout.splitlines() if line.startswith("ACC-OMI-MG"))
    assert "no station" in line, listing.stdout
    detail = run_swf("orders", "ACC-OMI-MG", "--data-dir", str(engine.data_dir))
    step = next(line for line in detail.stdout.splitlines() if "SPS SPS-ACC-OMI-MG" in line)
    assert "no station" in step and "offered" not in step, detail.stdout
    assert "no station" in detail.stdout.split("history:")[1]   # the history says why
    # not offered to a modality asking for its own station
    assert pending_count(findscu(engine, tmp_path / "q2", "MG1_AE")) == 0


def test_default_station_ae_offers_steps_without_station_under_that_title(start_engine, tmp_path) -> None:
    config = config_file(tmp_path, "MG1_AE")
    engine = start_engine("--config", str(config))
    send(engine, tmp_path, omi("OMI-3", "ACC-OMI-MG3", "MG"), omi("OMI-4", "ACC-OMI-CT4", "CT", patient="PAT9004"))
    output = findscu(engine, tmp_path / "q3", "MG1_AE")
    assert pending_count(output) == 1 and "ACC-OMI-MG3" in output, output
    assert "MG1_AE" in output
    wildcard = findscu(engine, tmp_path / "q4", "MG*")
    assert pending_count(wildcard) == 1 and "ACC-OMI-MG3" in wildcard, wildcard
    ct = findscu(engine, tmp_path / "q5", "CT1_AE")   # other stations do not get it
    assert pending_count(ct) == 1 and "ACC-OMI-CT4" in ct and "ACC-OMI-MG3" not in ct
    assert "offered to modality worklist queries as MG1_AE (orders.default_station_ae)" in engine.log()
    detail = run_swf("orders", "ACC-OMI-MG3", "--config", str(config), "--data-dir", str(engine.data_dir))
    step = next(line for line in detail.stdout.splitlines() if "SPS SPS-ACC-OMI-MG3" in line)
    assert "no station (offered as MG1_AE)" in step, detail.stdout
