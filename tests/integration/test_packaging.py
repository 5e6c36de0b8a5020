"""Building the package (what `make install` / `pip install` does) prints no warning about our own metadata."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# setuptools' deprecation boxes ("`project.license` as a TOML table is deprecated", "!!****!!") and any
# other warning of the build backend; pip's own "[notice]" lines are not the project's.
WARNING = re.compile(r"warning|deprecat|!!", re.I)


def test_wheel_builds_without_warnings(tmp_path: Path) -> None:
    source = tmp_path / "source"   # a copy: building in the worktree would leave build/ and *.egg-info
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "engine", source / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and re.search(r"No matching distribution|Could not find a version|NewConnectionError",
                                          done.stdout + done.stderr):
        pytest.skip("the build backend (setuptools>=77) cannot be fetched: no package index reachable")
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "dist").glob("swf_engine-*.whl"))
    warnings = [line for line in (done.stdout + done.stderr).splitlines()
                if WARNING.search(line) and "[notice]" not in line]
    assert warnings == [], "\n".join(warnings)
