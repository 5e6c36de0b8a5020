"""GET /api/v1/conformance: what ``swf conformance`` writes, for the running engine's configuration and
profiles: the statement as JSON (``format=json``, the CLI's ``--format json``) or its markdown text."""
from __future__ import annotations

from typing import Any

from ...conformance import Statement, build, render_markdown
from ...store.database import Transaction
from .declaration import Call, Operation, Parameter
from .schema import STRING, obj, record_json, record_schema

FORMAT = Parameter("format", "query", {"type": "string", "enum": ["md", "json"], "default": "md"},
                   'md (default): the markdown document as {"markdown": text}; json: the statement itself')
MARKDOWN = obj({"markdown": STRING})


def show_conformance(_txn: Transaction, call: Call) -> dict[str, Any]:
    """Built per request (about a second of CPU, off the reactor): the profiles may have changed on disk."""
    assert call.engine is not None, "the conformance statement needs the running engine's configuration"
    statement = build(call.engine.config)
    if call.params["format"] == "json":
        return record_json(statement)
    return {"markdown": render_markdown(statement)}


OPERATIONS = [
    Operation("GET", "/conformance", "getConformance", "The DICOM Conformance Statement (PS3.2 layout: SCP and SCU "
              "presentation contexts, matching and return keys, MPPS, storage commitment, security) and the HL7 "
              "summary of this engine, generated from its own tables and configuration: what `swf conformance` "
              "writes with the same config file.", "viewer",
              {"oneOf": [MARKDOWN, record_schema(Statement)]}, show_conformance, parameters=(FORMAT,)),
]
