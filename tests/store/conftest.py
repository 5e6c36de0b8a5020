"""Store fixtures: every store test runs on SQLite (a temp file) and on a real PostgreSQL server.

The server is ``SWF_TEST_POSTGRES_URL`` when set; otherwise ``.ci/start-postgres`` makes a throwaway
cluster in a temp dir for the session (as the user postgres when we are root), on a free port of
127.0.0.1, and it is stopped at the end.  Each test gets a fresh schema on that server (the URL sets
``search_path``), dropped afterwards.  Without PostgreSQL binaries the postgres tests fail, they do not
skip: ``make test`` installs them through ``.ci/system-deps``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from engine.store.database import Store, redact
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
START_POSTGRES = ROOT / ".ci" / "start-postgres"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL database the tests may create schemas in."""
    url = os.environ.get("SWF_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    # mkdtemp, not tmp_path_factory: pytest's base temp dir is closed to the postgres user when root
    directory = tempfile.mkdtemp(prefix="swf-pg-")
    try:
        result = subprocess.run(["bash", str(START_POSTGRES), directory, str(free_port())],
                                capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(START_POSTGRES), "--stop", directory], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail("a throwaway PostgreSQL server did not start within 180 s", pytrace=False)
    if result.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail("cannot start a throwaway PostgreSQL server for the postgres tests "
                    "(or set SWF_TEST_POSTGRES_URL):\n" + (result.stderr + result.stdout).strip(), pytrace=False)
    url = result.stdout.strip().splitlines()[-1]
    try:
        yield url
    finally:
        stopped = subprocess.run(["bash", str(START_POSTGRES), "--stop", directory], capture_output=True,
                                 text=True, timeout=60)
        if stopped.returncode == 0:
            shutil.rmtree(directory, ignore_errors=True)
        else:  # leave the directory (and its server log) for a look
            print(f"could not stop the PostgreSQL server in {directory}: {stopped.stderr}")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections work in a new, empty schema (dropped after the test)."""
    try:
        import psycopg
    except ImportError:
        pytest.fail("the postgres tests need psycopg: pip install -e '.[test]'", pytrace=False)
    schema = f"swf_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        pytest.fail(f"cannot create a schema on {redact(postgres_server)}: {exc}", pytrace=False)
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of each engine in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[..., Store]]:
    """Opens stores on ``store_url`` (or another URL); all are closed after the test."""
    stores: list[Store] = []

    def factory(url: str | None = None, **kwargs: object) -> Store:
        store = Store(url or store_url, **kwargs)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store()
