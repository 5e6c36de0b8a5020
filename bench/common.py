"""Shared helpers of the benchmarks: processes, ports, the engine under test, timing statistics, tables.

Everything listens on 127.0.0.1 on ports picked free at run time (other engines and lab peers may run
on the machine).  Every process a benchmark starts is stopped by its own pid when the benchmark ends.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ENGINE_PY = Path(sys.executable)                 # run.py runs with the engine's venv (make bench: .venv)
PEER_VENV = BENCH / ".venv"                      # txHL7 + python-hl7 + py-spy live here, not in the engine's venv
PEER_PY = PEER_VENV / "bin" / "python"
PY_SPY = PEER_VENV / "bin" / "py-spy"
HOST = "127.0.0.1"
ENGINE_AET = "SWF_ENGINE"
SCU_AET = "BENCHSCU"

# DCMTK (and Orthanc, which links it) keeps Nagle on unless TCP_NODELAY=1 is in the environment: ~40 ms
# per DIMSE round trip on loopback otherwise (lab/README.md, pitfall 1).  Every peer and client gets it.
PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


class BenchFailure(RuntimeError):
    """A wrong answer (match count, files received, ACK code) or a peer that would not run."""


# -- ports and processes ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen | None = None, timeout: float = 60, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise BenchFailure(f"process {process.args[0]} exited with {process.returncode} before listening "
                               f"on {port}\n{tail}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchFailure(f"nothing listening on {HOST}:{port} after {timeout} s")


@dataclass
class Proc:
    """A process this benchmark started (stopped by its own pid only)."""

    name: str
    popen: subprocess.Popen
    log: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_process(name: str, cmd: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    out = open(log, "ab")
    popen = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env or PEER_ENV, cwd=str(cwd or ROOT))
    out.close()
    return Proc(name, popen, log)


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


# -- the engine under test ------------------------------------------------------------------------------
@dataclass
class Engine:
    proc: Proc
    data_dir: Path
    mllp_port: int
    dicom_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def database(self) -> Path:
        return self.data_dir / "swf.sqlite"

    def stop(self) -> None:
        self.proc.stop()


def start_engine(name: str, data_dir: Path, log_dir: Path, env: dict[str, str] | None = None,
                 extra: Sequence[Any] = ()) -> Engine:
    """``swf serve`` on free ports, DICOM open to any calling AE, no HTTP; waits until MLLP and DICOM listen.
    ``extra``: more arguments (e.g. ``--config FILE``)."""
    mllp_port, dicom_port = free_port(), free_port()
    cmd = [ENGINE_PY, "-m", "engine.cli", "serve", "--data-dir", data_dir, "--mllp-port", mllp_port,
           "--dicom-port", dicom_port, "--http-port", -1, "--allow-any-ae", "--routes", ROOT / "routes",
           "--profiles", ROOT / "profiles", *extra]
    proc = start_process(name, cmd, log_dir, env={**PEER_ENV, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        wait_port(mllp_port, proc.popen, log=proc.log)
        wait_port(dicom_port, proc.popen, log=proc.log)
    except BaseException:
        proc.stop()
        raise
    proc.ports = {"mllp": mllp_port, "dicom": dicom_port}
    return Engine(proc, data_dir, mllp_port, dicom_port)


def sqlite_count(database: Path, sql: str, params: tuple = ()) -> int:
    """A count from the engine's database, read beside the running engine (WAL)."""
    import sqlite3

    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        return int(connection.execute(sql, params).fetchone()[0])
    finally:
        connection.close()


# -- timing ---------------------------------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100 * (len(sorted_values) - 1)))))
    return sorted_values[index]


@dataclass
class Stats:
    n: int
    median: float
    min: float
    max: float
    p99: float

    @classmethod
    def of(cls, values: Iterable[float]) -> "Stats":
        data = sorted(values)
        if not data:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        return cls(len(data), statistics.median(data), data[0], data[-1], percentile(data, 99))


def run_timed(cmd: Sequence[str], timeout: float = 900, env: dict[str, str] | None = None) -> tuple[float, str, int]:
    """Wall time of one client process (start, association, work, release), its output and exit code."""
    t0 = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env=env or PEER_ENV, timeout=timeout)
    return time.perf_counter() - t0, done.stdout.decode("latin-1"), done.returncode


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- results --------------------------------------------------------------------------------------------
@dataclass
class Target:
    benchmark: str
    target: str
    measured: str
    met: bool | None            # None: not measured in this run


@dataclass
class Section:
    """What one benchmark hands back: its markdown and its targets."""

    name: str
    title: str
    body: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.body.append(line)

    def target(self, target: str, measured: str, met: bool | None) -> None:
        self.targets.append(Target(self.name, target, measured, met))
        verdict = "MET" if met else "not measured" if met is None else "MISSED"
        print(f"  target {target}: {measured} -> {verdict}", flush=True)


@dataclass
class Context:
    tmp: Path                   # everything of this run: engine data, peers' state, logs
    cache: Path                 # generated inputs kept between runs (worklist files, images)
    quick: bool
    rounds: int | None          # override of each benchmark's own number of rounds
    profile: bool

    @property
    def logs(self) -> Path:
        return self.tmp / "logs"

    def fresh_dir(self, name: str) -> Path:
        path = self.tmp / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path
