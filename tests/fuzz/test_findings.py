"""Each input ``make fuzz`` found a problem with, through its fuzz target: answered, no crash or hang."""
from __future__ import annotations

from pathlib import Path

import pytest

from . import harness
from .findings import FINDINGS


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_finding_runs_clean_through_its_target(name: str, tmp_path: Path) -> None:
    fuzzer = harness.Fuzzer(harness.load(name), tmp_path, 10.0)
    try:
        outcome = fuzzer.one(FINDINGS[name])
    finally:
        fuzzer.close()
    assert not outcome.startswith(("crash", "hang")), (outcome, fuzzer.tally)
