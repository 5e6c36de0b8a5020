"""The README's HTTP API examples, run as written (curl through bash) against an engine that has had the
quick start's samples: only the address becomes the test engine's.  A README edit naming an order the
sample lacks, a path the API does not have, or a curl line that fails, fails here."""
from __future__ import annotations

import json
import re
import subprocess

from tests.conftest import ROOT, free_port, run_swf

README = ROOT / "README.md"


def api_examples() -> list[str]:
    section = README.read_text().split("## HTTP API\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README.md has no example block in its HTTP API section"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_api_examples_run_as_written(start_engine, tmp_path) -> None:
    engine = start_engine(env={"SWF_ARCHIVE_ADDRESS": f"127.0.0.1:{free_port()}"})   # an archive that is down
    for sample in ("day-v231.hl7", "malformed.hl7"):   # as the quick start replays them
        run_swf("replay", str(ROOT / "samples" / sample), "--to", engine.address, "--no-progress")
    answers = {}
    for line in api_examples():
        command = line.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{engine.http_port}")
        assert command != line and command.startswith("curl -s "), line
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, (line, done.stderr)
        path = re.search(r"8080(/[^' ]*)", line).group(1)
        answers[path] = json.loads(done.stdout or (tmp_path / "openapi.json").read_text())
        assert "error" not in answers[path], (line, answers[path])
    assert answers["/ready"]["status"] == "ready"
    assert answers["/api/v1/openapi.json"]["openapi"].startswith("3.")
    assert [o["modalities"] for o in answers["/api/v1/orders?modality=CT&limit=2"]["items"]] == [["CT"], ["CT"]]
    assert answers["/api/v1/orders/R2503050003"]["procedures"][0]["accession_number"] == "R2503050003"
    assert answers["/api/v1/journal?status=rejected"]["items"]
    assert answers["/api/v1/outbox?status=all"]["items"][0]["id"] == 1
    assert answers["/api/v1/outbox/1/resend"]["status"] == "pending"
    assert answers["/api/v1/orders"]["accession_numbers"] == ["DT0001"]
    assert answers["/api/v1/orders"]["order"]["steps"][0]["station_ae_title"] == "CT1_AE"
    assert (answers["/api/v1/orders/DT0001/cancel"]["previous_status"], answers["/api/v1/orders/DT0001/cancel"][
        "status"]) == ("SC", "CA")
    assert answers["/api/v1/orders/R2503050003/explain"]["accession_number"] == "R2503050003"
    assert "10-senders.yaml:" in answers["/api/v1/rules"][0]["where"], answers["/api/v1/rules"][0]
    assert answers["/api/v1/rules/check"]["ok"] is True
    [resent] = answers["/api/v1/audit"]["items"]
    assert (resent["action"], resent["actor"], resent["client"], resent["after"]["reason"]) == (
        "outbox.resend", "local", "127.0.0.1", "RIS back")
