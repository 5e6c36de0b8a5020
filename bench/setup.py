"""Set-up of the benchmark peers; idempotent, installs only what is missing.

* Debian packages ``dcmtk`` (wlmscpfs, storescp, findscu, storescu) and ``orthanc`` (with its
  ModalityWorklists plugin) via apt-get, as root.  The orthanc package enables its own service on
  4242/8042; the benchmarks never use it and start their own Orthanc on free ports.
* ``bench/.venv``: a separate venv for the MLLP peers (Twisted, txHL7, python-hl7) and py-spy.  Nothing
  is added to the engine's venv or to pyproject's dependencies.

    .venv/bin/python bench/setup.py        # run.py calls ensure() itself
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PEER_PY, PEER_VENV  # noqa: E402

APT_PACKAGES = {"dcmtk": "/usr/bin/wlmscpfs", "orthanc": "/usr/share/orthanc/plugins/libModalityWorklists.so"}
PEER_PACKAGES = ["twisted", "hl7", "txhl7", "py-spy"]
PEER_IMPORTS = "import twisted, hl7, txHL7"


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in done.stdout


def ensure_apt() -> None:
    missing = [p for p, path in APT_PACKAGES.items() if not (_installed(p) and Path(path).exists())]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing Debian packages {missing}: run as root (apt-get install {' '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)


def ensure_peer_venv() -> None:
    ready = PEER_PY.exists() and (PEER_VENV / "bin" / "py-spy").exists() and subprocess.run(
        [str(PEER_PY), "-c", PEER_IMPORTS], capture_output=True).returncode == 0
    if ready:
        return
    base = getattr(sys, "_base_executable", None) or shutil.which("python3")
    print(f"creating {PEER_VENV} with {' '.join(PEER_PACKAGES)}", flush=True)
    subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_PY), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)


def ensure() -> None:
    ensure_apt()
    ensure_peer_venv()


if __name__ == "__main__":
    ensure()
    print("bench set-up complete")
