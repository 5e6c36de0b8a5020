"""``/api/v1`` on the engine's twisted.web site: route, authorize, check, run off the reactor, answer JSON.

Every operation's store work runs on the thread pool (reads) or the writer thread (writes); the reactor
only routes, checks the parameters and encodes the answer.  Every failure is a JSON ``{"error": ...}``
with its status; an unexpected exception is logged with the request's method and path and answered 500
without any detail (never a stack trace to a client).
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.web import resource, server

from ... import reactor_bridge
from ...domain.principal import Principal
from ...store import idempotency
from ...store.database import Store, StoreUnavailable, Transaction
from .context import EngineContext
from .declaration import (IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY_MAX, ApiError, BadRequest, Call, Forbidden,
                          MethodNotAllowed, Operation, Router, Unauthenticated, UnprocessableEntity)

log = logging.getLogger(__name__)


class Authorizer(Protocol):
    """Who makes a request (engine/web/auth.py); on the reactor thread, so neither method may block."""

    def principal(self, request: server.Request) -> Principal | None: ...

    def check_csrf(self, request: server.Request) -> bool: ...


class ApiResource(resource.Resource):
    """The ``/api`` child of the site's root; every path below it is answered here."""

    isLeaf = True

    def __init__(self, router: Router, store: Store, authorizer: Authorizer, engine: EngineContext | None = None):
        super().__init__()
        self.router = router
        self.store = store
        self.authorizer = authorizer
        self.engine = engine

    def render(self, request: server.Request) -> Any:
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        try:
            operation, path_values = self.router.route(method, path)
            principal = self._authorize(request, operation)
            params = operation.parse_parameters(path_values, request.args)
            request.content.seek(0)
            body = operation.parse_body(request.content.read())
            key = _idempotency_key(request, operation)
        except ApiError as error:
            return self._error(request, error)
        call = Call(params, body, principal, _client(request), self.engine)
        if operation.in_memory:
            return self._ok(request, operation.handler(None, call))   # type: ignore[arg-type]
        once = None if key is None else (key, request_hash(method, path, operation, call))
        prepared = threads.deferToThread(operation.prepare, call) if operation.prepare else defer.succeed(call)
        work = prepared.addCallback(lambda ready: self._transaction(operation, once, ready))
        finished = request.notifyFinish()
        gone: list[Failure] = []
        finished.addErrback(gone.append)   # the client left: nothing is written to it
        work.addCallbacks(lambda answer: self._answer(request, gone, self._ok, answer),
                          lambda failure: self._answer(request, gone, self._failed, failure, method, path))
        return server.NOT_DONE_YET

    def _transaction(self, operation: Operation, once: tuple[str, str] | None, call: Call) -> defer.Deferred:
        """The operation's store work: a write on the writer thread (kept for its idempotency key and request
        hash), else a read."""
        if once is not None:
            return reactor_bridge.write(self.store, lambda txn: run_once(txn, *once, operation, call))
        return (reactor_bridge.write if operation.writes else reactor_bridge.read)(
            self.store, lambda txn: operation.handler(txn, call))

    def _authorize(self, request: server.Request, operation: Operation) -> Principal:
        principal = self.authorizer.principal(request)
        if principal is None:
            raise Unauthenticated("authentication required")
        if not principal.may(operation.role):
            raise Forbidden(f"{operation.operation_id} needs the role {operation.role} (yours: {principal.role})",
                            needed_role=operation.role)
        bearer = (request.getHeader(b"authorization") or b"").lower().startswith(b"bearer ")
        if operation.writes and not bearer and not self.authorizer.check_csrf(request):
            raise Forbidden("CSRF token missing or wrong")
        return principal

    @staticmethod
    def _answer(request: server.Request, gone: list[Failure], respond: Any, *args: Any) -> None:
        if gone:
            return
        body = respond(request, *args)
        request.write(body)
        request.finish()

    def _failed(self, request: server.Request, failure: Failure, method: str, path: str) -> bytes:
        error = failure.value
        if isinstance(error, ApiError):
            return self._error(request, error)
        if isinstance(error, StoreUnavailable):
            log.warning("API %s %s: database unavailable: %s", method, path, error)
            request.setResponseCode(503)
            return _json(request, {"error": "database unavailable; try again later"})
        log.error("API %s %s failed", method, path, exc_info=(failure.type, failure.value, failure.getTracebackObject()))
        request.setResponseCode(500)
        return _json(request, {"error": "internal error; the engine's log names it with this request's path"})

    @staticmethod
    def _ok(request: server.Request, answer: Any) -> bytes:
        return _json(request, answer)

    @staticmethod
    def _error(request: server.Request, error: ApiError) -> bytes:
        request.setResponseCode(error.status)
        if isinstance(error, MethodNotAllowed):
            request.setHeader(b"allow", ", ".join(error.detail["allowed"]).encode())
        if isinstance(error, Unauthenticated):
            request.setHeader(b"www-authenticate", b'Bearer realm="swf-engine"')
        return _json(request, {"error": error.message, **error.detail})


