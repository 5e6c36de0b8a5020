"""Modalities without MPPS (issue 16) against the real engine: orders over MLLP, images by a pynetdicom
C-STORE SCU, the worklist asked with DCMTK findscu, a stand-in RIS receiving the status messages, and the
``stations:`` policies of routes/ (complete_on_images, start_on_first_image, drop_on_study_arrival)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.conftest import ROOT, EngineProcess, run_swf
from tests.integration.test_commitment import store_instances, wait_for
from tests.integration.test_mpps import (ACCESSION, ORDER, STUDY, final, in_progress, modalities,  # noqa: F401
                                         worklist_matches)
from tests.mllp_receiver import Receiver

MR_ACCESSION, MR_STUDY = "ACC25030418", "2.25.196472841560937218203340981652004917122"
MR_ORDER = (ORDER.replace(b"RIS0000457", b"RIS0000458").replace(b"PLC-88812", b"PLC-88813")
            .replace(b"FIL-55120", b"FIL-55121").replace(ACCESSION.encode(), MR_ACCESSION.encode())
            .replace(b"RP-0417-1|SPS-0417-1", b"RP-0418-1|SPS-0418-1").replace(b"||||CT\n", b"||||MR\n")
            .replace(STUDY.encode(), MR_STUDY.encode()))
STATIONS = """stations:
  - station_ae: CT1_AE              # the CT room sends no MPPS
    start_on_first_image: true
    complete_on_images: {quiet: 2s}
  - modality: [MR]
    drop_on_study_arrival: true
"""


def stations_routes(tmp_path: Path, stations: str = STATIONS) -> Path:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    (routes / "30-stations.yaml").write_text(stations)
    return routes


def order_statuses(ris: Receiver) -> list[tuple[str, str]]:
    """(ORC-1, ORC-5) of every status message the RIS acknowledged, in order."""
    return [(message.get("ORC-1"), message.get("ORC-5")) for message in ris.messages]


def history(engine: EngineProcess, accession: str) -> list[tuple[str, str]]:
    """(kind, detail) of the order's history, oldest first."""
    return [(row["kind"], row["detail"]) for row in engine.read_rows(
        "SELECT h.kind, h.detail FROM order_history h JOIN requested_procedures r ON r.order_ref = h.order_ref"
        " WHERE r.accession_number = ? ORDER BY h.id", (accession,))]


def details(engine: EngineProcess, accession: str, kind: str) -> list[str]:
    return [detail for entry_kind, detail in history(engine, accession) if entry_kind == kind]


def test_images_start_and_complete_a_step_once_and_a_later_mpps_is_linked(start_engine, tmp_path: Path,
                                                                           modalities) -> None:  # noqa: F811
    ris = Receiver()
    config = tmp_path / "engine.yaml"
    config.write_text("studies: {quiet_seconds: 1, scan_seconds: 0.2}\ncluster: {heartbeat_seconds: 0.3}\n")
    engine = start_engine("--config", str(config), routes=stations_routes(tmp_path),
                          env={"SWF_RIS_ADDRESS": ris.address})
    orders = tmp_path / "orders.hl7"
    orders.write_bytes(ORDER + b"\n" + MR_ORDER)
    replay = run_swf("replay", str(orders), "--to", engine.address, "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert worklist_matches(engine) == 1 and worklist_matches(engine, MR_ACCESSION) == 1

    # CT1_AE: the first image starts the step (IP), two seconds without a new one complete it (CM)
    store_instances(engine, 3, study=STUDY)
    last_image = time.monotonic()
    store_instances(engine, 1, study=MR_STUDY)
    [started] = ris.wait_for(1, timeout=8)
    assert (started.get("ORC-1"), started.get("ORC-5")) == ("SC", "IP")
    assert worklist_matches(engine) == 0                          # STARTED: no longer offered
    assert len(details(engine, ACCESSION, "STARTED ON IMAGES")) == 1
    ris.wait_for(2, timeout=8)
    assert time.monotonic() - last_image >= 1.9                   # the station's quiet, not studies.quiet_seconds
    assert order_statuses(ris) == [("SC", "IP"), ("SC", "CM")]
    [completed] = details(engine, ACCESSION, "COMPLETED ON IMAGES")
    assert completed.endswith("STARTED -> COMPLETED; completed on images (quiet 2s, 3 instances); order IP -> CM")

    # MR: the study arrived and is stable -> off the worklist, step SCHEDULED, the RIS is not told
    assert worklist_matches(engine, MR_ACCESSION) == 0
    [dropped] = details(engine, MR_ACCESSION, "OFF WORKLIST")
    assert f"study {MR_STUDY} arrived and is stable (1 instances)" in dropped
    assert "step stays SCHEDULED, the RIS is not told" in dropped

    # the CT modality sends an MPPS after all: linked to the completed step, no second IP or CM
    modality = modalities(engine.dicom_port)
    assert modality.create(in_progress(), "2.25.287621")[0].Status == 0x0000
    assert modality.set(final(), "2.25.287621")[0].Status == 0x0000
    appended = details(engine, ACCESSION, "MPPS APPENDED")
    assert len(appended) == 2 and all(line.startswith("2.25.287621 on CT1_AE: accession ACC25030417 SPS SPS-0417-1"
                                                      " is COMPLETED") for line in appended)
    time.sleep(0.5)
    assert order_statuses(ris) == [("SC", "IP"), ("SC", "CM")]   # exactly once each, nothing for the MR
    ris.close()


def test_bad_station_policies_are_refused_with_file_and_line(tmp_path: Path) -> None:
    routes = stations_routes(tmp_path, """stations:
  - station_ae: CR1_AE
    complete_on_images: {quiet: 10 minutes}
  - modality: DX
    start_on_first_imag: true
  - station_ae: DX1_AE
    complete_on_images: {quite: 5m}
  - complete_on_images: {quiet: 0s}
""")
    checked = run_swf("rules", "check", str(routes), "--profiles", str(ROOT / "profiles"))
    assert checked.returncode == 1
    file = routes / "30-stations.yaml"
    lines = checked.stderr.splitlines()
    assert f"{file}:3: complete_on_images.quiet must be a duration greater than zero such as 30s, 10m or 2h," \
           " not '10 minutes'" in lines
    assert any(line.startswith(f"{file}:5: unknown stations key 'start_on_first_imag'") for line in lines)
    assert f"{file}:7: complete_on_images must be {{quiet: DURATION}}, e.g. {{quiet: 10m}}" in lines
    assert f"{file}:8: a stations entry needs station_ae and/or modality" in lines
    assert any(line.startswith(f"{file}:8: complete_on_images.quiet must be a duration") for line in lines)
