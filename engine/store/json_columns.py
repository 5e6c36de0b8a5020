"""The encoding of the store's JSON text columns (attributes, commitment bodies).

Store modules decode a column once, when they build the record that holds it.  The one reader outside
engine/store is workflow/worklist.py: it decodes the worklist query's three attribute columns per match
itself, because a frozen record per match would cost the MWL C-FIND more than the decoding does."""
from __future__ import annotations

import json
from typing import Any

# One encoder for every row: ``json.dumps`` with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def dumps(value: dict[str, Any]) -> str:
    return _JSON.encode(value)


# One decoder too: ``json.loads`` goes through two whitespace regex matches per call (a broad worklist
# query decodes three columns for each of 10,000 rows).
_DECODER = json.JSONDecoder()


def loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:
        return json.loads(text)       # leading whitespace, or not JSON: json.loads says which
    return value if end == len(text) else json.loads(text)
