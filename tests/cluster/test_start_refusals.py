"""Starts that must be refused on a shared PostgreSQL (issue 15): a database migrated by newer code, and
an instance name a live instance holds; a dead instance's name is taken over."""
from __future__ import annotations

import subprocess
import sys
import time

import psycopg

from engine.store.schema import LATEST_VERSION
from tests.conftest import ROOT, free_port


def serve(database_url: str, data_dir, *extra: str) -> subprocess.CompletedProcess:
    """``swf serve`` expected to refuse to start (its exit status and stderr)."""
    return subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(data_dir),
                           "--database-url", database_url, "--mllp-port", str(free_port()),
                           "--http-port", str(free_port()), "--dicom-port", str(free_port()), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_a_database_newer_than_the_code_is_refused_untouched(make_instances, database_url, tmp_path) -> None:
    [a] = make_instances(1)
    a.stop()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (LATEST_VERSION + 1,))
        before = connection.execute("SELECT name, heartbeat_at FROM cluster_instances ORDER BY name").fetchall()
    refused = serve(database_url, tmp_path / "other")
    assert refused.returncode == 2, refused.stderr
    assert f"schema version {LATEST_VERSION + 1}, newer than this engine's {LATEST_VERSION}" in refused.stderr
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == LATEST_VERSION + 1
        assert connection.execute("SELECT name, heartbeat_at FROM cluster_instances ORDER BY name").fetchall() == before


def test_a_live_name_is_refused_and_a_dead_one_taken_over(make_instances, database_url, tmp_path) -> None:
    [a] = make_instances(1)
    with psycopg.connect(database_url) as connection:
        [(name, pid)] = connection.execute("SELECT name, pid FROM cluster_instances").fetchall()
    config = tmp_path / "same-name.yaml"
    config.write_text(f"cluster:\n  instance: '{name}'\n")
    refused = serve(database_url, a.data_dir, "--config", str(config))
    assert refused.returncode == 2, refused.stderr
    assert f"instance name {name!r} is in use by a live instance" in refused.stderr and f"pid {pid}" in refused.stderr
    with psycopg.connect(database_url, autocommit=True) as connection:   # the live one's row is untouched
        assert connection.execute("SELECT pid FROM cluster_instances WHERE name = %s", (name,)).fetchone()[0] == pid
        connection.execute("INSERT INTO cluster_instances (name, host, pid, started_at, heartbeat_at)"
                           " VALUES ('ghost', 'gone-host', 4242, '', %s)", (time.time() - 120,))
    config.write_text("cluster:\n  instance: ghost\n")
    [ghost] = make_instances(1, extra=("--config", str(config)))
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT pid FROM cluster_instances WHERE name = 'ghost'").fetchone()[0] == \
            ghost.process.pid
