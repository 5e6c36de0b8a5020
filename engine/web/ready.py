"""``GET /ready`` for load balancers: 200 when this engine can do its work, 503 saying what is wrong.

Ready means: the database answers a statement (read on the thread pool, never on the reactor, within
``timeout`` seconds), every configured listener is open, and a rules set is in force.  Unlike /health it
reads the database on each request, so a balancer polling it learns of a lost database at once.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from twisted.internet import reactor
from twisted.python.failure import Failure
from twisted.web import resource, server

from .. import reactor_bridge
from ..store.database import Store
from ..store.health import database_reachable

log = logging.getLogger(__name__)


class ReadyPage(resource.Resource):
    isLeaf = True

    def __init__(self, store: Store, live_checks: Callable[[], dict[str, str | None]], timeout: float = 5.0):
        super().__init__()
        self.store = store
        self.live_checks = live_checks   # name -> None when fine, else what is wrong (listeners, rules)
        self.timeout = timeout

    def render_GET(self, request: server.Request) -> Any:
        if request.path != b"/ready":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": "not found", "paths": ["/ready"]}).encode()
        checks = self.live_checks()
        reading = reactor_bridge.read(self.store, database_reachable)
        reading.addTimeout(self.timeout, reactor)
        reading.addCallbacks(lambda _: None, self._database_problem)
        finished = request.notifyFinish()
        gone: list[Failure] = []
        finished.addErrback(gone.append)
        reading.addCallback(lambda problem: gone or self._answer(request, {"database": problem, **checks}))
        return server.NOT_DONE_YET

    def _database_problem(self, failure: Failure) -> str:
        reason = failure.getErrorMessage() or failure.type.__name__
        log.warning("not ready: the database does not answer: %s", reason)
        return f"the database does not answer: {reason}"

    @staticmethod
    def _answer(request: server.Request, checks: dict[str, str | None]) -> None:
        problems = {name: problem for name, problem in checks.items() if problem}
        request.setResponseCode(503 if problems else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {"status": "not ready" if problems else "ready",
                "checks": {name: problem or "ok" for name, problem in checks.items()}}
        request.write(json.dumps(body).encode())
        request.finish()
