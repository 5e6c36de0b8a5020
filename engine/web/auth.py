"""Who made an HTTP request: an API token (``Authorization: Bearer``), a console session cookie, or, on
an engine without users listening on loopback only, everybody (the local admin).

``principal`` and ``check_csrf`` run on the reactor thread for every request, so they read an in-memory
view of users, token hashes and session hashes, never the database.  The view is read at start and
re-read on the thread pool every ``http.auth_refresh_seconds``, which picks up ``swf users`` run by
another process; this engine's own logins and logouts change it at once.

An engine without users that listens on another address is closed, not open: ``refuse_open_listener``
stops it from starting, and should the last user be removed while it runs, every request is refused.
"""
from __future__ import annotations

import ipaddress
import logging
import shlex
import time
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import task

from .. import reactor_bridge
from ..config import Config
from ..domain.credentials import same_secret, secret_hash
from ..domain.principal import ROLES, Principal
from ..store import users
from ..store.database import Store, redact
from ..store.users import AccessRecords, StoredSession, User

log = logging.getLogger(__name__)

SESSION_COOKIE = b"swf_session"
LOCAL = Principal("local", "admin")   # every request of an engine without users, on loopback only


@dataclass(frozen=True)
class Identity:
    """A request's principal and what proved it: "token", "session" (with the session) or "local"."""

    principal: Principal
    via: str
    session: StoredSession | None = None


class AccessView:
    """Users by id, token hashes and open sessions, as last read (changed on the reactor thread only)."""

    def __init__(self, records: AccessRecords, warned: set[tuple[str, str]]):
        self.users: dict[int, User] = {}
        for user in records.users:
            if user.role in ROLES:
                self.users[user.id] = user
            elif (user.name, user.role) not in warned:   # said once, not at every re-read
                log.warning("user %r has the unknown role %r: refused until fixed (swf users remove %s, then add)",
                            user.name, user.role, user.name)
                warned.add((user.name, user.role))
        self.any_user = bool(records.users)   # one with an unknown role too: the engine is no longer open
        self.tokens: dict[str, int] = dict(records.tokens)
        self.sessions: dict[str, StoredSession] = {session.session_hash: session for session in records.sessions}


class Authorizer:
    """The principal of each request, for the API and the /auth pages."""

    def __init__(self, store: Store, config: Config, clock: Callable[[], float] = time.time):
        self.store = store
        self.refresh_seconds = config.http.auth_refresh_seconds
        self.open_when_empty = is_loopback(config.http.host)
        self.clock = clock
        self._warned: set[tuple[str, str]] = set()   # users with an unknown role, logged once
        self.view = AccessView(AccessRecords((), (), ()), self._warned)
        self._changes = 0          # local logins/logouts: a re-read begun before one of them is stale
        self._refreshing = False
        self._failing = False      # the last re-read failed (said once per outage)
        self._loop: task.LoopingCall | None = None

    # -- the view -------------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the view now, on the calling thread (at start, before the listener serves)."""
        self.view = AccessView(self.store.read(lambda txn: users.access_records(txn, self.clock())), self._warned)

    def start(self) -> None:
        if self.refresh_seconds > 0:
            self._loop = task.LoopingCall(self.refresh)
            self._loop.start(self.refresh_seconds, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def refresh(self) -> None:
        """Re-read the view on the thread pool (one re-read at a time)."""
        if self._refreshing:
            return
        self._refreshing = True
        changes = self._changes
        reactor_bridge.read(self.store, lambda txn: users.access_records(txn, self.clock())).addCallbacks(
            lambda records: self._refreshed(records, changes), self._failed).addBoth(self._done)

    def _failed(self, failure: Any) -> None:
        if not self._failing:
            log.warning("users and sessions not re-read (the last view stays): %s", failure.getErrorMessage())
        self._failing = True

    def _refreshed(self, records: AccessRecords, changes: int) -> None:
        if self._failing:
            log.info("users and sessions re-read again")
            self._failing = False
        if changes == self._changes:   # else a login or logout here came after the read: the next one has it
            self.view = AccessView(records, self._warned)

    def _done(self, _: object) -> None:
        self._refreshing = False

    @property
    def has_users(self) -> bool:
        return self.view.any_user

    def session_opened(self, user: User, session: StoredSession) -> None:
        """A login committed by this engine: its session works from the next request on."""
        self._changes += 1
        self.view.users.setdefault(user.id, user)   # a user added by `swf users add` since the last read
        self.view.any_user = True
        self.view.sessions[session.session_hash] = session

    def session_closed(self, session_hash: str) -> None:
        self._changes += 1
        self.view.sessions.pop(session_hash, None)

    # -- requests -------------------------------------------------------------------------------------
    def identify(self, request: Any) -> Identity | None:
        """The request's identity, or None: no credentials, unknown or removed token, expired session."""
        view = self.view
        if not view.any_user:
            return Identity(LOCAL, "local") if self.open_when_empty else None
        header = header_text(request, b"authorization")
        if header is not None:   # a token given is the only credential looked at, right or wrong
            scheme, _, token = header.strip().partition(" ")
            user = view.users.get(view.tokens.get(secret_hash(token.strip()), -1)) \
                if scheme.lower() == "bearer" and token.strip() else None
            return Identity(Principal(user.name, user.role), "token") if user else None
        cookie = request.getCookie(SESSION_COOKIE)
        if not cookie:
            return None
        session = view.sessions.get(secret_hash(cookie.decode("ascii", "replace")))
        if session is None or session.expires_at <= self.clock():
            return None
        user = view.users.get(session.user_ref)
        return Identity(Principal(user.name, user.role), "session", session) if user else None

    def principal(self, request: Any) -> Principal | None:
        identity = self.identify(request)
        return identity.principal if identity else None

    def check_csrf(self, request: Any) -> bool:
        """For a write: a session's request must carry its CSRF token (``X-CSRF-Token`` header or form field
        ``csrf_token``); a token's or the local admin's needs none (no browser sends those on its own)."""
        identity = self.identify(request)
        if identity is None:
            return False
        if identity.session is None:
            return True
        given = header_text(request, b"x-csrf-token")
        if given is None:
            field = request.args.get(b"csrf_token") if request.args else None
            given = field[0].decode("utf-8", "replace") if field else None
        return given is not None and same_secret(given, identity.session.csrf_token)


def header_text(request: Any, name: bytes) -> str | None:
    """A request header as text (undecodable bytes replaced: twisted's str lookup raises on them)."""
    value = request.getHeader(name)
    return None if value is None else value.decode("utf-8", "replace")


class OpenListenerRefused(RuntimeError):
    """The HTTP listener would serve another address than loopback while no user exists."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:   # "" (all interfaces) or a host name: not known to stay on this machine
        return False


def refuse_open_listener(config: Config, authorizer: Authorizer) -> None:
    """Raise ``OpenListenerRefused`` (saying why and the command that fixes it) for an HTTP listener off
    loopback on an engine without users: anyone reaching it would be the local admin."""
    http = config.http
    if http.port < 0 or authorizer.has_users or is_loopback(http.host):
        return
    where = (f"--database-url {shlex.quote(redact(config.database_url))}" if config.database_url
             else f"--data-dir {shlex.quote(str(config.data_dir))}")
    raise OpenListenerRefused(
        f"HTTP listener {http.host or '*'}:{http.port} not started: no user exists, and without users every "
        "request is served as the admin, which only a loopback address keeps to this machine. Add an admin "
        f"first: swf users add admin --role admin {where} (it asks for a password), then start again; or "
        "listen on 127.0.0.1 (http.host)")
