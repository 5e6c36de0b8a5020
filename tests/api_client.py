"""A client of the engine's HTTP API for tests, and the check of an answer against the served OpenAPI
document (openapi-schema-validator, OpenAPI 3.1 dialect)."""
from __future__ import annotations

import http.client
import json
from typing import Any

from openapi_schema_validator import OAS31Validator


class Api:
    def __init__(self, port: int, document: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        self.port = port
        self.headers = headers or {}                       # sent with every call (e.g. Authorization)
        self.checked: set[tuple[str, str, int]] = set()   # (method, path template, status) validated
        self.document = document if document is not None else self.get("/api/v1/openapi.json")[1]

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = connection.getresponse()
            raw = response.read()
            answer_headers = {name.lower(): value for name, value in response.getheaders()}
        finally:
            connection.close()
        assert answer_headers.get("content-type") == "application/json", (path, answer_headers, raw[:200])
        return response.status, json.loads(raw), answer_headers

    def get(self, path: str) -> tuple[int, Any]:
        status, body, _ = self.call("GET", path)
        return status, body

    def checked_call(self, method: str, template: str, path: str, expect: int, body: bytes | None = None,
                     headers: dict[str, str] | None = None) -> Any:
        """Call, assert the status, and validate the answer against the document's schema for it."""
        status, answer, _ = self.call(method, path, body, headers)
        assert status == expect, (method, path, status, answer)
        self.validate(method, template, status, answer)
        return answer

    def validate(self, method: str, template: str, status: int, answer: Any) -> None:
        operation = self.document["paths"][template][method.lower()]
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        OAS31Validator({**schema, "components": self.document["components"]}).validate(answer)
        self.checked.add((method, template, status))

    def operations(self) -> set[tuple[str, str]]:
        return {(method.upper(), template) for template, methods in self.document["paths"].items()
                for method in methods}
