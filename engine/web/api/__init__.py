"""The versioned HTTP API, ``/api/v1``: every operation declared once (declaration.py), the OpenAPI
document generated from those declarations (openapi.py), served by ``ApiResource`` (resource.py)."""
from __future__ import annotations

from importlib import metadata
from typing import Any

from ...store.database import Store
from . import cluster, conformance, journal, mpps, order_actions, orders, patients, queues, rules, storage, users
from .context import EngineContext
from .declaration import Call, Operation, Router
from .openapi import document
from .resource import ApiResource, Authorizer


def _version() -> str:
    try:
        return metadata.version("swf-engine")
    except metadata.PackageNotFoundError:
        return "0"


def operations() -> list[Operation]:
    """Every API operation, the OpenAPI document's own included."""
    declared = [*orders.OPERATIONS, *order_actions.OPERATIONS, *patients.OPERATIONS, *journal.OPERATIONS, *mpps.OPERATIONS, *queues.OPERATIONS,
                *rules.OPERATIONS, *storage.OPERATIONS,
                *users.OPERATIONS, *cluster.OPERATIONS, *conformance.OPERATIONS]
    spec: dict[str, Any] = {}

    def openapi(_txn: None, _call: Call) -> dict[str, Any]:
        return spec

    declared.append(Operation("GET", "/openapi.json", "getOpenApi", "This document (OpenAPI 3.1).", "viewer",
                              {"type": "object"}, openapi, in_memory=True))
    spec.update(document(declared, _version()))
    return declared


def build_api(store: Store, authorizer: Authorizer, engine: EngineContext | None = None) -> ApiResource:
    return ApiResource(Router(operations()), store, authorizer, engine)
