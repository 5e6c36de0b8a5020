"""Every list command of ``swf`` prints its header with rows, or one line saying nothing matched: never
empty output, which a new user cannot tell from a wrong --data-dir or a hung command."""
from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_swf

# (arguments, the line printed when nothing matches) on a database holding only the v2.3.1 sample day,
# which is all AA: no rejected message, no MPPS, no commitment, no outbound or DICOM forward.
NOTHING = [
    (["journal", "--status", "rejected"], "no journal entries with status rejected"),
    (["journal", "--status", "failed"], "no journal entries with status failed"),
    (["outbox"], "no outbox messages waiting (--dead: those given up on, --all: every one)"),
    (["outbox", "--dead"], "no outbox messages given up on"),
    (["outbox", "--all"], "no outbox messages yet"),
    (["mpps"], "no performed procedure steps (MPPS) yet"),
    (["mpps", "--unscheduled"], "no unscheduled performed procedure steps"),
    (["commitments"], "no storage commitment requests yet"),
    (["commitments", "--status", "dead"], "no storage commitment requests with status dead"),
    (["forwards"], "no DICOM forwards waiting (--dead: those given up on, --all: every one)"),
    (["forwards", "--dead"], "no DICOM forwards given up on"),
    (["forwards", "--all"], "no DICOM forwards yet"),
]


@pytest.fixture
def sample_day(start_engine):
    engine = start_engine()
    replayed = run_swf("replay", str(ROOT / "samples" / "day-v231.hl7"), "--to", engine.address, "--no-progress")
    assert "sent 32: AA 32" in replayed.stdout, replayed.stdout + replayed.stderr
    return engine


def test_every_list_command_says_when_nothing_matched(sample_day) -> None:
    for arguments, nothing in NOTHING:
        done = run_swf(*arguments, "--data-dir", str(sample_day.data_dir))
        assert done.returncode == 0, f"swf {' '.join(arguments)}: {done.stderr}"
        assert done.stdout == nothing + "\n", f"swf {' '.join(arguments)}"


def test_listings_with_rows_start_with_their_header(sample_day) -> None:
    journal = run_swf("journal", "--status", "applied", "--data-dir", str(sample_day.data_dir)).stdout.splitlines()
    assert journal[0].split() == ["ID", "RECEIVED", "MESSAGE", "CONTROL", "ID", "STATUS", "ACK", "REASON"]
    assert len(journal) == 1 + 32 and all(line.startswith("#") for line in journal[1:])
    orders = run_swf("orders", "--data-dir", str(sample_day.data_dir)).stdout.splitlines()
    assert orders[0].startswith("ACCESSION") and len(orders) == 1 + 12


def test_an_empty_database_says_so(start_engine) -> None:
    engine = start_engine()
    for arguments, nothing in [(["orders"], "no orders yet"), (["journal"], "no journal entries yet")]:
        done = run_swf(*arguments, "--data-dir", str(engine.data_dir))
        assert (done.returncode, done.stdout) == (0, nothing + "\n"), done.stderr
