"""SQL of the operator audit trail: every write made through the API, the console or ``swf users``.

``record_action`` runs in the write transaction of the change it records, so an action and its audit row
commit together or not at all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .database import Transaction
from .timestamps import now_iso
from .where import Where


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str                         # user name, or "cli:<os user>" for command-line actions
    client: str                        # the HTTP client address, or "cli"
    action: str                        # e.g. "outbox.resend", "order.cancel", "user.add"
    subject: str                       # what it acted on: an outbox ID, an accession number, a user name
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def record_action(txn: Transaction, *, actor: str, client: str, action: str, subject: str,
                  before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    txn.execute("INSERT INTO operator_audit (at, actor, client, action, subject, before_json, after_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [now_iso(), actor, client, action, subject, _encode(before), _encode(after)])


def audit_entries(txn: Transaction, *, limit: int, before_id: int | None = None, actor: str | None = None,
                  action: str | None = None) -> list[AuditEntry]:
    """The newest entries first (``before_id``: the page after the one that ended there)."""
    where = Where()
    where.equal(("actor", actor), ("action", action))
    where.when("id < ?", before_id)
    return [AuditEntry(id, at, actor_, client, action_, subject, _decode(before), _decode(after))
            for id, at, actor_, client, action_, subject, before, after in txn.rows(
                "SELECT id, at, actor, client, action, subject, before_json, after_json FROM operator_audit"
                f"{where.clause} ORDER BY id DESC LIMIT ?", [*where.params, limit])]


def _encode(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _decode(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)
