"""The root of the engine's HTTP site: /health, /ready and /api; every other path is a JSON 404."""
from __future__ import annotations

import json

from twisted.web import resource, server

PATHS = ("/health", "/ready", "/api/v1/openapi.json")


class NotFoundPage(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": f"no page at {request.path.decode('utf-8', 'replace')}",
                           "paths": list(PATHS)}).encode()


class SiteRoot(resource.Resource):
    """Children by first path segment (``putChild``); anything else is answered by ``NotFoundPage``."""

    def __init__(self, children: dict[bytes, resource.Resource]):
        super().__init__()
        for name, child in children.items():
            self.putChild(name, child)
        self._not_found = NotFoundPage()

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return self._not_found

    def render(self, request: server.Request) -> bytes:
        return self._not_found.render(request)
