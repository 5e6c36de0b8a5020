"""The identifier of a C-FIND / C-MOVE / C-GET request, decoded without letting its shape break the handler.

pydicom decodes nested sequences recursively: an identifier nested a few hundred levels deep raises
RecursionError (a traceback and 0xC000 / 0xC311 before).  Such a request is one the engine cannot
serve: ``UnusableIdentifier`` is a QueryError, answered 0xA900 with a log line like any malformed key.
"""
from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from ..store.matching import QueryError


class UnusableIdentifier(QueryError):
    """The identifier cannot be decoded at all (0xA900)."""


def identifier_of(event: Any) -> Dataset:
    """``event.identifier`` (pynetdicom decodes it on first use), or UnusableIdentifier."""
    try:
        return event.identifier
    except RecursionError:
        raise UnusableIdentifier("identifier: sequences nested too deep to decode") from None
