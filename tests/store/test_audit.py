"""The operator audit trail on both engines: an action and its audit row commit together, newest first,
with before/after read back as dicts."""
from __future__ import annotations

import pytest

from engine.store import audit
from engine.store.database import Store


def test_entries_newest_first_with_before_and_after_decoded(store: Store) -> None:
    store.write(lambda txn: audit.record_action(txn, actor="alice", client="127.0.0.1", action="outbox.resend",
                                                subject="7", before={"status": "dead"}, after={"status": "pending"}))
    store.write(lambda txn: audit.record_action(txn, actor="cli:root", client="cli", action="user.add",
                                                subject="bob", before=None, after={"role": "viewer"}))
    entries = store.read(lambda txn: audit.audit_entries(txn, limit=10))
    assert [(e.actor, e.action, e.subject) for e in entries] == [("cli:root", "user.add", "bob"),
                                                                  ("alice", "outbox.resend", "7")]
    assert entries[1].before == {"status": "dead"} and entries[1].after == {"status": "pending"}
    assert entries[0].before is None
    older = store.read(lambda txn: audit.audit_entries(txn, limit=10, before_id=entries[0].id))
    assert [e.subject for e in older] == ["7"]
    assert [e.subject for e in store.read(lambda txn: audit.audit_entries(txn, limit=10, actor="alice"))] == ["7"]


def test_audit_row_rolls_back_with_the_change(store: Store) -> None:
    def failing_change(txn) -> None:
        audit.record_action(txn, actor="alice", client="127.0.0.1", action="order.cancel", subject="ACC1",
                            before={"status": "SCHEDULED"}, after={"status": "CANCELED"})
        raise RuntimeError("the change itself failed")

    with pytest.raises(RuntimeError):
        store.write(failing_change)
    assert store.read(lambda txn: audit.audit_entries(txn, limit=10)) == []
