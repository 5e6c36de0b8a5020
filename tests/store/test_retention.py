"""Retention SQL (engine/store/retention.py) on both engines, and the purge run's batch bounds on 100k rows:
old rows go, rows still needed (duplicate window, undelivered outbox, processing, unread audit) stay."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from engine.config import Config
from engine.store import journal, journal_effects, orders, patients, queues, retention
from engine.store.database import Store, Transaction
from engine.workflow.housekeeping import Retention


def stamp(days_ago: float) -> str:
    return (datetime.now().astimezone() - timedelta(days=days_ago)).isoformat()


def received(txn: Transaction, control_id: str, days_ago: float, status: str = "processed", keyed: bool = True) -> int:
    """A journal entry received ``days_ago``, finished with ``status``, holding its key when ``keyed``."""
    at = stamp(days_ago)
    entry = journal.insert(txn, received_at=at, peer="test", sending_application="RIS", sending_facility="H",
                           control_id=control_id, message_code="ORM^O01", hl7_version="2.3.1", payload_hash=control_id,
                           raw=b"MSH|" + control_id.encode())
    if keyed:
        assert journal.claim(txn, "RIS", "H", control_id, entry, at, stamp(1000)) is None
    if status != "processing":
        journal.finish(txn, entry, status, "AA", b"MSA|AA", "", "")
    return entry


def count(store: Store, table: str) -> int:
    return store.read(lambda txn: txn.row(f"SELECT COUNT(*) FROM {table}"))[0]


def test_journal_purge_keeps_what_is_still_needed_and_unlinks_the_rest(store: Store) -> None:
    def setup(txn: Transaction) -> dict[str, int]:
        patient = patients.insert(txn, "PAT1", "H", {})
        order = orders.insert(txn, patient, "PL1", "FI1", "RIS", "broker", "")
        ids = {"old": received(txn, "OLD", 5), "windowed": received(txn, "WIN", 1.5),
               "duplicate": received(txn, "WIN", 1.4, status="duplicate", keyed=False),
               "processing": received(txn, "PROC", 5, status="processing", keyed=False),
               "resent": received(txn, "RESENT", 5), "delivered": received(txn, "DELIV", 5), "new": received(txn, "NEW", 0)}
        orders.add_history(txn, order, "created", "", ids["old"])
        queues.record_event(txn, "order.scheduled", "ACC1", "", order, ids["old"])
        journal_effects.enqueue_resent(txn, destination="ris", at=stamp(5), journal_ref=ids["resent"], control_id="R1",
                                       accession_number="ACC1", message=b"MSH|R1")
        done = journal_effects.enqueue_resent(txn, destination="ris", at=stamp(5), journal_ref=ids["delivered"],
                                              control_id="R2", accession_number="ACC1", message=b"MSH|R2")
        txn.execute("UPDATE outbox SET status = 'delivered', delivered_at = ? WHERE id = ?", (stamp(4), done))
        return ids
    ids = store.write(setup)
    purged = store.write(lambda txn: retention.purge_journal(txn, stamp(1), stamp(2), 500))
    assert purged == 3                                                 # old, duplicate, delivered
    left = {row[0] for row in store.read(lambda txn: txn.rows("SELECT id FROM journal"))}
    assert left == {ids["windowed"], ids["processing"], ids["resent"], ids["new"]}
    keys = {row[0] for row in store.read(lambda txn: txn.rows("SELECT control_id FROM journal_keys"))}
    assert keys == {"WIN", "RESENT", "NEW"}                             # OLD's and DELIV's expired keys went too
    assert store.read(lambda txn: txn.rows("SELECT journal_ref FROM order_history")) == [(None,)]
    assert store.read(lambda txn: txn.rows("SELECT journal_ref FROM events")) == [(None,)]
    assert sorted(store.read(lambda txn: txn.rows("SELECT control_id, journal_ref FROM outbox"))) == [
        ("R1", ids["resent"]), ("R2", None)]
    # a resend of the purged control ID is new again: its key can be claimed
    assert store.write(lambda txn: journal.claim(txn, "RIS", "H", "OLD", ids["new"], stamp(0), stamp(2))) is None


def test_outbox_history_and_audit_purges_keep_undelivered_and_unread_rows(store: Store) -> None:
    def setup(txn: Transaction) -> None:
        patient = patients.insert(txn, "PAT1", "H", {})
        order = orders.insert(txn, patient, "PL1", "FI1", "RIS", "broker", "")
        for control_id, status in (("D1", "delivered"), ("X1", "discarded"), ("P1", "pending"), ("Z1", "dead"),
                                   ("D2", "delivered")):
            queues.enqueue_outbox(txn, destination="ris", at=stamp(5), event_ref=None, kind="order.scheduled",
                                  control_id=control_id, accession_number="ACC1", message=b"MSH")
            txn.execute("UPDATE outbox SET status = ?, delivered_at = ? WHERE control_id = ?",
                        (status, stamp(0 if control_id == "D2" else 4) if status == "delivered" else "", control_id))
        for _ in range(3):
            orders.add_history(txn, order, "changed", "", None)
        txn.execute("UPDATE order_history SET at = ? WHERE id < (SELECT MAX(id) FROM order_history)", (stamp(5),))
        txn.execute("INSERT INTO patient_history (patient_ref, at, kind) VALUES (?, ?, 'updated')", (patient, stamp(5)))
        for index in range(4):
            txn.execute("INSERT INTO operator_audit (at, actor, client, action, subject) VALUES (?, 'op', '', 'x', ?)",
                        (stamp(5), str(index)))
    store.write(setup)
    assert store.write(lambda txn: retention.purge_outbox(txn, stamp(1), 500)) == 2
    assert sorted(r[0] for r in store.read(lambda txn: txn.rows("SELECT control_id FROM outbox"))) == ["D2", "P1", "Z1"]
    assert store.write(lambda txn: retention.purge_history(txn, retention.ORDER_HISTORY, stamp(1), 500)) == 2
    assert store.write(lambda txn: retention.purge_history(txn, retention.PATIENT_HISTORY, stamp(1), 500)) == 1
    assert count(store, "order_history") == 1 and count(store, "patient_history") == 0
    first = store.read(lambda txn: txn.row("SELECT MIN(id) FROM operator_audit"))[0]
    store.write(lambda txn: txn.execute("INSERT INTO audit_cursors (source, last_id) VALUES ('operator_audit', ?)",
                                        (first + 1,)))
    assert store.write(lambda txn: retention.purge_operator_audit(txn, stamp(1), 500)) == 2   # up to the cursor
    assert count(store, "operator_audit") == 2


def test_a_purge_of_100k_rows_runs_in_short_bounded_batches(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'big.sqlite'}")
    try:
        rows = 100_000

        def fill(txn: Transaction) -> None:
            at = stamp(10)
            txn.connection.executemany(
                "INSERT INTO journal (received_at, control_id, payload_hash, raw, status) VALUES (?, ?, '', ?, 'processed')",
                [(at, f"C{index}", b"MSH|^~\\&|RIS" + b"x" * 200) for index in range(rows)])
        store.write(fill, timeout=120)
        config = Config()
        config.retention.journal_days, config.retention.batch_rows = 1.0, 500
        counted: list[tuple[str, int]] = []
        purge = Retention(config, store, lambda table, number: counted.append((table, number)))
        waits: list[float] = []
        real_write = store.write

        def timed_write(work, timeout=60):   # the writer's wait per batch: queue, work and COMMIT
            started = time.perf_counter()
            try:
                return real_write(work, timeout)
            finally:
                waits.append(time.perf_counter() - started)
        store.write = timed_write   # type: ignore[method-assign]
        started = time.perf_counter()
        assert purge.run()["journal"] == rows
        elapsed = time.perf_counter() - started
        assert counted == [("journal", rows)] and count(store, "journal") == 0
        assert len(waits) == rows // 500 + 1                       # 200 full batches and the empty one that ends it
        median = sorted(waits)[len(waits) // 2]
        print(f"100k journal rows purged in {elapsed:.2f} s; batch of 500: median {median * 1000:.1f} ms,"
              f" longest {max(waits) * 1000:.1f} ms (its statements alone: {purge.longest_batch * 1000:.1f} ms)")
        assert median < 0.05, f"a batch of 500 rows holds the writer {median * 1000:.0f} ms"   # a few ms unloaded
    finally:
        store.close()


def test_a_purge_run_stops_once_this_instance_is_no_longer_the_leader(store: Store) -> None:
    store.write(lambda txn: [received(txn, f"C{index}", 5, keyed=False) for index in range(3)])
    config = Config()
    config.retention.journal_days, config.retention.batch_rows = 1.0, 1
    leading = [True, True, False]                       # the lease is lost after two batches
    purge = Retention(config, store, lambda table, number: None, lambda: leading.pop(0) if leading else False)
    assert purge.run() == {"journal": 2} and count(store, "journal") == 1
