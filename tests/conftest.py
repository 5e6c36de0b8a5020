"""Shared fixtures: an in-process ingest pipeline on a real SQLite file, and a real engine process."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from engine.config import Config
from engine.hl7.profiles import load_profiles
from engine.outbound.dispatch import EventDispatcher
from engine.rules.ruleset import load_ruleset
from engine.store.database import Store
from engine.workflow.ingest import IngestResult, Ingestor, Received

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_TOOLS = "SWF_REQUIRE_TOOLS"   # "1" in `make test` and .ci/run: a missing third-party tool fails its tests


def require_tool(found: object, what: str) -> None:
    """Skip a test whose third-party tool is missing (a developer's machine), but fail it when
    SWF_REQUIRE_TOOLS=1: there .ci/system-deps has installed every tool, so a missing one is a broken set-up,
    and a suite that skipped the test would pass without having run it."""
    if found:
        return
    if os.environ.get(REQUIRE_TOOLS) == "1":
        pytest.fail(f"{what} is missing and {REQUIRE_TOOLS}=1 requires it: install it with .ci/system-deps",
                    pytrace=False)
    pytest.skip(f"{what} is not installed (.ci/system-deps installs it; under {REQUIRE_TOOLS}=1 this fails)")


def hl7(*segments: str) -> bytes:
    """A message from segment strings (CR separated), encoded UTF-8 unless given bytes."""
    return "\r".join(segments).encode("utf-8")


@dataclass
class Pipeline:
    store: Store
    ingestor: Ingestor
    config: Config

    def send(self, raw: bytes, peer: str = "test") -> IngestResult:
        return self.store.write(lambda txn: self.ingestor(txn, Received(raw, peer)))

    def read(self, sql: str, params: tuple = ()) -> list[dict]:
        return self.store.read(lambda txn: txn.query(sql, params))


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    stores: list[Store] = []

    def factory(routes: Path | None = None, **orders_settings: object) -> Pipeline:
        config = Config(data_dir=str(tmp_path / "var"))
        config.hl7.default_charset = "latin-1"
        for key, value in orders_settings.items():
            setattr(config.orders, key, value)
        store = Store(config.database)
        stores.append(store)
        ruleset = load_ruleset(routes or ROOT / "routes")
        profiles = load_profiles(ROOT / "profiles")
        ingestor = Ingestor(config, profiles, lambda: ruleset)
        store.before_commit.append(EventDispatcher(lambda: ruleset.destinations, profiles, ingestor.identity))
        return Pipeline(store, ingestor, config)

    yield factory
    for store in stores:
        store.close()


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"engine exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@dataclass
class EngineProcess:
    process: subprocess.Popen
    mllp_port: int
    http_port: int
    dicom_port: int
    data_dir: Path
    log_path: Path
    routes: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.mllp_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def read_rows(self, sql: str, params: tuple = ()) -> list[dict]:
        """Rows of the engine's SQLite file, read-only (the engine alone writes)."""
        connection = sqlite3.connect(f"file:{self.data_dir / 'swf.sqlite'}?mode=ro", uri=True, timeout=10)
        connection.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in connection.execute(sql, params)]
        finally:
            connection.close()

    def swf(self, *args: str) -> subprocess.CompletedProcess:
        return run_swf(*args)


def run_swf(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


class EngineLauncher:
    """Starts real ``swf serve`` processes with their files under one directory and stops them all at the
    end of its fixture's scope (a test, or a module whose tests share one engine)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[EngineProcess] = []

    def __call__(self, *extra: str, routes: Path | None = None, data_dir: Path | None = None,
                 allow_any_ae: bool = True, env: dict[str, str] | None = None) -> EngineProcess:
        mllp_port, http_port, dicom_port = free_port(), free_port(), free_port()
        data_dir = data_dir or self.directory / "var"
        log_path = self.directory / f"engine-{len(self.processes)}.log"
        routes = routes or ROOT / "routes"
        command = [sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(data_dir), "--mllp-port",
                   str(mllp_port), "--http-port", str(http_port), "--dicom-port", str(dicom_port),
                   "--routes", str(routes), *(["--allow-any-ae"] if allow_any_ae else []), *extra]
        process = subprocess.Popen(command, cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        engine = EngineProcess(process, mllp_port, http_port, dicom_port, data_dir, log_path, routes)
        self.processes.append(engine)
        wait_for_port(mllp_port, process)
        wait_for_port(dicom_port, process)
        wait_for_port(http_port, process)   # the last listener to open
        return engine

    def stop_all(self) -> None:
        for engine in self.processes:
            if engine.process.poll() is None:
                engine.process.terminate()
                try:
                    engine.process.wait(10)
                except subprocess.TimeoutExpired:
                    engine.process.kill()


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[EngineLauncher]:
    launcher = EngineLauncher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def start_module_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineLauncher]:
    """For a module whose tests can share one engine (each looks only at what it sent): one start, not one
    per test."""
    launcher = EngineLauncher(tmp_path_factory.mktemp("module-engine"))
    yield launcher
    launcher.stop_all()
