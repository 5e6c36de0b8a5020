"""Whether the database answers now, asked at most once per ``interval`` seconds by whoever needs it.

Why: while the database is gone (a partition, a restart) every DICOM request would fail; the listener
refuses new associations instead (A-ASSOCIATE-RJ, transient), so a modality, or the load balancer in
front, turns to another instance or tries again later.  One caller checks at a time; the others take
the last answer, so a lost server that hangs holds up one association, not all of them.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .database import Store
from .health import database_reachable

log = logging.getLogger(__name__)


class DatabaseReachability:
    def __init__(self, store: Store, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._checking = False
        self._checked_at = float("-inf")
        self._problem: str | None = None

    def problem(self) -> str | None:
        """None while the database answers, else why it does not (the last check's answer)."""
        with self._lock:
            if self._checking or self.clock() - self._checked_at < self.interval:
                return self._problem
            self._checking = True
        problem: str | None = None
        try:
            self.store.read(database_reachable)
        except Exception as exc:  # noqa: BLE001 - any failure to answer means not reachable
            problem = str(exc) or type(exc).__name__
        with self._lock:
            if problem != self._problem:
                (log.warning if problem else log.info)(
                    "database %s", f"does not answer: {problem}" if problem else "answers again")
            self._problem, self._checked_at, self._checking = problem, self.clock(), False
        return problem
