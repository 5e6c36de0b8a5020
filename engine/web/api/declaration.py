"""How an API operation is declared, once: path, method, needed role, parameters, body and response
schemas, and the function that answers it.  The router, the parameter and body checks and the OpenAPI
document (openapi.py) are all read from these declarations.
"""
from __future__ import annotations

import json
from urllib.parse import unquote
from dataclasses import dataclass, field
from typing import Any, Callable

from jsonschema import Draft202012Validator

from ...domain.principal import Principal
from ...store.database import Transaction
from .context import EngineContext

API_PREFIX = "/api/v1"


class ApiError(Exception):
    """An answer other than 200, with the message the client gets as ``{"error": message}``."""

    status = 500

    def __init__(self, message: str, **detail: Any):
        super().__init__(message)
        self.message = message
        self.detail = detail   # more members of the JSON answer (e.g. "field", "needed_role")


class BadRequest(ApiError):
    status = 400


class Unauthenticated(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Conflict(ApiError):
    """The request is understood but the object's state does not allow it (e.g. resend a delivered message)."""

    status = 409


class UnprocessableEntity(ApiError):
    """Understood but not to be done as sent: an ``Idempotency-Key`` kept for another request."""

    status = 422


IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 200

ERROR_STATUSES = {400: "bad parameter or body (the field is named)", 401: "authentication required",
                  403: "role too low, or CSRF token missing", 404: "no such object",
                  409: "the object's state does not allow it", 413: "request body too large",
                  422: f"the {IDEMPOTENCY_HEADER} was used with another request",
                  503: "database unavailable"}


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str                          # "path" or "query"
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Call:
    """What a handler gets: the checked parameters and body, who asks and from where."""

    params: dict[str, Any]
    body: Any
    principal: Principal
    client: str                            # the HTTP peer address
    engine: EngineContext | None = None    # the running engine (None in a bare API without one)


@dataclass(frozen=True)
class Operation:
    method: str                            # GET, POST
    path: str                              # below /api/v1, e.g. "/orders/{accession}"
    operation_id: str
    summary: str
    role: str                              # the least role that may call it (domain/principal.ROLES)
    response: dict[str, Any]               # JSON schema of the 200 answer
    handler: Callable[[Transaction, Call], Any]   # runs off the reactor, in a read or write transaction
    parameters: tuple[Parameter, ...] = ()
    body: dict[str, Any] | None = None     # JSON schema of the request body (None: takes none)
    writes: bool = False                   # runs in a write transaction (else a read transaction)
    errors: tuple[int, ...] = ()           # answers besides 200 and the common ones (400, 401, 403, 503)
    in_memory: bool = False                # answered on the reactor from memory: no transaction (txn is None)
    keeps_answer: bool = True              # a write's answer may be kept for its Idempotency-Key (not a secret)
    # slow work that needs no store (a password hash), run on the thread pool before the transaction, so the
    # writer thread (one for every write of the engine) is not held by it
    prepare: Callable[[Call], Call] | None = None
    secret_members: tuple[str, ...] = ()   # body members kept nowhere, not even in an idempotency key's request hash
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for parameter in self.parameters:
            self._validators[parameter.name] = Draft202012Validator(parameter.schema)
        if self.body is not None:
            self._validators[""] = Draft202012Validator(self.body)

    @property
    def idempotent(self) -> bool:
        """Whether an ``Idempotency-Key`` header is taken: writes whose answer holds no secret."""
        return self.writes and self.keeps_answer

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    def parse_parameters(self, path_values: dict[str, str], query: dict[bytes, list[bytes]]) -> dict[str, Any]:
        """The parameters as their schemas' types; ``BadRequest`` naming the parameter when one is wrong."""
        declared = {parameter.name: parameter for parameter in self.parameters}
        texts: dict[str, str] = dict(path_values)
        for raw_name, values in query.items():
            name = raw_name.decode("utf-8", "replace")
            parameter = declared.get(name)
            if parameter is None or parameter.location != "query":
                raise BadRequest(f"unknown query parameter {name!r}; known: "
                                 f"{', '.join(p.name for p in self.parameters if p.location == 'query') or 'none'}",
                                 field=f"query.{name}")
            if len(values) != 1:
                raise BadRequest(f"query parameter {name!r} given {len(values)} times", field=f"query.{name}")
            try:
                texts[name] = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"query parameter {name!r} is not UTF-8", field=f"query.{name}") from None
        parsed: dict[str, Any] = {}
        for parameter in self.parameters:
            where = f"{parameter.location}.{parameter.name}"
            if parameter.name not in texts:
                if parameter.required:
                    raise BadRequest(f"{parameter.location} parameter {parameter.name!r} is required", field=where)
                parsed[parameter.name] = parameter.schema.get("default")
                continue
            value = _typed(texts[parameter.name], parameter.schema)
            if value is _NOT_A_NUMBER:
                raise BadRequest(f"{parameter.location} parameter {parameter.name!r}: {texts[parameter.name]!r} "
                                 "is not an integer", field=where)
            error = next(iter(self._validators[parameter.name].iter_errors(value)), None)
            if error is not None:
                raise BadRequest(f"{parameter.location} parameter {parameter.name!r}: {error.message}", field=where)
            parsed[parameter.name] = value
        return parsed

    def parse_body(self, content: bytes) -> Any:
        """The JSON body checked against the declared schema (an empty body is ``{}``)."""
        if self.body is None:
            if content.strip():
                raise BadRequest("this operation takes no request body", field="body")
            return None
        try:
            body = json.loads(content) if content.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body: not valid JSON: {exc}", field="body") from None
        errors = sorted(self._validators[""].iter_errors(body), key=lambda error: list(error.absolute_path))
        if errors:
            where = field_path("body", errors[0].absolute_path)
            raise BadRequest(f"{where}: {errors[0].message}", field=where)
        return body


_NOT_A_NUMBER = object()


def _typed(text: str, schema: dict[str, Any]) -> Any:
    """A parameter's text as the type its schema names (integers only; others stay text)."""
    if schema.get("type") != "integer":
        return text
    try:
        return int(text, 10)
    except ValueError:
        return _NOT_A_NUMBER


def field_path(root: str, path: Any) -> str:
    """``body.items[2].name`` for jsonschema's path ["items", 2, "name"]."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


class Router:
    """Finds the operation of a method and path; unknown paths and methods are ``ApiError``s."""

    def __init__(self, operations: list[Operation]):
        self.operations = operations
        seen = set()
        for operation in operations:
            key = (operation.method, operation.segments)
            assert key not in seen, f"{operation.method} {operation.path} declared twice"
            seen.add(key)

    def route(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        if not path.startswith(API_PREFIX + "/"):
            raise NotFound(f"no API operation at {path}; the operations are listed in {API_PREFIX}/openapi.json")
        segments = tuple(unquote(segment) for segment in path[len(API_PREFIX) + 1:].split("/"))
        allowed = []
        for operation in self.operations:
            values = _match(operation.segments, segments)
            if values is None:
                continue
            if operation.method == method:
                return operation, values
            allowed.append(operation.method)
        if allowed:
            raise MethodNotAllowed(f"{method} not allowed on {path}; allowed: {', '.join(sorted(allowed))}",
                                   allowed=sorted(allowed))
        raise NotFound(f"no API operation at {path}; the operations are listed in {API_PREFIX}/openapi.json")


def _match(template: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    values = {}
    for expected, actual in zip(template, segments):
        if expected.startswith("{") and expected.endswith("}"):
            if not actual:
                return None
            values[expected[1:-1]] = actual
        elif expected != actual:
            return None
    return values
