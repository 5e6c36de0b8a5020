"""SQL of the API's idempotency keys: the first answer of a POST sent with an ``Idempotency-Key`` header,
kept in the transaction that made its change, so a retried POST gets that answer and changes nothing."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .database import Transaction
from .timestamps import now_iso


@dataclass(frozen=True)
class KeptAnswer:
    operation: str                     # the operation ID the key was first used with
    status: int
    response: Any                      # the JSON answer, decoded


def kept_answer(txn: Transaction, key: str) -> KeptAnswer | None:
    row = txn.row("SELECT operation, status, response FROM idempotency_keys WHERE key = ?", [key])
    return None if row is None else KeptAnswer(row[0], row[1], json.loads(row[2]))


def keep_answer(txn: Transaction, key: str, operation: str, status: int, response: Any) -> None:
    txn.execute("INSERT INTO idempotency_keys (key, operation, created_at, status, response) VALUES (?, ?, ?, ?, ?)",
                [key, operation, now_iso(), status, json.dumps(response, sort_keys=True)])
