"""SQL of the API's idempotency keys: the first answer of a POST sent with an ``Idempotency-Key`` header,
kept in the transaction that made its change with a hash of that request, so a retried POST gets that
answer and changes nothing, and the same key sent with another request is told apart from a retry."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .database import Transaction
from .timestamps import now_iso


@dataclass(frozen=True)
class KeptAnswer:
    operation: str                     # the operation ID the key was first used with
    request_hash: str                  # hash of that request ("" for a key kept before schema version 7)
    status: int
    response: Any                      # the JSON answer, decoded


def kept_answer(txn: Transaction, key: str) -> KeptAnswer | None:
    row = txn.row("SELECT operation, request_hash, status, response FROM idempotency_keys WHERE key = ?", [key])
    return None if row is None else KeptAnswer(row[0], row[1], row[2], json.loads(row[3]))


def keep_answer(txn: Transaction, key: str, operation: str, request_hash: str, status: int, response: Any) -> None:
    txn.execute("INSERT INTO idempotency_keys (key, operation, request_hash, created_at, status, response)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [key, operation, request_hash, now_iso(), status, json.dumps(response, sort_keys=True)])
