"""The store: one interface over SQLite (default, WAL) and PostgreSQL, with group commit.

All writes go through one writer thread.  Work submitted by the MLLP and DICOM adapters is queued;
the writer takes everything that is waiting, runs each piece in its own SAVEPOINT (so one failing
message never undoes another), commits the batch once and only then resolves the futures.  Durability
therefore costs one disk flush per batch, not per message, and nothing is acknowledged before it is
on disk.  Reads use their own connections (WAL lets them run beside the writer).
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from .schema import LATEST_VERSION, MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreError(RuntimeError):
    """The store could not do what was asked (cannot open, commit failed, closed)."""


@dataclass(frozen=True)
class Dialect:
    name: str
    pk: str
    blob: str
    placeholder: str

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "?")
POSTGRES = Dialect("postgresql", "BIGSERIAL PRIMARY KEY", "BYTEA", "%s")


class Transaction:
    """A connection inside an open transaction; every statement takes ``?`` placeholders."""

    def __init__(self, connection: Any, dialect: Dialect):
        self.connection = connection
        self.dialect = dialect
        self._savepoints = 0

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        cursor = self.connection.cursor()
        cursor.execute(self.dialect.sql(sql), tuple(params))
        return cursor

    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        cursor = self.execute(sql, params)
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def one(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        cursor = self.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row))

    def insert(self, sql: str, params: tuple | list = ()) -> int:
        """Run an INSERT and return the new row's id."""
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self.execute(f"RELEASE SAVEPOINT {name}")


def _sqlite_connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed (and so acknowledged) transaction survives power loss, not only a crash.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


class Store:
    """Opens the database named by ``url`` (``sqlite:///path`` or ``postgresql://...``)."""

    def __init__(self, url: str, max_batch: int = 512):
        self.url = url
        self.max_batch = max_batch
        if url.startswith("sqlite:///"):
            self.dialect = SQLITE
            self.path = url[len("sqlite:///"):]
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = POSTGRES
            self.path = ""
        else:
            raise StoreError(f"unsupported database URL {url!r} (use sqlite:///PATH or postgresql://...)")
        self._queue: queue.Queue[tuple[Callable[[Transaction], Any], Future] | None] = queue.Queue()
        self._local = threading.local()
        self._writer: threading.Thread | None = None
        self._write_connection = self._connect()
        self._migrate()
        self.batches_committed = 0

    # -- connections --------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect is SQLITE:
            return _sqlite_connect(self.path)
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError("PostgreSQL needs the 'psycopg' package: pip install 'swf-engine[postgres]'") from exc
        return psycopg.connect(self.url, autocommit=True)

    def _begin(self, connection: Any) -> None:
        connection.cursor().execute("BEGIN")

    def _migrate(self) -> None:
        connection = self._write_connection
        txn = Transaction(connection, self.dialect)
        txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = txn.one("SELECT MAX(version) AS version FROM schema_version")
        current = (row or {}).get("version") or 0
        for number in range(current + 1, LATEST_VERSION + 1):
            self._begin(connection)
            try:
                for statement in MIGRATIONS[number - 1]:
                    txn.execute(statement.format(pk=self.dialect.pk, blob=self.dialect.blob))
                txn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
                connection.cursor().execute("COMMIT")
            except Exception:
                connection.cursor().execute("ROLLBACK")
                raise
            log.info("database schema migrated to version %d", number)

    # -- writes (group commit) ----------------------------------------------------------------
    def start(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
            self._writer.start()

    def submit(self, work: Callable[[Transaction], T]) -> "Future[T]":
        """Queue ``work`` to run in a write transaction; the future resolves after the commit."""
        future: Future[T] = Future()
        if self._writer is None:
            self.start()
        self._queue.put((work, future))
        return future

    def write(self, work: Callable[[Transaction], T], timeout: float | None = 60) -> T:
        """Run ``work`` in a write transaction and wait for its commit."""
        return self.submit(work).result(timeout)

    def _write_loop(self) -> None:
        connection = self._write_connection
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._run_batch(connection, batch)

    def _run_batch(self, connection: Any, batch: list[tuple[Callable[[Transaction], Any], Future]]) -> None:
        txn = Transaction(connection, self.dialect)
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        try:
            self._begin(connection)
            for work, future in batch:
                try:
                    with txn.savepoint():
                        outcomes.append((future, work(txn), None))
                except Exception as exc:  # the work's own effects are rolled back; others stay
                    outcomes.append((future, None, exc))
            connection.cursor().execute("COMMIT")
            self.batches_committed += 1
        except Exception as exc:
            log.exception("store commit failed; %d pending writes are not acknowledged", len(batch))
            try:
                connection.cursor().execute("ROLLBACK")
            except Exception:
                log.exception("rollback after failed commit also failed")
            for _work, future in batch:
                future.set_exception(StoreError(f"commit failed: {exc}"))
            return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    # -- reads --------------------------------------------------------------------------------
    def read(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` on this thread's read connection, in one read transaction."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        txn = Transaction(connection, self.dialect)
        self._begin(connection)
        try:
            return work(txn)
        finally:
            connection.cursor().execute("ROLLBACK")

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        self._write_connection.close()
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
