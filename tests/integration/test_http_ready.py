"""``GET /ready`` for load balancers (issue 13): 200 while the database answers, the listeners are open and
rules are in force; 503 naming the database when its server is gone, and the rest of the engine (the
/health page, from memory) still answers."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time

from tests.conftest import ROOT, free_port
from tests.integration.test_http_health import http_get

START_POSTGRES = ROOT / ".ci" / "start-postgres"


def ready(port: int) -> tuple[int, dict]:
    status, body = http_get(port, "/ready")
    return status, json.loads(body)


def test_ready_on_sqlite(start_engine) -> None:
    engine = start_engine()
    assert ready(engine.http_port) == (200, {"status": "ready", "checks": {
        "database": "ok", "mllp": "ok", "rules": "ok", "cluster": "ok", "dicom": "ok"}})
    assert http_get(engine.http_port, "/ready/x")[0] == 404


def test_not_ready_when_the_postgresql_server_is_gone(start_engine) -> None:
    directory = tempfile.mkdtemp(prefix="swf-pg-ready-")
    started = subprocess.run(["bash", str(START_POSTGRES), directory, str(free_port())], capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    try:
        engine = start_engine("--database-url", url)
        assert ready(engine.http_port)[0] == 200
        stopped = subprocess.run(["bash", str(START_POSTGRES), "--stop", directory], capture_output=True,
                                 text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        began = time.monotonic()
        status, body = ready(engine.http_port)
        assert time.monotonic() - began < 6
        assert status == 503 and body["status"] == "not ready", body
        assert body["checks"]["database"].startswith("the database does not answer: "), body
        assert {name: value for name, value in body["checks"].items() if name not in ("database", "cluster")} == {
            "mllp": "ok", "rules": "ok", "dicom": "ok"}
        assert http_get(engine.http_port, "/health")[0] == 200
        assert "not ready: the database does not answer" in engine.log()
    finally:
        subprocess.run(["bash", str(START_POSTGRES), "--stop", directory], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
