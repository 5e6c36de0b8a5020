"""``/auth``: console login and logout, and who a request is.

- ``POST /auth/login`` (JSON or form: name, password): a session cookie (HttpOnly, SameSite=Strict,
  Secure with ``http.secure_cookies``) and, in the body, the session's CSRF token and the user's role.
  A wrong name or password is 401 with one message for both and a WARNING naming the user and client;
  after ``MAX_FAILURES`` failures within ``FAILURE_WINDOW`` seconds a client is answered 429 until the
  oldest ages out.  The password is checked on the thread pool (scrypt takes a quarter second).
- ``POST /auth/logout``: ends the session of the cookie (CSRF token required, as for every session write).
- ``GET /auth/whoami``: the principal (401 without one); ``GET /auth/check/ROLE``: 200 when the
  principal's role covers ROLE, else 403 naming it, so a console can ask before it offers an action.
Logins and logouts are written to the operator audit trail in the transaction that opens or ends the
session.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Any, Callable

from twisted.internet import threads
from twisted.python.failure import Failure
from twisted.web import resource, server

from .. import reactor_bridge
from ..domain.credentials import new_secret, secret_hash, unknown_user_hash, verify_password
from ..domain.principal import ROLES
from ..security_events import SecurityEvent, SecurityEvents
from ..store import audit, users
from ..store.database import Store, StoreUnavailable
from ..store.users import StoredSession, User
from .auth import SESSION_COOKIE, Authorizer, header_text

log = logging.getLogger(__name__)

MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
MAX_CLIENTS_TRACKED = 10_000
AUTHENTICATION_REQUIRED = {"error": "authentication required"}


class LoginThrottle:
    """Failed logins per client address within the window (the oldest clients forgotten past a bound)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        failures = self._failures.get(client)
        if failures is None or len(failures) < MAX_FAILURES:
            return 0.0
        return max(0.0, failures[0] + FAILURE_WINDOW - self.clock())

    def failed(self, client: str) -> int:
        """Record a failure; the client's failures within the window."""
        now = self.clock()
        failures = self._failures.pop(client, None) or deque(maxlen=MAX_FAILURES)
        while failures and failures[0] + FAILURE_WINDOW <= now:
            failures.popleft()
        failures.append(now)
        self._failures[client] = failures
        while len(self._failures) > MAX_CLIENTS_TRACKED:
            self._failures.popitem(last=False)
        return len(failures)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def client_of(request: Any) -> str:
    return getattr(request.getClientAddress(), "host", "?")


