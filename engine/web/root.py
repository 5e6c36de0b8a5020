"""The HTTP site's root: each top-level path to its resource, and a JSON 404 for every other path."""
from __future__ import annotations

from typing import Any

from twisted.web import resource

from .login import answer


class NotFound(resource.Resource):
    isLeaf = True

    def __init__(self, paths: list[str]):
        super().__init__()
        self.paths = paths

    def render(self, request: Any) -> bytes:
        return answer(request, 404, {"error": "not found", "paths": self.paths})


class Root(resource.Resource):
    """``/health``, ``/auth/...`` (and whatever else is mounted with ``putChild``); 404 elsewhere."""

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return NotFound(sorted(f"/{name.decode()}" for name in self.children))

    def render(self, request: Any) -> bytes:
        return self.getChild(b"", request).render(request)
