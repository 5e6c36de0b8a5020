"""The ATNA audit queue on both engines: messages back oldest first and gone once sent, the depth with the
oldest's time, and the cursors that let the recorder audit each domain event / operator action once
(starting at the newest row when first read, so the past is not sent)."""
from __future__ import annotations

import time

from engine.store import audit, audit_queue, cluster, queues
from engine.store.database import Store


def test_queue_in_order_depth_and_sent(store: Store) -> None:
    assert store.read(audit_queue.depth) == (0, "")
    store.write(lambda txn: [audit_queue.enqueue(txn, "Query", f"<m{i}/>".encode()) for i in range(3)])
    head = store.read(lambda txn: audit_queue.oldest(txn, 2))
    assert [(item.event, item.message) for item in head] == [("Query", b"<m0/>"), ("Query", b"<m1/>")]
    count, first = store.read(audit_queue.depth)
    assert count == 3 and first == head[0].created_at
    lease = store.write(lambda txn: cluster.take(txn, audit_queue.LEASE, "test", time.time(), 30))
    store.write(lambda txn: audit_queue.not_sent(txn, head[0].id, "connection refused", lease, 30))
    store.write(lambda txn: audit_queue.sent(txn, [item.id for item in head], lease, 30))
    assert [item.message for item in store.read(lambda txn: audit_queue.oldest(txn, 10))] == [b"<m2/>"]


def test_cursors_start_at_the_newest_row_and_see_what_follows(store: Store) -> None:
    store.write(lambda txn: queues.record_event(txn, "patient.registered", "OLD^HOSP", "before the trail"))
    assert store.write(lambda txn: audit_queue.cursor(txn, audit_queue.EVENTS)) > 0
    assert store.write(lambda txn: audit_queue.cursor(txn, audit_queue.OPERATOR_ACTIONS)) == 0
    assert not store.read(audit_queue.rows_waiting)
    store.write(lambda txn: queues.record_event(txn, "patient.updated", "NEW^HOSP", "after"))
    store.write(lambda txn: audit.record_action(txn, actor="cli:root", client="cli", action="user.add",
                                                subject="bob", before=None, after=None))
    assert store.read(audit_queue.rows_waiting)

    def read_and_advance(txn) -> tuple[list, list]:
        events = audit_queue.events_after(txn, audit_queue.cursor(txn, audit_queue.EVENTS))
        actions = audit_queue.actions_after(txn, audit_queue.cursor(txn, audit_queue.OPERATOR_ACTIONS))
        audit_queue.advance(txn, audit_queue.EVENTS, events[-1].id)
        audit_queue.advance(txn, audit_queue.OPERATOR_ACTIONS, actions[-1].id)
        return events, actions
    events, actions = store.write(read_and_advance)
    assert [(e.kind, e.subject) for e in events] == [("patient.updated", "NEW^HOSP")]
    assert [(a.actor, a.action, a.subject) for a in actions] == [("cli:root", "user.add", "bob")]
    assert not store.read(audit_queue.rows_waiting)
