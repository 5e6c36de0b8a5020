"""One ``swf serve`` per SQLite database file (issue 15): several engines need PostgreSQL.

The engine holds an exclusive ``flock`` on ``<database>.serve-lock`` for its whole life.  The kernel
drops the lock when the process ends in any way (SIGKILL, a crash), so a restart after a crash is never
refused by a stale lock; the pid written into the file only serves the refusal message.  The ``swf``
commands that read or write the database beside a running engine (``swf cancel``...) take no lock.
"""
from __future__ import annotations

import fcntl
import os


class DatabaseInUse(RuntimeError):
    """Another ``swf serve`` process runs on this SQLite file."""


class InstanceLock:
    def __init__(self, database_path: str):
        self.path = f"{database_path}.serve-lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(
                f"the SQLite database {self.path[:-len('.serve-lock')]} is in use by another swf serve (pid {holder});"
                " SQLite serves one engine: stop that one, or run several engines on PostgreSQL (database_url)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor drops the lock
            self._fd = None
