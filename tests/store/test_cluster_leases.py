"""Leases of several engines on one database (engine/store/cluster.py, issue 15), on both engines, and on a
real PostgreSQL with two Store objects (two engines' connections) claiming the same queue at once:
exactly one delivers, per-destination order holds, a stale holder's completion is refused, and a lease
that expires is taken over."""
from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

from engine.store import cluster, queues
from engine.store.cluster import StaleLease
from engine.store.database import Store, Transaction

NOW = "2026-12-07T09:00:00.000+00:00"


def enqueue(store: Store, destination: str, count: int) -> None:
    store.write(lambda txn: [queues.enqueue_outbox(
        txn, destination=destination, at=NOW, event_ref=None, kind="order.scheduled", control_id=f"C{n}",
        accession_number=f"A{n}", message=f"MSH|C{n}".encode()) for n in range(count)])


def test_a_lease_is_held_renewed_and_taken_over_only_once_expired(store: Store) -> None:
    first = store.write(lambda txn: cluster.take(txn, "outbox:RIS", "a", 1000.0, 30))
    assert (first.holder, first.generation, first.expires_at) == ("a", 1, 1030.0)
    assert store.write(lambda txn: cluster.take(txn, "outbox:RIS", "b", 1029.0, 30)) is None   # a holds it
    renewed = store.write(lambda txn: cluster.take(txn, "outbox:RIS", "a", 1029.0, 30))
    assert (renewed.generation, renewed.expires_at) == (1, 1059.0)                            # same generation
    taken = store.write(lambda txn: cluster.take(txn, "outbox:RIS", "b", 1060.0, 30))
    assert (taken.holder, taken.generation) == ("b", 2)
    assert [(lease.name, lease.holder, lease.generation) for lease in store.read(cluster.leases)] == [
        ("outbox:RIS", "b", 2)]
    store.write(lambda txn: cluster.release(txn, "b"))                                        # a clean stop
    assert store.write(lambda txn: cluster.take(txn, "outbox:RIS", "a", 1061.0, 30)).generation == 3


def test_a_stale_holders_completion_is_refused_and_changes_nothing(store: Store) -> None:
    enqueue(store, "RIS", 1)
    head = store.read(lambda txn: queues.claim_outbox(txn, "RIS"))
    stale = store.write(lambda txn: cluster.take(txn, queues.outbox_lease("RIS"), "a", time.time() - 60, 30))
    successor = store.write(lambda txn: cluster.take(txn, queues.outbox_lease("RIS"), "b", time.time(), 30))
    with pytest.raises(StaleLease, match="outbox:RIS generation 1 of a was taken over: b holds generation 2"):
        store.write(lambda txn: queues.outbox_delivered(txn, head, b"ACK", NOW, stale, 30))
    with pytest.raises(StaleLease):
        store.write(lambda txn: queues.outbox_failed(txn, head, attempts=1, rejections=0, dead=True, next_attempt_at=0,
                                                     reason="late", ack=None, lease=stale, lease_seconds=30))
    assert store.read(lambda txn: queues.claim_outbox(txn, "RIS")) == head     # still pending, untouched
    renewed = store.write(lambda txn: queues.outbox_delivered(txn, head, b"ACK", NOW, successor, 30))
    assert renewed.generation == 2 and renewed.expires_at > successor.expires_at - 1
    assert store.read(lambda txn: queues.claim_outbox(txn, "RIS")) is None


def test_instances_heartbeat_in_one_row_each(store: Store) -> None:
    store.write(lambda txn: cluster.heartbeat(txn, "host:2575", "host", 10, NOW, 100.0))
    store.write(lambda txn: cluster.heartbeat(txn, "host:2576", "host", 11, NOW, 101.0))
    store.write(lambda txn: cluster.heartbeat(txn, "host:2575", "host", 10, NOW, 105.0))
    assert [(i.name, i.pid, i.heartbeat_at) for i in store.read(cluster.instances)] == [
        ("host:2575", 10, 105.0), ("host:2576", 11, 101.0)]


