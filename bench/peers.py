"""Starting the real third-party peers, each on free loopback ports with its state in the run's temp dir.

DCMTK wlmscpfs (MWL SCP over .wl files), Orthanc 1.10 with its ModalityWorklists plugin (the same
files), DCMTK storescp (Storage SCP), and two MLLP servers in ``peers/`` run with the bench venv's
python (txHL7 + python-hl7, and raw Twisted).  Every peer gets TCP_NODELAY=1 (DCMTK's Nagle otherwise
adds ~40 ms per DIMSE round trip on loopback).
"""
from __future__ import annotations

import json
from pathlib import Path

from common import BENCH, ENGINE_PY, HOST, PEER_PY, Proc, free_port, start_process, wait_port

ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libModalityWorklists.so")


def start_wlmscpfs(data_dir: Path, log_dir: Path) -> Proc:
    """``data_dir/<AE>/lockfile + *.wl``; called AE title = the sub-folder's name."""
    port = free_port()
    # -dhl: no reverse DNS lookup per association; default --fork: one child per association.
    proc = start_process("wlmscpfs", ["wlmscpfs", "-dhl", "-dfp", data_dir, port], log_dir)
    wait_port(port, proc.popen, log=proc.log)
    proc.ports = {"dicom": port}
    return proc


def start_orthanc(worklist_dir: Path, state_dir: Path, log_dir: Path, aet: str = "BENCHORTHANC") -> Proc:
    """Orthanc with the worklist plugin reading ``worklist_dir`` (flat folder of .wl files)."""
    dicom_port, http_port = free_port(), free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "SWF-BENCH-ORTHANC",
        "StorageDirectory": str(state_dir / "db"),
        "IndexDirectory": str(state_dir / "db"),
        "Plugins": [str(ORTHANC_PLUGIN)],
        "Worklists": {"Enable": True, "Database": str(worklist_dir)},
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowFindWorklist": True,   # default false: an undeclared SCU's worklist query is refused
        "DicomModalities": {},
        "SaveJobs": False,
    }
    path = state_dir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    proc = start_process("orthanc", ["Orthanc", path], log_dir)
    wait_port(http_port, proc.popen, log=proc.log)
    wait_port(dicom_port, proc.popen, log=proc.log)
    proc.ports = {"dicom": dicom_port, "http": http_port}
    return proc


def start_storescp(out_dir: Path, log_dir: Path, aet: str = "BENCHSTORESCP") -> Proc:
    port = free_port()
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = start_process("storescp", ["storescp", "-dhl", "-aet", aet, "-od", out_dir, port], log_dir)
    wait_port(port, proc.popen, log=proc.log)
    proc.ports = {"dicom": port}
    return proc


def start_pynetdicom_scp(log_dir: Path, aet: str = "BENCHPYNETDICOM") -> Proc:
    """The minimal pynetdicom Storage SCP (peers/storescp_pynetdicom.py), in the engine's venv."""
    port = free_port()
    script = BENCH / "peers" / "storescp_pynetdicom.py"
    proc = start_process("storescp-pynetdicom", [ENGINE_PY, script, "--port", port, "--aet", aet], log_dir)
    wait_port(port, proc.popen, log=proc.log)
    proc.ports = {"dicom": port}
    return proc


def start_mllp_peer(kind: str, log_dir: Path) -> Proc:
    """``txhl7``: txHL7 MLLPFactory + python-hl7 parse + ACK; ``raw``: Twisted, ACK from MSH by slicing."""
    port = free_port()
    script = BENCH / "peers" / ("mllp_txhl7.py" if kind == "txhl7" else "mllp_raw.py")
    proc = start_process(f"mllp-{kind}", [PEER_PY, script, "--port", port], log_dir)
    wait_port(port, proc.popen, log=proc.log)
    proc.ports = {"mllp": port}
    return proc


__all__ = ["start_wlmscpfs", "start_orthanc", "start_storescp", "start_pynetdicom_scp", "start_mllp_peer", "HOST"]
