"""The store: one interface over SQLite (default, WAL) and PostgreSQL, with group commit.

All writes go through one writer thread.  Work submitted by the MLLP and DICOM adapters is queued;
the writer takes everything that is waiting, runs each piece in its own SAVEPOINT (so one failing
message never undoes another), takes in what was queued meanwhile until nothing waits (at most
``max_batch`` pieces), commits the batch once and only then resolves the futures.  Durability
therefore costs one disk flush per batch, not per message, and nothing is acknowledged before it is
on disk.  Reads use their own connections (WAL lets them run beside the writer).

PostgreSQL: the connections run in autocommit mode and the store sends BEGIN/COMMIT itself, exactly
as on SQLite; statements keep ``?`` placeholders (translated to psycopg's ``%s``, a literal ``%``
doubled); BYTEA comes back as ``bytes`` like SQLite's BLOB; a read sees one snapshot (REPEATABLE READ,
READ ONLY), as a WAL read transaction does; a broken connection is replaced before the next batch.

Callers never see a driver exception: a statement's failure is a ``DuplicateKey`` or ``StatementFailed``
(that work alone is undone), a database that cannot serve now is ``StoreUnavailable`` (a ``StoreError``).
"""
from __future__ import annotations

import functools
import logging
import os
import queue
import re
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


class SchemaTooNew(StoreError):
    """The database's schema version is higher than the migrations this code knows."""


class StoreUnavailable(StoreError):
    """The database cannot serve now (locked or busy, connection lost, disk trouble): the same work may
    succeed later, so a peer is told to retry (DIMSE 0x0213, HL7 AE) rather than that its request is bad."""


class StatementFailed(Exception):
    """The database refused one statement of a piece of work (a constraint, a bad value); only that work
    is undone, the store goes on.  Not a ``StoreError``: the store itself is fine."""


class DuplicateKey(StatementFailed):
    """A row with this unique key exists already (e.g. a second N-CREATE of one SOP Instance UID that
    slipped past the check, from another process).  The message is the database's."""


# SQLite primary result codes that mean "not now" rather than "not this statement" (sqlite.org/rescode.html).
_SQLITE_UNAVAILABLE = {5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 26}   # BUSY LOCKED NOMEM READONLY INTERRUPT IOERR
#                                                                 CORRUPT FULL CANTOPEN PROTOCOL NOTADB
_SQLITE_DUPLICATE = {1555, 2067}                                 # CONSTRAINT_PRIMARYKEY, CONSTRAINT_UNIQUE


def driver_error(exc: Exception) -> Exception:
    """The store's exception for one raised by sqlite3 or psycopg (``exc`` itself when it is neither).

    Callers see ``DuplicateKey``, ``StatementFailed`` or ``StoreUnavailable``, never a driver class; the
    driver's message is kept (and the driver exception is the ``__cause__``)."""
    message = str(exc)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.IntegrityError):
            return DuplicateKey(message) if code in _SQLITE_DUPLICATE else StatementFailed(message)
        if code is not None and code & 0xFF in _SQLITE_UNAVAILABLE:
            return StoreUnavailable(message)
        return StatementFailed(message)
    module = type(exc).__module__
    if module == "psycopg" or module.startswith("psycopg."):
        import psycopg

        if getattr(exc, "sqlstate", None) == "23505":   # unique_violation
            return DuplicateKey(message)
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return StoreUnavailable(message)   # connection lost, server shutting down, deadlock, serialization
        if isinstance(exc, psycopg.Error):
            return StatementFailed(message)
    return exc


def _driver_errors(dialect: "Dialect") -> type[Exception]:
    """The base class of the driver's exceptions (psycopg is imported only where it is used)."""
    if dialect.name == "sqlite":
        return sqlite3.Error
    import psycopg

    return psycopg.Error


@dataclass(frozen=True)
class Dialect:
    name: str
    pk: str
    blob: str
    placeholder: str

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else _pyformat(text)


# A quoted string or identifier, a comment (all copied, only their '%' doubled), or a bare '?' or '%'.
_SQL_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|[?%]", re.DOTALL)


@functools.lru_cache(maxsize=2048)
def _pyformat(text: str) -> str:
    """``?`` placeholders to psycopg's ``%s``; a literal ``%`` becomes ``%%`` (psycopg parses every query
    given parameters).  A ``?`` inside a quoted string or a comment is left alone."""
    def replace(match: re.Match[str]) -> str:
        token = match.group()
        if token == "?":
            return "%s"
        return token.replace("%", "%%")
    return _SQL_TOKENS.sub(replace, text)


