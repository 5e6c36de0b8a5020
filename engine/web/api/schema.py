"""JSON Schemas of the API, most of them derived from the store's frozen records.

A response schema is written once: ``record_schema(OrderOverview)`` reads the record's fields and type
hints, so the OpenAPI document cannot drift from what ``record_json`` sends.  Records become named
components (``#/components/schemas/<class name>``); every object schema lists all its properties as
required and admits no others, so the tests' response validation notices a field added or renamed.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}

# name -> schema of every record named so far (the document's components), and the class behind each name
COMPONENTS: dict[str, dict[str, Any]] = {}
_NAMED: dict[str, type] = {}


def obj(properties: dict[str, dict[str, Any]], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly these properties, all required except ``optional``."""
    return {"type": "object", "properties": properties,
            "required": [name for name in properties if name not in optional], "additionalProperties": False}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def page(items: dict[str, Any]) -> dict[str, Any]:
    """A listing page: its items and the cursor of the next page (null on the last)."""
    return obj({"items": array(items), "next_cursor": nullable(INTEGER)})


def _hint_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint is str:
        return STRING
    if hint is bool:
        return BOOLEAN
    if hint is int:
        return INTEGER
    if hint is float:
        return NUMBER
    if origin in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        assert len(members) == 1, f"unsupported union {hint}"
        return nullable(_hint_schema(members[0]))
    if origin in (tuple, list):
        return array(_hint_schema(typing.get_args(hint)[0]))
    if origin is dict or hint is dict:
        args = typing.get_args(hint)
        values = _hint_schema(args[1]) if args and args[1] is not Any else {}
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    if dataclasses.is_dataclass(hint):
        return record_schema(hint)
    raise TypeError(f"no JSON schema for {hint!r}")


def record_schema(record: type, omit: tuple[str, ...] = (), extra: dict[str, dict[str, Any]] | None = None,
                  names: dict[str, Any] | None = None) -> dict[str, Any]:
    """A reference to the component schema of a frozen record: its fields less ``omit`` (bytes fields
    must be omitted, or replaced by ``extra``), plus ``extra``.  ``names``: what the record's hints name
    that its module imports for type checking only (e.g. pydicom's Dataset)."""
    name = record.__name__
    if name not in COMPONENTS:
        hints = typing.get_type_hints(record, localns=names)
        properties = {field.name: _hint_schema(hints[field.name])
                      for field in dataclasses.fields(record) if field.name not in omit}
        COMPONENTS[name] = obj({**properties, **(extra or {})})
        _NAMED[name] = record
    assert _NAMED[name] is record, f"two records named {name}: {_NAMED[name]} and {record}"
    return {"$ref": f"#/components/schemas/{name}"}


def record_json(record: Any, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record as the JSON object its ``record_schema`` describes (``extra`` fields are the caller's)."""
    return {field.name: _plain(getattr(record, field.name))
            for field in dataclasses.fields(record) if field.name not in omit}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return record_json(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("a bytes field must be omitted from the record's JSON and presented by its view")
    return value
