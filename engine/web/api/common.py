"""Parameters and presentations several API operations share: paging, path segments, HL7 bytes as text."""
from __future__ import annotations

from typing import Any

from ...hl7.message import decode_bytes
from ...store.listings import Page
from .declaration import Parameter
from .schema import INTEGER, STRING, record_json

MAX_LIMIT = 500
MAX_ID = 2**63 - 1       # row ids are 64-bit signed integers (SQLite INTEGER, PostgreSQL BIGINT)
LIMIT = Parameter("limit", "query", {**INTEGER, "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
                  f"items per page (1-{MAX_LIMIT}, default 50)")
CURSOR = Parameter("cursor", "query", {**INTEGER, "minimum": 1, "maximum": MAX_ID},
                   "the next_cursor of the previous page; without it the first page")
ID = Parameter("id", "path", {**INTEGER, "minimum": 1, "maximum": MAX_ID}, "the row id", required=True)


def path_parameter(name: str, description: str) -> Parameter:
    """A path segment naming an object by text (a UID, an accession number): required, not empty."""
    return Parameter(name, "path", {**STRING, "minLength": 1}, description, required=True)


ACCESSION = path_parameter("accession", "accession number")


def text_parameter(name: str, description: str, pattern: str | None = None, enum: tuple[str, ...] = ()) -> Parameter:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}
    if pattern:
        schema["pattern"] = pattern
    if enum:
        schema = {"type": "string", "enum": list(enum)}
    return Parameter(name, "query", schema, description)


def page_json(page: Page[Any], present: Any = record_json) -> dict[str, Any]:
    return {"items": [present(item) for item in page.items], "next_cursor": page.next_cursor}


def hl7_text(raw: bytes | None) -> str | None:
    """HL7 bytes as text for JSON, decoded per their MSH-18 (Latin-1 without one, as most RIS send);
    segments stay separated by CR."""
    return None if raw is None else decode_bytes(raw, "latin-1")[0]
