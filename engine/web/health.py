"""``GET /health`` for monitors and load balancers, answered without touching the database.

The database figures (journal rows by status, scheduled steps without a station AE) are a snapshot
read on the thread pool; a request answers from the snapshot at once and, when it is older than
``max_age`` seconds, starts one refresh in the background.  So a monitor polling hard costs at most one
journal scan per ``max_age`` and never runs SQL on the reactor thread that also sends HL7 ACKs.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from twisted.web import resource

from .. import reactor_bridge
from ..store.database import Store
from ..store.health import health_counts

log = logging.getLogger(__name__)

HEALTH_PATH = b"/health"


class HealthSnapshot:
    """The last database figures for /health and when they were read."""

    def __init__(self, store: Store, max_age: float = 5.0):
        self.store = store
        self.max_age = max_age
        self.counts: dict[str, Any] = {}
        self._taken_at = 0.0
        self._refreshing = False

    def load(self) -> None:
        """Read the figures now, on the calling thread (at start, before the listeners serve)."""
        self.counts = self.store.read(health_counts)
        self._taken_at = time.monotonic()

    @property
    def age(self) -> float:
        return time.monotonic() - self._taken_at

    def current(self) -> dict[str, Any]:
        """The figures as last read; a stale snapshot starts one refresh on the thread pool."""
        if self.age > self.max_age and not self._refreshing:
            self._refreshing = True
            reactor_bridge.read(self.store, health_counts).addCallbacks(self._refreshed, self._failed).addBoth(
                self._done)
        return self.counts

    def _refreshed(self, counts: dict[str, Any]) -> None:
        self.counts = counts
        self._taken_at = time.monotonic()

    def _failed(self, failure: Any) -> None:
        log.warning("health figures not refreshed: %s", failure.getErrorMessage())

    def _done(self, _: object) -> None:
        self._refreshing = False


class HealthPage(resource.Resource):
    """``/health`` answers JSON; a longer path below it 404."""

    isLeaf = True

    def __init__(self, snapshot: HealthSnapshot, live: Callable[[], dict[str, Any]]):
        super().__init__()
        self.snapshot = snapshot
        self.live = live   # figures the engine keeps in memory (rules, listener counters)

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        if request.path != HEALTH_PATH:
            request.setResponseCode(404)
            return json.dumps({"error": "not found", "paths": [HEALTH_PATH.decode()]}).encode()
        counts = self.snapshot.current()
        body = {"status": "ok", **self.live(), **counts, "snapshot_age_seconds": round(self.snapshot.age, 1)}
        return json.dumps(body).encode()
