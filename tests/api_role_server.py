"""The API on a real port with an authorizer that gives every request one fixed principal, for the tests
of 401 / 403 / CSRF (an engine without users is always the local admin).  Run as a process:

    python -m tests.api_role_server PORT DATABASE_URL ROLE|none CSRF_OK(0|1)
"""
from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.web import server

from engine.domain.principal import Principal
from engine.store.database import Store
from engine.web.api import build_api
from engine.web.root import Root
from engine.web.site import BoundedSite


class FixedAccess:
    def __init__(self, role: str, csrf_ok: bool):
        self.found = None if role == "none" else Principal("tester", role)
        self.csrf_ok = csrf_ok

    def principal(self, request: server.Request) -> Principal | None:
        return self.found

    def check_csrf(self, request: server.Request) -> bool:
        return self.csrf_ok


def main(port: str, url: str, role: str, csrf_ok: str) -> None:
    store = Store(url)
    store.start()
    root = Root()
    root.putChild(b"api", build_api(store, FixedAccess(role, csrf_ok == "1")))
    site = BoundedSite(root, 65536, 30, 1 << 20)
    reactor.listenTCP(int(port), site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
