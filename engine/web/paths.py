"""The HTTP site's root: each path the engine serves goes to its page; any other answers 404 in JSON."""
from __future__ import annotations

import json
from typing import Any

from twisted.web import resource


class PathsPage(resource.Resource):
    """Dispatches on the whole request path (``/health``, ``/metrics``), so ``/health/x`` is a 404 too."""

    def __init__(self, pages: dict[bytes, resource.Resource]):
        super().__init__()
        self.pages = pages
        self.not_found = _NotFound(sorted(path.decode() for path in pages))

    def getChildWithDefault(self, name: bytes, request: Any) -> resource.Resource:
        return self.pages.get(request.path, self.not_found)


class _NotFound(resource.Resource):
    isLeaf = True

    def __init__(self, paths: list[str]):
        super().__init__()
        self.body = json.dumps({"error": "not found", "paths": paths}).encode()

    def render(self, request: Any) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        return self.body
