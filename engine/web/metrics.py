"""``GET /metrics``: the engine's figures in the Prometheus text format (engine/metrics.py).

A scrape reads memory only: database figures come from the health snapshot, refreshed off the reactor
thread when older than ``http.health_max_age``.
"""
from __future__ import annotations

import json
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.web import resource

from ..metrics import EngineMetrics


class MetricsPage(resource.Resource):
    """``/metrics``, open like ``/health``: counts and queue names, no patient data."""

    isLeaf = True

    def __init__(self, metrics: EngineMetrics):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": "not found", "paths": ["/metrics"]}).encode()
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.scrape()