def answer(request: Any, status: int, body: dict[str, Any]) -> bytes:
    """A JSON answer (never cached: it may carry a CSRF token)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode()


def answer_later(request: Any, status: int, body: dict[str, Any]) -> None:
    """Finish a request answered from a Deferred, unless its client has gone meanwhile."""
    if request.channel is None or request.finished:
        return
    request.write(answer(request, status, body))
    request.finish()


class AuthPages(resource.Resource):
    """Everything under ``/auth`` (a leaf: the path is dispatched here)."""

    isLeaf = True

    def __init__(self, store: Store, authorizer: Authorizer, session_hours: float, secure_cookies: bool,
                 security_events: SecurityEvents | None = None):
        super().__init__()
        self.security_events = security_events   # told of each failed login (the audit trail listens)
        self.store = store
        self.authorizer = authorizer
        self.session_seconds = session_hours * 3600
        self.secure_cookies = secure_cookies
        self.throttle = LoginThrottle()

    def render(self, request: Any) -> bytes | int:
        path = "/".join(part.decode("utf-8", "replace") for part in request.postpath)
        routes = {"login": ("POST", self.login), "logout": ("POST", self.logout), "whoami": ("GET", self.whoami)}
        if path.startswith("check/"):
            method, handler = "GET", lambda r: self.check(r, path[len("check/"):])
        elif path in routes:
            method, handler = routes[path]
        else:
            return answer(request, 404, {"error": "not found", "paths": [
                "/auth/login", "/auth/logout", "/auth/whoami", *(f"/auth/check/{role}" for role in ROLES)]})
        if request.method.decode("ascii", "replace") != method:
            request.setHeader(b"allow", method.encode())
            return answer(request, 405, {"error": f"/auth/{path} takes {method}"})
        try:
            return handler(request)
        except Exception:  # noqa: BLE001 - an engine bug: logged, never a stack trace to the client
            log.exception("/auth/%s from %s failed", path, client_of(request))
            return answer(request, 500, {"error": "internal error (see the engine's log)"})

    # -- login ----------------------------------------------------------------------------------------
    def login(self, request: Any) -> bytes | int:
        client = client_of(request)
        wait = self.throttle.retry_after(client)
        if wait > 0:
            log.warning("login from %s refused: %d failed logins within %d s", client, MAX_FAILURES, FAILURE_WINDOW)
            request.setHeader(b"retry-after", str(math.ceil(wait)).encode())
            return answer(request, 429, {"error": "too many failed logins from this address; try again later",
                                         "retry_after_seconds": math.ceil(wait)})
        fields = login_fields(request)
        if isinstance(fields, str):
            return answer(request, 400, {"error": fields, "field": fields.split(":")[0]})
        name, password = fields
        threads.deferToThread(self._checked_user, name, password).addCallback(
            self._password_checked, request, name, client).addErrback(self._failed, request, f"login of {name!r}")
        return server.NOT_DONE_YET

    def _checked_user(self, name: str, password: str) -> User | None:
        """The user whose password this is, or None (thread pool: a database read and a slow hash)."""
        found = self.store.read(lambda txn: users.credentials(txn, name))
        matches = verify_password(password, found.password_hash if found else unknown_user_hash())
        return found.user if found and matches else None

    def _password_checked(self, user: User | None, request: Any, name: str, client: str) -> Any:
        if user is None:
            failures = self.throttle.failed(client)
            log.warning("login failed for user %r from %s: wrong name or password (%d of %d failures allowed "
                        "within %d s)", name, client, failures, MAX_FAILURES, FAILURE_WINDOW)
            if self.security_events is not None:
                self.security_events.raise_event(SecurityEvent(
                    "login-failed", client, f"console login as {name!r} failed: wrong name or password", name[:64]))
            answer_later(request, 401, {"error": "wrong name or password"})
            return None
        self.throttle.succeeded(client)
        session_id = new_secret()
        now = time.time()
        session = StoredSession(user.id, secret_hash(session_id), new_secret(), now + self.session_seconds)

        def open_session(txn: Any) -> None:
            users.open_session(txn, session, now)
            audit.record_action(txn, actor=user.name, client=client, action="session.login", subject=user.name,
                                before=None, after={"role": user.role})
        return reactor_bridge.write(self.store, open_session).addCallback(
            lambda _: self._logged_in(request, user, session, session_id, client))

    def _logged_in(self, request: Any, user: User, session: StoredSession, session_id: str, client: str) -> None:
        self.authorizer.session_opened(user, session)
        log.info("user %r (%s) logged in from %s", user.name, user.role, client)
        request.addCookie(SESSION_COOKIE, session_id.encode(), path=b"/", max_age=str(int(self.session_seconds)),
                          httpOnly=True, sameSite="strict", secure=self.secure_cookies)
        answer_later(request, 200, {"name": user.name, "role": user.role, "csrf_token": session.csrf_token,
                                    "expires_at": _iso(session.expires_at)})

    # -- logout ---------------------------------------------------------------------------------------
    def logout(self, request: Any) -> bytes | int:
        identity = self.authorizer.identify(request)
        if identity is None:
            return answer(request, 401, AUTHENTICATION_REQUIRED)
        session = identity.session
        if session is None:
            return answer(request, 400, {"error": "logout ends a console session; this request has none "
                                                  "(API tokens end with swf users remove)"})
        if not self.authorizer.check_csrf(request):
            return answer(request, 403, {"error": "CSRF token missing or wrong"})
        name, client = identity.principal.name, client_of(request)

        def close_session(txn: Any) -> None:
            users.close_session(txn, session.session_hash)
            audit.record_action(txn, actor=name, client=client, action="session.logout", subject=name,
                                before=None, after=None)

        def closed(_: object) -> None:
            self.authorizer.session_closed(session.session_hash)
            log.info("user %r logged out from %s", name, client)
            request.addCookie(SESSION_COOKIE, b"", path=b"/", max_age="0", httpOnly=True, sameSite="strict",
                              secure=self.secure_cookies)
            answer_later(request, 200, {"logged_out": name})
        reactor_bridge.write(self.store, close_session).addCallback(closed).addErrback(
            self._failed, request, f"logout of {name!r}")
        return server.NOT_DONE_YET

    # -- who ------------------------------------------------------------------------------------------
    def whoami(self, request: Any) -> bytes:
        identity = self.authorizer.identify(request)
        if identity is None:
            return answer(request, 401, AUTHENTICATION_REQUIRED)
        body: dict[str, Any] = {"name": identity.principal.name, "role": identity.principal.role,
                                "via": identity.via}
        if identity.session is not None:   # a reloaded console page gets its CSRF token back
            body.update(csrf_token=identity.session.csrf_token, expires_at=_iso(identity.session.expires_at))
        return answer(request, 200, body)

    def check(self, request: Any, needed: str) -> bytes:
        if needed not in ROLES:
            return answer(request, 404, {"error": f"no role {needed!r}", "roles": list(ROLES)})
        principal = self.authorizer.principal(request)
        if principal is None:
            return answer(request, 401, AUTHENTICATION_REQUIRED)
        if not principal.may(needed):
            return answer(request, 403, {"error": f"needs role {needed}", "needed": needed, "role": principal.role})
        return answer(request, 200, {"name": principal.name, "role": principal.role, "needed": needed})

    def _failed(self, failure: Failure, request: Any, what: str) -> None:
        if failure.check(StoreUnavailable):
            log.warning("%s from %s not done: %s", what, client_of(request), failure.getErrorMessage())
            answer_later(request, 503, {"error": "the database cannot serve now; try again"})
            return
        log.error("%s from %s failed: %s", what, client_of(request), failure.getTraceback())
        answer_later(request, 500, {"error": "internal error (see the engine's log)"})


def login_fields(request: Any) -> tuple[str, str] | str:
    """(name, password) from a JSON or form body, or the problem (``field: what is wrong``)."""
    content_type = (header_text(request, b"content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(request.content.read() or b"null")
        except ValueError as exc:
            return f"body: not JSON ({exc})"
        if not isinstance(data, dict):
            return "body: must be a JSON object with name and password"
    else:
        data = {key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
                for key, values in (request.args or {}).items() if values}
    for field in ("name", "password"):
        if not isinstance(data.get(field), str) or not data[field]:
            return f"{field}: required (a non-empty string)"
    return data["name"], data["password"]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")
