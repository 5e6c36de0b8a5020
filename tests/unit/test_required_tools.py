"""`make test` (and so .ci/run) requires the third-party tools .ci/system-deps installs: with
SWF_REQUIRE_TOOLS=1 a test whose tool is missing fails, it is not skipped, so CI cannot pass with the browser,
Orthanc or DCMTK tests unrun.  Shown by running those tests with an empty PATH (none of the tools found)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REQUIRE_TOOLS, ROOT

NEEDING_TOOLS = ["tests/integration/test_console_browser.py::test_a_viewer_sees_but_may_not_act",
                 "tests/integration/test_commitment.py::test_orthanc_as_commitment_scu_gets_the_failure_report",
                 "tests/integration/test_worklist.py::test_match_sets_agree_with_dcmtk_wlmscpfs"]


def run_without_tools(tmp_path: Path, required: bool) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != REQUIRE_TOOLS}
    env["PATH"] = str(tmp_path)               # an empty folder: chromium, Orthanc, wlmscpfs are not found
    if required:
        env[REQUIRE_TOOLS] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", *NEEDING_TOOLS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_tool_skips_on_a_developer_machine_and_fails_under_make_test(tmp_path: Path) -> None:
    skipped = run_without_tools(tmp_path, required=False)
    assert skipped.returncode == 0 and re.search(r"\b3 skipped\b", skipped.stdout), skipped.stdout[-2000:]
    failed = run_without_tools(tmp_path, required=True)
    assert failed.returncode == 1 and re.search(r"\b3 errors?\b", failed.stdout), failed.stdout[-2000:]
    for tool in ("chromium", "Orthanc", "wlmscpfs"):
        assert re.search(rf"{tool}.* is missing and {REQUIRE_TOOLS}=1 requires it", failed.stdout), tool
    assert f"{REQUIRE_TOOLS}=1 $(BIN)/python -m pytest" in (ROOT / "Makefile").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