# Plain INTEGER PRIMARY KEY (no AUTOINCREMENT): AUTOINCREMENT writes sqlite_sequence on every insert, and
# the engine never deletes the newest row of a table whose ids must not come back.
SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY", "BLOB", "?")
POSTGRES = Dialect("postgresql", "BIGSERIAL PRIMARY KEY", "BYTEA", "%s")


class Transaction:
    """A connection inside an open transaction; every statement takes ``?`` placeholders."""

    def __init__(self, connection: Any, dialect: Dialect):
        self.connection = connection
        self.dialect = dialect
        self._savepoints = 0
        self._driver_errors = _driver_errors(dialect)

    # Each statement's driver exception becomes the store's own (``driver_error``); a ``try`` costs
    # nothing until something is raised.
    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        cursor = self.connection.cursor()
        try:
            cursor.execute(self.dialect.sql(sql), tuple(params))
        except self._driver_errors as exc:
            raise driver_error(exc) from exc
        return cursor

    def rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """The result as plain tuples, in the order of the SELECT's columns (for building records)."""
        cursor = self.execute(sql, params)
        try:
            return cursor.fetchall()
        except self._driver_errors as exc:
            raise driver_error(exc) from exc

    def row(self, sql: str, params: tuple | list = ()) -> tuple | None:
        """The first row as a plain tuple, None when there is none."""
        cursor = self.execute(sql, params)
        try:
            return cursor.fetchone()
        except self._driver_errors as exc:
            raise driver_error(exc) from exc

    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        cursor = self.execute(sql, params)
        try:
            fetched = cursor.fetchall()
        except self._driver_errors as exc:
            raise driver_error(exc) from exc
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row)) for row in fetched]

    def one(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        cursor = self.execute(sql, params)
        try:
            row = cursor.fetchone()
        except self._driver_errors as exc:
            raise driver_error(exc) from exc
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row))

    def insert(self, sql: str, params: tuple | list = ()) -> int:
        """Run an INSERT of one row and return the new row's id.

        SQLite reports it as ``lastrowid`` (the id is the rowid); its ``RETURNING`` would cost a
        temporary result table per row.  PostgreSQL has no rowid: ``RETURNING id`` there."""
        if self.dialect is SQLITE:
            cursor = self.execute(sql, params)
            if cursor.rowcount != 1:
                raise StoreError(f"INSERT wrote {cursor.rowcount} rows, not one: {sql[:60]}")
            return int(cursor.lastrowid)
        cursor = self.execute(sql + " RETURNING id", params)
        try:
            return int(cursor.fetchone()[0])
        except self._driver_errors as exc:
            raise driver_error(exc) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        # Named by nesting depth, not by a running number: the same few statement texts are then
        # reused from the driver's statement cache instead of being prepared anew each time.
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
        finally:
            self._savepoints -= 1


def refresh_planner_statistics(txn: Transaction) -> None:
    """``ANALYZE``: without planner statistics SQLite scans for some worklist keys (a name prefix: 97 ms
    instead of 2 ms at 100,000 items).  The engine runs it at start and hourly, on the writer."""
    txn.execute("ANALYZE")


def _sqlite_connect(path: str, writer: bool = False) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed (and so acknowledged) transaction survives power loss, not only a crash.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    # DICOM matching is case-sensitive (PN keys compare an upper-cased column); PostgreSQL's LIKE is too.
    connection.execute("PRAGMA case_sensitive_like=ON")
    if writer:
        # Every message runs in a savepoint: the pages it changes are copied to a sub-journal first,
        # by default a temporary file (a write() per page).  In memory that halves an INSERT's cost.
        # Only the writer: a reader's large sort may still spill to a temporary file.
        connection.execute("PRAGMA temp_store=MEMORY")
    return connection


def _postgres_connect(url: str) -> Any:
    try:
        import psycopg
        from psycopg.adapt import Loader
        from psycopg.pq import Format
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StoreError("PostgreSQL needs the 'psycopg' package: pip install 'swf-engine[postgres]'") from exc

    class BytesLoader(Loader):
        """BYTEA in binary format comes as a memoryview; callers compare with bytes, as from SQLite."""
        format = Format.BINARY

        def load(self, data: Any) -> bytes:
            return bytes(data)

    # autocommit: psycopg sends nothing implicitly; the store's own BEGIN/COMMIT/SAVEPOINT are the
    # transactions, as on SQLite (isolation_level=None).  (Text-format BYTEA already loads as bytes.)
    connection = psycopg.connect(url, autocommit=True)
    connection.adapters.register_loader("bytea", BytesLoader)
    return connection


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


