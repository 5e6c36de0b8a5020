"""Two or more engine instances on one real PostgreSQL server and one shared storage directory, with a
real HAProxy in TCP mode in front of their MLLP and DICOM ports (issue 15).

The server is this module's own (``.ci/start-postgres``), so a test may stop and start it (a partition);
each test gets a fresh schema on it.  An instance keeps its ports across a kill and restart, so the proxy
(which checks each instance's ``GET /ready``) sends connections to it again once it is back.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import ROOT, free_port, require_tool, wait_for_port

START_POSTGRES = ROOT / ".ci" / "start-postgres"


@dataclass
class PostgresServer:
    """A throwaway server that a test may stop (a partition) and start again on the same port."""
    directory: str
    url: str

    @property
    def port(self) -> str:
        return self.url.rsplit(":", 1)[1].split("/")[0]

    def _pg_ctl(self, *args: str) -> None:
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*owner, str(bindir / "pg_ctl"), "-D", f"{self.directory}/data", *args], check=True,
                       capture_output=True, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "-t", "30", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", f"{self.directory}/server.log", "-o", f"-p {self.port}", "-w", "-t", "60", "start")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    directory = tempfile.mkdtemp(prefix="swf-pg-cluster-")
    started = subprocess.run(["bash", str(START_POSTGRES), directory, str(free_port())], capture_output=True,
                             text=True, timeout=180)
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"cannot start a PostgreSQL server: {started.stderr}", pytrace=False)
    try:
        yield PostgresServer(directory, started.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["bash", str(START_POSTGRES), "--stop", directory], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """A URL whose connections work in a new, empty schema of the module's server."""
    import psycopg
    schema = f"swf_cluster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{postgres.url}?options=-csearch_path%3D{schema}"


def http_status(port: int, path: str = "/ready", timeout: float = 3) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass
class Instance:
    """One ``swf serve`` of the cluster, on ports it keeps across restarts."""
    name: str
    data_dir: Path
    database_url: str
    routes: Path
    log_path: Path
    extra: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    mllp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    starts: int = 0

    def start(self, timeout: float = 30) -> "Instance":
        self.starts += 1
        command = [sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(self.data_dir),
                   "--database-url", self.database_url, "--mllp-port", str(self.mllp_port),
                   "--http-port", str(self.http_port), "--dicom-port", str(self.dicom_port),
                   "--routes", str(self.routes), "--allow-any-ae", *self.extra]
        log = open(self.log_path, "a")
        log.write(f"--- start {self.starts} of {self.name}\n")
        log.flush()
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        for port in (self.mllp_port, self.dicom_port, self.http_port):
            wait_for_port(port, self.process, timeout)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def make_instances(tmp_path: Path, database_url: str) -> Iterator[Callable[..., list[Instance]]]:
    """Starts N instances on the test's schema, sharing one data directory (so one storage_dir)."""
    made: list[Instance] = []

    def make(count: int = 2, routes: Path | None = None, extra: tuple[str, ...] = (),
             env: dict[str, str] | None = None) -> list[Instance]:
        shared = tmp_path / "shared"
        instances = [Instance(f"swf-{chr(ord('a') + len(made) + i)}", shared, database_url, routes or ROOT / "routes",
                              tmp_path / f"instance-{len(made) + i}.log", extra, dict(env or {}))
                     for i in range(count)]
        made.extend(instances)
        instances[0].start(60)          # the first applies the migrations
        for instance in instances[1:]:
            instance.start(60)
        return instances

    yield make
    for instance in made:
        instance.stop()


HAPROXY_TEMPLATE = """\
global
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 2
    option redispatch

backend swf_mllp
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
{mllp_servers}

backend swf_dicom
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
{dicom_servers}

frontend mllp
    bind {bind}:{mllp_port}
    default_backend swf_mllp

frontend dicom
    bind {bind}:{dicom_port}
    default_backend swf_dicom
"""


@dataclass(frozen=True)
class Backend:
    """One instance as the proxy sees it."""
    name: str
    host: str
    mllp_port: int
    dicom_port: int
    http_port: int


def haproxy_config(backends: list[Backend], mllp_port: int, dicom_port: int, bind: str = "127.0.0.1") -> str:
    """The configuration README.md's "Running two instances" shows: TCP mode, /ready health checks."""
    def servers(port: Callable[[Backend], int]) -> str:
        return "\n".join(f"    server {b.name} {b.host}:{port(b)} check port {b.http_port}" for b in backends)
    return HAPROXY_TEMPLATE.format(mllp_servers=servers(lambda b: b.mllp_port),
                                   dicom_servers=servers(lambda b: b.dicom_port),
                                   bind=bind, mllp_port=mllp_port, dicom_port=dicom_port)


@dataclass
class Proxy:
    process: subprocess.Popen
    mllp_port: int
    dicom_port: int
    config: str


@pytest.fixture
def make_proxy(tmp_path: Path) -> Iterator[Callable[[list[Instance]], Proxy]]:
    """A real HAProxy (Debian package haproxy) in front of the instances, in the foreground (-db)."""
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    require_tool(binary, "HAProxy (Debian package haproxy)")
    started: list[Proxy] = []

    def make(instances: list[Instance]) -> Proxy:
        mllp_port, dicom_port = free_port(), free_port()
        config = haproxy_config([Backend(i.name, "127.0.0.1", i.mllp_port, i.dicom_port, i.http_port)
                                 for i in instances], mllp_port, dicom_port)
        path = tmp_path / "haproxy.cfg"
        path.write_text(config)
        checked = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        process = subprocess.Popen([binary, "-db", "-f", str(path)], stdout=open(tmp_path / "haproxy.log", "w"),
                                   stderr=subprocess.STDOUT)
        proxy = Proxy(process, mllp_port, dicom_port, config)
        started.append(proxy)
        wait_for_port(mllp_port, process)
        wait_for_port(dicom_port, process)
        return proxy

    yield make
    for proxy in started:
        proxy.process.terminate()
        try:
            proxy.process.wait(10)
        except subprocess.TimeoutExpired:
            proxy.process.kill()


def wait_until(condition: Callable[[], object], timeout: float, what: str, step: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


def mllp_exchange(port: int, frame: bytes, timeout: float = 10) -> bytes:
    """Send one message on a new connection and read its ACK (b'' when the connection closed first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x0b" + frame + b"\x1c\r")
        buffer = b""
        while b"\x1c\r" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return b""
            buffer += chunk
    return buffer.split(b"\x1c\r")[0].lstrip(b"\x0b")
