"""Driver exceptions never leave the store: each becomes DuplicateKey, StatementFailed or StoreUnavailable.

On both engines for a taken key and a bad statement; a locked SQLite file and a PostgreSQL connection
killed under a write are the database being unavailable (a StoreError, so peers are told to retry).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.store import counters, patients
from engine.store.database import (SQLITE, DuplicateKey, StatementFailed, Store, StoreError, StoreUnavailable,
                                   Transaction)


def test_a_taken_unique_key_is_a_duplicate_key_with_the_database_message(store: Store) -> None:
    store.write(lambda txn: patients.insert(txn, "PAT1", "H", {}))
    with pytest.raises(DuplicateKey, match="(?i)unique") as raised:
        store.write(lambda txn: patients.insert(txn, "PAT1", "H", {}))
    assert not isinstance(raised.value, StoreError)               # the store is fine: only that work failed
    assert type(raised.value.__cause__).__module__.split(".")[0] in ("sqlite3", "psycopg")
    with pytest.raises(DuplicateKey):                            # a taken primary key too
        store.write(lambda txn: [txn.execute("INSERT INTO counters (name, value) VALUES ('k', 1)") for _ in "ab"])
    assert store.read(lambda txn: txn.query("SELECT name FROM counters")) == []


def test_a_bad_statement_or_another_constraint_is_a_statement_failure(store: Store) -> None:
    for sql in ("SELECT nothing FROM no_such_table", "INSERT INTO counters (name, value) VALUES ('k', NULL)"):
        with pytest.raises(StatementFailed) as raised:
            store.write(lambda txn: txn.execute(sql))
        assert not isinstance(raised.value, (DuplicateKey, StoreError))
    with pytest.raises(StatementFailed):
        store.read(lambda txn: txn.query("SELECT nothing FROM no_such_table"))
    assert store.write(lambda txn: counters.next_value(txn, "after")) == 1   # the writer goes on


def test_a_locked_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    Store(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    impatient = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        txn = Transaction(impatient, SQLITE)
        txn.execute("BEGIN")
        with pytest.raises(StoreUnavailable, match="locked") as raised:
            txn.execute("INSERT INTO counters (name, value) VALUES ('k', 1)")
        assert isinstance(raised.value, StoreError) and isinstance(raised.value.__cause__, sqlite3.OperationalError)
    finally:
        holder.close()
        impatient.close()


@pytest.mark.postgres
def test_a_postgres_connection_killed_under_a_write_is_unavailable(postgres_url: str) -> None:
    import psycopg

    store = Store(postgres_url)
    try:
        def killed(txn: Transaction) -> None:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 10000)", (txn.connection.info.backend_pid,))
            txn.execute("INSERT INTO counters (name, value) VALUES ('lost', 1)")

        with pytest.raises(StoreUnavailable):
            store.write(killed)
        assert store.write(lambda txn: counters.next_value(txn, "after")) == 1   # a new connection next batch
        assert store.read(lambda txn: txn.query("SELECT name FROM counters")) == [{"name": "after"}]
    finally:
        store.close()
