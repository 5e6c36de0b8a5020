"""What one journal message changed, read back on both engines: its order and patient history rows, its
events and the outbox messages they queued, and a resent copy queued behind the destination's pending
messages (delivery claims it after them)."""
from __future__ import annotations

import time

from engine.store import cluster, journal, journal_effects, orders, patients, queues
from engine.store.database import Store, Transaction
from tests.store.test_queues import NOW, enqueue, scheduled_order


def received(txn: Transaction, control_id: str) -> int:
    return journal.insert(txn, received_at=NOW, peer="127.0.0.1:1", sending_application="RIS", sending_facility="H",
                          control_id=control_id, message_code="ORM^O01", hl7_version="2.3.1", payload_hash=control_id,
                          raw=b"MSH|^~\\&|RIS|H|||||ORM^O01|" + control_id.encode())


def test_a_message_s_changes_and_its_resent_copy_in_queue_order(store: Store) -> None:
    def day(txn: Transaction) -> tuple[int, int]:
        first, other = received(txn, "C1"), received(txn, "C2")
        order_ref, _step = scheduled_order(txn)
        orders.add_history(txn, order_ref, "created", "NW", first)
        orders.add_history(txn, order_ref, "changed", "XO", other)
        patients.add_history(txn, orders.by_ref(txn, order_ref).patient_ref, "created", "ORM^O01", first)
        queues.record_event(txn, "order.scheduled", "ACC1", "", order_ref, first, ("archive",))
        queues.record_event(txn, "order.changed", "ACC1", "", order_ref, other, ("archive",))
        for event in queues.undispatched_events(txn):
            queues.enqueue_outbox(txn, destination="archive", at=NOW, event_ref=event.id, kind=event.kind,
                                  control_id=f"E{event.id}", accession_number="ACC1", message=b"MSH|")
        return first, other
    first, other = store.write(day)
    store.write(lambda txn: enqueue(txn, "ris", "PENDING-1"))
    copy = store.write(lambda txn: journal_effects.enqueue_resent(
        txn, destination="ris", at=NOW, journal_ref=first, control_id="R1", accession_number="ACC1",
        message=b"MSH|copy"))

    effects = store.read(lambda txn: journal_effects.journal_effects(txn, first))
    assert [(c.kind, c.placer_order_number, c.accession_numbers) for c in effects.orders] == [
        ("created", "PL1", ("ACC1",))]
    assert [(c.kind, c.patient_id, c.issuer) for c in effects.patients] == [("created", "PAT1", "H")]
    assert [(e.kind, e.dispatched) for e in effects.events] == [("order.scheduled", False)]
    assert [(q.destination, q.kind, q.status, q.event_ref is None) for q in effects.outbox] == [
        ("archive", "order.scheduled", "pending", False), ("ris", "journal.resend", "pending", True)]
    assert effects.outbox[1].id == copy
    assert [c.kind for c in store.read(lambda txn: journal_effects.journal_effects(txn, other)).orders] == ["changed"]
    assert store.read(lambda txn: journal_effects.journal_effects(txn, 999)) == journal_effects.JournalEffects(
        (), (), (), ())
    head = store.read(lambda txn: queues.claim_outbox(txn, "ris"))
    assert head.control_id == "PENDING-1"           # the copy waits behind the pending message
    store.write(lambda txn: queues.outbox_delivered(
        txn, head, b"ACK", NOW, cluster.take(txn, queues.outbox_lease("ris"), "test", time.time(), 30), 30))
    assert store.read(lambda txn: queues.claim_outbox(txn, "ris")).control_id == "R1"
