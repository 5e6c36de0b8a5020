"""Where an order reports to, and why nowhere: the start-up warning names the variable to set, and
``swf orders ACCESSION`` shows each destination the order reports to, or "none" with the reason.

A RIS that sends another MSH-3 than the shipped sender rules expect gets its orders scheduled but never a
status back; nothing else tells the user why.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.mllp_receiver import Receiver

ORDER = ("MSH|^~\\&|{app}|RIVERSIDE|SWF_ENGINE|RADIOLOGY|20250305071500||ORM^O01|{app}0001|P|2.3.1\n"
         "PID|1||PAT20001^^^RIVERSIDE^MR||DOE^JANE||19610722|F\n"
         "ORC|NW|HP{n}^HIS|RF{n}^RIS||SC||1^once^^20250305083000^^R\n"
         "OBR|1|HP{n}^HIS|RF{n}^RIS|CTABD^CT abdomen^99RAD||||||||||||||ACC{n}|RP{n}|SPS{n}||||CT\n\n")


def swf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI with exactly the SWF_* variables given: what a second terminal would have."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SWF_")}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})})


def test_off_destinations_name_their_variable_and_orders_show_where_they_report(start_engine, tmp_path) -> None:
    archive = Receiver()
    try:
        engine = start_engine(env={"SWF_RIS_ADDRESS": "", "SWF_HIS_ADDRESS": "", "SWF_ARCHIVE_ADDRESS": archive.address})
        log = engine.log()
        assert ("destination ris is off: its address ${SWF_RIS_ADDRESS} is empty: set the environment variable "
                "SWF_RIS_ADDRESS to host:port") in log
        assert "destination his is off: its address ${SWF_HIS_ADDRESS} is empty" in log
        assert "destination archive is off" not in log
        sample = tmp_path / "orders.hl7"
        sample.write_text(ORDER.format(app="RIS", n=1) + ORDER.format(app="RADIS", n=2))
        replayed = swf("replay", str(sample), "--to", engine.address, "--no-progress")
        assert "sent 2: AA 2" in replayed.stdout, replayed.stdout + replayed.stderr
        archive.wait_for(1)
        deadline = time.monotonic() + 10
        while "1 delivered" not in (shown := swf("orders", "ACC1", "--data-dir", str(engine.data_dir),
                                                 env={"SWF_ARCHIVE_ADDRESS": archive.address}).stdout):
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
    finally:
        archive.close()
    lines = shown.splitlines()
    assert "reports to: archive" in lines
    assert re.search(r"^  ris +off: its address \$\{SWF_RIS_ADDRESS\} is empty: set the environment variable "
                     r"SWF_RIS_ADDRESS to host:port; outbox: no messages$", shown, re.M), shown
    assert re.search(rf"^  archive +procedure messages to {re.escape(archive.address)}; outbox: 1 delivered$",
                     shown, re.M), shown

    unknown_sender = swf("orders", "ACC2", "--data-dir", str(engine.data_dir)).stdout
    assert ("reports to: none: no rule named a destination for this order (sent by MSH-3 'RADIS'); the 'outbound:' "
            "of the sender rules in routes decides") in unknown_sender.splitlines()

    all_off = swf("orders", "ACC1", "--data-dir", str(engine.data_dir)).stdout  # a shell without the variables
    assert "reports to: none: no destination the rules named is on" in all_off.splitlines()


def test_shipped_sender_rules_say_at_the_top_which_sender_names_they_expect() -> None:
    text = (ROOT / "routes" / "10-senders.yaml").read_text()
    header = "\n".join(line for line in text.split("\nrules:")[0].splitlines() if line.startswith("#"))
    senders = set()
    for rule in yaml.safe_load(text)["rules"]:
        expected = (rule.get("when") or {}).get("MSH-3", [])
        senders.update([expected] if isinstance(expected, str) else expected)
    assert senders == {"RIS", "RIS_*", "HIS", "CPOE", "re:^HIS_", "SWF_API"}
    for name in ("RIS", "RIS_<anything>", "HIS", "CPOE", "HIS_<anything>", "SWF_API"):
        assert f" {name}" in header, name
    assert "reports to: none" in header and "add it to the list" in header
