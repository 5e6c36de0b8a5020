"""The example rules sets in samples/routes/, each run in a real engine with real MLLP receivers."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT, run_swf
from tests.mllp_receiver import Receiver

SAMPLES = ROOT / "samples" / "routes"


def order(tmp_path: Path, facility: str, n: int, modality: str = "CT", sender: str = "RIS") -> Path:
    path = tmp_path / f"order-{facility}-{n}.hl7"
    path.write_text(
        f"MSH|^~\\&|{sender}|{facility}|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{facility}{n}|P|2.3.1\n"
        f"PID|1||PAT{n}^^^{facility}^MR||DOE^JOHN\n"
        f"ORC|NW|P{facility}{n}^HIS|F{facility}{n}^RIS||SC||1^once^^20250304100000^^R\n"
        f"OBR|1|P{facility}{n}^HIS|F{facility}{n}^RIS|X^Exam^99RAD||||||||||||||A{facility}{n}|RP{n}|SPS{n}"
        f"||||{modality}\n")
    return path


def step_line(engine, accession: str) -> str:
    shown = run_swf("orders", accession, "--data-dir", str(engine.data_dir)).stdout
    return next(line for line in shown.splitlines() if line.strip().startswith("SPS "))


def test_every_sample_rules_set_is_valid() -> None:
    for folder in sorted(SAMPLES.iterdir()):
        result = run_swf("rules", "check", str(folder))
        assert result.returncode == 0, f"{folder}: {result.stderr}"


def test_one_ris(start_engine, tmp_path: Path) -> None:
    ris = Receiver()
    engine = start_engine(routes=SAMPLES / "one-ris", env={"SWF_RIS_ADDRESS": ris.address})
    assert run_swf("replay", str(order(tmp_path, "H", 1, "MR")), "--to", engine.address).returncode == 0
    assert "MR1_AE" in step_line(engine, "AH1")
    assert run_swf("cancel", "AH1", "--data-dir", str(engine.data_dir)).returncode == 0
    [status] = ris.wait_for(1)
    assert (status.message_code, status.get("ORC-1"), status.get("OBR-18")) == ("ORM^O01", "OC", "AH1")
    ris.close()


def test_ris_and_archive(start_engine, tmp_path: Path) -> None:
    ris, archive = Receiver(), Receiver()
    engine = start_engine(routes=SAMPLES / "ris-and-archive",
                          env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    run_swf("replay", str(order(tmp_path, "H", 2, "US")), "--to", engine.address)
    [scheduled] = archive.wait_for(1)
    assert (scheduled.message_code, scheduled.get("IPC-9"), scheduled.get("IPC-1")) == ("OMI^O23", "GENERAL_AE", "AH2")
    run_swf("cancel", "AH2", "--data-dir", str(engine.data_dir))
    [status] = ris.wait_for(1)
    assert (status.message_code, status.get("ORC-1"), status.get("ORC-5")) == ("OMG^O19", "OC", "CA")
    assert archive.wait_for(2)[1].get("ORC-1") == "CA"
    ris.close(), archive.close()


def test_two_sites(start_engine, tmp_path: Path) -> None:
    north, south = Receiver(), Receiver()
    engine = start_engine(routes=SAMPLES / "two-sites",
                          env={"SWF_NORTH_RIS_ADDRESS": north.address, "SWF_SOUTH_RIS_ADDRESS": south.address})
    for facility in ("NORTH", "SOUTH"):
        assert run_swf("replay", str(order(tmp_path, facility, 3)), "--to", engine.address).returncode == 0
    assert "NCT1_AE" in step_line(engine, "ANORTH3")
    south_orders = run_swf("orders", "--data-dir", str(engine.data_dir)).stdout
    assert "SCT1_AE" in south_orders  # filler mode: the engine assigned the south accession number
    other = run_swf("replay", str(order(tmp_path, "EAST", 4)), "--to", engine.address)
    assert other.returncode == 1 and 'AR EAST4: rejected by rule "anything else is not ours"' in other.stdout
    run_swf("cancel", "ANORTH3", "--data-dir", str(engine.data_dir))
    assert north.wait_for(1)[0].get("MSH-6") == "NORTH"
    assert south.messages == []
    north.close(), south.close()