# The advisory lock that lets one process at a time migrate a PostgreSQL database ("SWF_").
_MIGRATION_LOCK = 0x5357465F


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
            raise StoreError(f"unsupported database URL {redact(url)!r} (use sqlite:///PATH or postgresql://...)")
        # SimpleQueue: put and get in C, for the MLLP reactor that submits every message.
        self._queue: queue.SimpleQueue[tuple[Callable[[Transaction], Any], Future] | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers: list[tuple[threading.Thread, Any]] = []   # every read connection, to close them
        self._readers_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self.batches_committed = 0
        # Run inside every write transaction after its work, before COMMIT (e.g. turning new domain events
        # into outbox messages, so both commit together).  Each runs in its own savepoint.
        self.before_commit: list[Callable[[Transaction], None]] = []
        # Run on the writer thread after each successful COMMIT (e.g. waking the outbox delivery).
        self.after_commit: list[Callable[[], None]] = []
        self._write_connection = self._connect(writer=True)
        try:
            self._migrate()
        except BaseException:
            self._write_connection.close()
            raise

    # -- connections --------------------------------------------------------------------------
    def _connect(self, writer: bool = False) -> Any:
        try:
            if self.dialect is SQLITE:
                return _sqlite_connect(self.path, writer)
            return _postgres_connect(self.url)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"cannot open database {redact(self.url)}: {exc}") from exc

    def _usable(self, connection: Any) -> bool:
        """False for a PostgreSQL connection that is closed or was broken (server restart, network)."""
        return self.dialect is SQLITE or not (connection.closed or connection.broken)

    def _begin(self, connection: Any) -> None:
        connection.cursor().execute("BEGIN")

    def _begin_read(self, connection: Any) -> None:
        # One snapshot for the whole read, as a SQLite read transaction in WAL mode has.
        connection.cursor().execute("BEGIN" if self.dialect is SQLITE else
                                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _begin_exclusive(self, connection: Any) -> None:
        """A write transaction that excludes other processes' migrations until it ends."""
        if self.dialect is SQLITE:
            connection.cursor().execute("BEGIN IMMEDIATE")
        else:
            connection.cursor().execute("BEGIN")
            connection.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _schema_version(self, txn: Transaction) -> int | None:
        """The applied schema version, None when there is no schema_version table."""
        if self.dialect is SQLITE:
            found = txn.one("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        else:
            found = txn.one("SELECT to_regclass('schema_version') AS name")
        if not found or found["name"] is None:
            return None
        row = txn.one("SELECT MAX(version) AS version FROM schema_version")
        return (row or {}).get("version") or 0

    def _refuse_newer(self, version: int) -> None:
        """A database migrated by newer code (a rolling upgrade half done, or a downgrade): this code does not
        know its tables, so it must neither write nor migrate it."""
        if version > LATEST_VERSION:
            raise SchemaTooNew(f"database {redact(self.url)} has schema version {version}, newer than this engine's"
                               f" {LATEST_VERSION}: run the engine version that migrated it (or newer);"
                               " nothing was changed")

    def _migrate(self) -> None:
        """Apply the missing migrations, each in its own transaction; several processes may start at once."""
        connection = self._write_connection
        txn = Transaction(connection, self.dialect)
        try:
            version = self._schema_version(txn) or 0
        except Exception as exc:
            raise StoreError(f"database {redact(self.url)}: cannot read the schema version: {exc}") from exc
        self._refuse_newer(version)
        if version == LATEST_VERSION:
            return   # up to date: no lock taken
        while True:
            number = 0
            try:
                self._begin_exclusive(connection)
                txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                current = self._schema_version(txn) or 0
                self._refuse_newer(current)
                if current == LATEST_VERSION:
                    connection.cursor().execute("COMMIT")
                    return
                number = current + 1
                for statement in MIGRATIONS[number - 1]:
                    txn.execute(statement.format(pk=self.dialect.pk, blob=self.dialect.blob))
                txn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
                connection.cursor().execute("COMMIT")
            except SchemaTooNew:
                connection.cursor().execute("ROLLBACK")
                raise
            except Exception as exc:
                try:
                    connection.cursor().execute("ROLLBACK")
                except Exception:
                    log.debug("rollback after a failed migration failed too", exc_info=True)
                what = f"migration {number}" if number else "reading the schema version"
                raise StoreError(f"database {redact(self.url)}: {what} failed: {exc}") from exc
            log.info("database schema migrated to version %d", number)

    # -- writes (group commit) ----------------------------------------------------------------
    def start(self) -> None:
        with self._writer_lock:
            self._start_writer()

    def _start_writer(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
            self._writer.start()

    def submit(self, work: Callable[[Transaction], T]) -> "Future[T]":
        """Queue ``work`` to run in a write transaction; the future resolves after the commit."""
        future: Future[T] = Future()
        with self._writer_lock:   # never queued behind close()'s stop marker
            if self._closed:
                future.set_exception(StoreError("the store is closed"))
                return future
            self._start_writer()
            self._queue.put((work, future))
        return future

    def write(self, work: Callable[[Transaction], T], timeout: float | None = 60) -> T:
        """Run ``work`` in a write transaction and wait for its commit."""
        return self.submit(work).result(timeout)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            self._take_waiting(batch)
            self._run_batch(batch)

    def _take_waiting(self, batch: list[tuple[Callable[[Transaction], Any], Future]]) -> bool:
        """Append the work queued meanwhile, up to ``max_batch``; False when none was waiting.

        The stop marker stays queued: the loop sees it after this batch."""
        before = len(batch)
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            batch.append(nxt)
        return len(batch) > before

    def _begin_write(self) -> Any:
        """BEGIN on the write connection; a PostgreSQL connection found broken is re-opened first.

        Nothing of the batch has run yet, so a connection lost while idle (server restart, network)
        costs no message: BEGIN is simply tried once more on a new connection."""
        for attempt in (1, 2):
            connection = self._write_connection
            if not self._usable(connection):
                connection.close()
                connection = self._write_connection = self._connect(writer=True)
                log.warning("store write connection re-opened")
            try:
                self._begin(connection)
                return connection
            except Exception:
                if attempt == 2 or self._usable(connection):
                    raise
        raise AssertionError("unreachable")

    def _run_batch(self, batch: list[tuple[Callable[[Transaction], Any], Future]]) -> None:
        try:
            connection = self._begin_write()
        except Exception as exc:
            log.error("store cannot begin a write transaction (%s); %d pending writes are not acknowledged",
                      exc, len(batch))
            for _work, future in batch:
                future.set_exception(exc if isinstance(exc, StoreError) else StoreUnavailable(f"cannot begin: {exc}"))
            return
        txn = Transaction(connection, self.dialect)
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        try:
            # Work queued while the batch runs joins it before the COMMIT: with senders that wait for
            # their ACK, the next messages arrive during the batch, and one flush then covers them all.
            while len(outcomes) < len(batch) or self._take_waiting(batch):
                work, future = batch[len(outcomes)]
                try:
                    with txn.savepoint():
                        outcomes.append((future, work(txn), None))
                except Exception as exc:  # the work's own effects are rolled back; others stay
                    outcomes.append((future, None, exc))
            for hook in self.before_commit:
                try:
                    with txn.savepoint():
                        hook(txn)
                except Exception:  # a hook's trouble must not cost the batch: its own work is undone
                    log.exception("before-commit hook %s failed; the batch commits without it", hook)
            connection.cursor().execute("COMMIT")
            self.batches_committed += 1
            for notify in self.after_commit:
                try:
                    notify()
                except Exception:  # noqa: BLE001 - a notification must not undo a commit
                    log.exception("after-commit hook %s failed", notify)
        except Exception as exc:
            log.exception("store commit failed; %d pending writes are not acknowledged", len(batch))
            try:
                connection.cursor().execute("ROLLBACK")
            except Exception:
                log.exception("rollback after failed commit also failed")
            lost = isinstance(exc, txn._driver_errors) and isinstance(driver_error(exc), StoreUnavailable)
            for _work, future in batch:
                future.set_exception((StoreUnavailable if lost else StoreError)(f"commit failed: {exc}"))
            return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    # -- reads --------------------------------------------------------------------------------
    def _read_connection(self) -> Any:
        if self._closed:
            raise StoreError("the store is closed")
        lost = getattr(self._local, "connection", None)
        if lost is not None and self._usable(lost):
            return lost
        connection = self._local.connection = self._connect()
        with self._readers_lock:
            # a broken connection, and those of threads that have ended, are closed here, not left to the GC
            keep = []
            for thread, other in self._readers:
                if other is lost or not thread.is_alive():
                    other.close()
                else:
                    keep.append((thread, other))
            keep.append((threading.current_thread(), connection))
            self._readers = keep
        return connection

    def read(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` on this thread's read connection, in one read transaction."""
        connection = self._read_connection()
        errors = _driver_errors(self.dialect)
        try:
            try:
                self._begin_read(connection)
            except Exception:
                if self._usable(connection):
                    raise
                connection = self._read_connection()   # lost while idle: once more on a new connection
                self._begin_read(connection)
        except errors as exc:
            raise driver_error(exc) from exc
        txn = Transaction(connection, self.dialect)
        try:
            return work(txn)
        finally:
            if self._usable(connection):
                try:
                    connection.cursor().execute("ROLLBACK")
                except errors as exc:
                    raise driver_error(exc) from exc

    def close(self) -> None:
        """Finish the queued writes, then close every connection; later reads and writes fail."""
        with self._writer_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join(timeout=30)
        self._write_connection.close()
        with self._readers_lock:
            for _thread, connection in self._readers:
                connection.close()
            self._readers = []
        self._local.connection = None
