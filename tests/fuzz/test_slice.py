"""A few seconds of every fuzz target (grammar mutators, fixed seed) in ``make test``: 0 crashes, 0 hangs.
``make fuzz`` runs the same targets at scale, coverage-guided."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from . import harness

INPUTS = {"rules": 60, "mpps": 80, "header": 150}     # the slow targets; the others run 300 inputs


@pytest.mark.parametrize("name", harness.TARGETS)
def test_target_slice_has_no_crash_or_hang(name: str, tmp_path: Path) -> None:
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fuzzer = harness.Fuzzer(harness.load(name), tmp_path / "work", 5.0, tmp_path / "findings")
            try:
                tally = fuzzer.grammar_run(INPUTS.get(name, 300), seed=14)
            finally:
                fuzzer.close()
    finally:
        logging.disable(logging.NOTSET)
    assert tally.inputs >= INPUTS.get(name, 300)
    assert (tally.crashes, tally.hangs) == (0, 0), tally.findings
