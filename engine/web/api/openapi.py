"""The OpenAPI 3.1 document of ``/api/v1``, generated from the operations' declarations (never written by
hand): paths, parameters, bodies, the needed role of each operation and the schemas of its answers."""
from __future__ import annotations

from typing import Any

from .declaration import API_PREFIX, ERROR_STATUSES, IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY_MAX, Operation
from .schema import COMPONENTS, STRING, array, obj

ERROR_SCHEMA = obj({"error": STRING, "field": STRING, "needed_role": STRING, "allowed": array(STRING), "status": STRING},
                   optional=("field", "needed_role", "allowed", "status"))
_COMMON_ERRORS = (400, 401, 403, 503)
IDEMPOTENCY_PARAMETER = {
    "name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
    "description": "a retried request with the same key gets the first answer and changes nothing again; the same "
                   "key with another request (method, path, parameters or body) is answered 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX}}


def document(operations: list[Operation], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(API_PREFIX + operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "swf-engine API", "version": version,
                 "description": "The engine's operator API. Every operation names the least role that may call "
                                "it (x-required-role: viewer < operator < admin). Lists are newest or oldest "
                                "first by id, as each says, and page with `limit` and `cursor` (the "
                                "`next_cursor` of the previous page)."},
        "paths": paths,
        "components": {"schemas": {**dict(sorted(COMPONENTS.items())), "Error": ERROR_SCHEMA}},
    }


def _operation(operation: Operation) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {
        "schema": operation.response}}}}
    for status in sorted({*_COMMON_ERRORS, *operation.errors, *((409,) if operation.writes else ()), *((422,) if operation.idempotent else ()),
                         *((413,) if operation.body is not None else ())}):
        answers[str(status)] = {"description": ERROR_STATUSES[status], "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "x-required-role": operation.role,
        "parameters": [{"name": parameter.name, "in": parameter.location, "required": parameter.required
                        or parameter.location == "path", "description": parameter.description,
                        "schema": parameter.schema} for parameter in operation.parameters]
        + ([IDEMPOTENCY_PARAMETER] if operation.idempotent else []),
        "responses": answers,
    }
    if operation.body is not None:
        described["requestBody"] = {"required": False, "content": {"application/json": {"schema": operation.body}}}
    return described
