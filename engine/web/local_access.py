"""The authorizer of an engine without users, listening on loopback only: whoever can reach the port is
on the machine, and is the local administrator.  (The users' authorizer falls back to exactly this while
no user exists; the engine refuses a non-loopback HTTP listener in that state.)"""
from __future__ import annotations

from twisted.web import server

from ..domain.principal import Principal

LOCAL_ADMIN = Principal("local", "admin")


class LocalAccess:
    """Every request is ``Principal("local", "admin")``; no CSRF token is needed."""

    def principal(self, request: server.Request) -> Principal | None:
        return LOCAL_ADMIN

    def check_csrf(self, request: server.Request) -> bool:
        return True