# -- two engines' stores on one PostgreSQL ---------------------------------------------------------
class Deliverer:
    """What an instance's destination queue does (engine/outbound/delivery.py), without the network:
    peek the head, hold the lease, "send", complete fenced.  ``pause_on`` stalls one send past the lease."""

    def __init__(self, store: Store, name: str, lease_seconds: float, pause_on: str = ""):
        self.store, self.name, self.lease_seconds, self.pause_on = store, name, lease_seconds, pause_on
        self.completed: list[str] = []
        self.refused: list[str] = []
        self.lease: cluster.Lease | None = None

    def run(self, until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15
        while not until() and time.monotonic() < deadline:
            head = self.store.read(lambda txn: queues.claim_outbox(txn, "RIS"))
            if head is None:
                time.sleep(0.01)
                continue
            if self.lease is None or self.lease.expires_at - time.time() < self.lease_seconds * 2 / 3:
                self.lease = self.store.write(lambda txn: cluster.take(
                    txn, queues.outbox_lease("RIS"), self.name, time.time(), self.lease_seconds))
                if self.lease is None:
                    time.sleep(0.02)
                continue
            lease = self.lease
            if head.control_id == self.pause_on:
                self.pause_on = ""
                time.sleep(self.lease_seconds * 2.5)        # stalled mid-delivery: the lease runs out
            try:
                self.lease = self.store.write(lambda txn: queues.outbox_delivered(txn, head, b"ACK", NOW, lease,
                                                                                  self.lease_seconds))
                self.completed.append(head.control_id)
            except StaleLease:
                self.refused.append(head.control_id)
                self.lease = None


def delivered_in_order(store: Store) -> list[str]:
    return [row[0] for row in store.read(lambda txn: txn.rows(
        "SELECT control_id FROM outbox WHERE status = 'delivered' ORDER BY delivered_at, id"))]


def all_delivered(store: Store) -> Callable[[], bool]:
    return lambda: store.read(lambda txn: queues.claim_outbox(txn, "RIS")) is None


@pytest.mark.postgres
def test_two_stores_claiming_one_queue_deliver_each_message_once_in_order(postgres_url: str) -> None:
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        enqueue(first, "RIS", 40)
        deliverers = [Deliverer(first, "a", 30), Deliverer(second, "b", 30)]
        threads = [threading.Thread(target=d.run, args=(all_delivered(first),)) for d in deliverers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        completed = [d.completed for d in deliverers]
        assert sorted(map(len, completed)) == [0, 40]         # one instance holds the destination
        assert sum(completed, []) == [f"C{n}" for n in range(40)]
        assert not deliverers[0].refused and not deliverers[1].refused
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_a_stalled_holders_lease_is_taken_over_and_its_late_completion_refused(postgres_url: str) -> None:
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        enqueue(first, "RIS", 20)
        stalled = Deliverer(first, "a", 1.0, pause_on="C5")
        first.write(lambda txn: cluster.take(txn, queues.outbox_lease("RIS"), "a", time.time(), 1.0))
        stalled.lease = first.read(lambda txn: cluster.leases(txn))[0]
        successor = Deliverer(second, "b", 1.0)
        threads = [threading.Thread(target=stalled.run, args=(all_delivered(first),)),
                   threading.Thread(target=successor.run, args=(all_delivered(first),))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert stalled.refused == ["C5"]                       # its completion after the takeover: refused
        assert stalled.completed == [f"C{n}" for n in range(5)]
        assert successor.completed[0] == "C5"                  # taken over where it stopped
        assert stalled.completed + successor.completed == [f"C{n}" for n in range(20)]
        assert delivered_in_order(first) == [f"C{n}" for n in range(20)]
        lease = first.read(cluster.leases)[0]
        assert lease.generation >= 2
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_two_stores_taking_a_free_lease_at_once_get_one_holder(postgres_url: str) -> None:
    stores = [Store(postgres_url), Store(postgres_url)]
    try:
        for round in range(10):
            barrier = threading.Barrier(2)
            won: list[str] = []

            def take(store: Store, name: str) -> None:
                barrier.wait(5)
                if store.write(lambda txn: cluster.take(txn, f"forward:PACS{round}", name, time.time(), 30)):
                    won.append(name)
            threads = [threading.Thread(target=take, args=(store, name)) for store, name in zip(stores, "ab")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert len(won) == 1, won
    finally:
        for store in stores:
            store.close()


@pytest.mark.postgres
def test_an_event_being_dispatched_by_one_instance_is_skipped_by_the_other(postgres_url: str) -> None:
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        first.write(lambda txn: queues.record_event(txn, "order.scheduled", "ACC1", "from swf cancel"))
        reading, release = threading.Event(), threading.Event()

        def dispatch_slowly(txn: Transaction) -> list[queues.DomainEvent]:
            events = queues.undispatched_events(txn)
            reading.set()
            release.wait(5)
            queues.mark_dispatched(txn, events)
            return events
        slow = first.submit(dispatch_slowly)
        assert reading.wait(5)
        assert second.write(queues.undispatched_events, timeout=5) == []   # locked by the first: skipped
        release.set()
        assert [event.subject for event in slow.result(5)] == ["ACC1"]
        assert second.write(queues.undispatched_events) == []              # and dispatched by it
    finally:
        first.close()
        second.close()