def _json(request: server.Request, value: Any) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _idempotency_key(request: server.Request, operation: Operation) -> str | None:
    """The ``Idempotency-Key`` header of a write; ``BadRequest`` naming the header when it will not do."""
    raw = request.getHeader(IDEMPOTENCY_HEADER.lower().encode())
    if raw is None or not operation.writes:
        return None
    where = f"header.{IDEMPOTENCY_HEADER}"
    if not operation.keeps_answer:
        raise BadRequest(f"{operation.operation_id} takes no {IDEMPOTENCY_HEADER}: its answer holds a secret that "
                         "is not kept", field=where)
    try:
        key = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be ASCII", field=where) from None
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise BadRequest(f"{IDEMPOTENCY_HEADER}: 1 to {IDEMPOTENCY_KEY_MAX} printable characters", field=where)
    return key


def request_hash(method: str, path: str, operation: Operation, call: Call) -> str:
    """SHA-256 of what makes a request this request: method, path, parameters and body (as parsed: key order
    and spacing do not count), without the body members the operation keeps nowhere (a password)."""
    body = call.body
    if isinstance(body, dict) and operation.secret_members:
        body = {name: value for name, value in body.items() if name not in operation.secret_members}
    text = json.dumps([method, path, call.params, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_once(txn: Transaction, key: str, hashed: str, operation: Operation, call: Call) -> Any:
    """A write sent with an idempotency key: the answer kept for the key if it was kept for this same request
    (nothing is done again), 422 if for another one; else the operation's answer, kept for the key with the
    request's hash in the same transaction as its change."""
    kept = idempotency.kept_answer(txn, key)
    if kept is not None:
        if kept.operation != operation.operation_id:
            other = f"for {kept.operation}"
        elif kept.request_hash and kept.request_hash != hashed:   # "": a key kept before its request's hash was
            other = f"with another request to {operation.operation_id} (its path, parameters or body differ)"
        else:
            other = ""
        if other:
            log.warning("API %s by %s from %s refused: %s %r was used %s", operation.operation_id,
                        call.principal.name, call.client, IDEMPOTENCY_HEADER, key, other)
            raise UnprocessableEntity(f"{IDEMPOTENCY_HEADER} {key!r} was used {other}; nothing was done: send a "
                                      "new request with a new key", field=f"header.{IDEMPOTENCY_HEADER}")
        log.info("API %s: %s %r seen before; its first answer is sent again", operation.operation_id,
                 IDEMPOTENCY_HEADER, key)
        return kept.response
    answer = operation.handler(txn, call)
    idempotency.keep_answer(txn, key, operation.operation_id, hashed, 200, answer)
    return answer


def _client(request: server.Request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", str(peer))

