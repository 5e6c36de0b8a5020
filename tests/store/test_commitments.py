"""The storage commitment SQL of engine/store/commitments.py on both engines: requests read back with
their references, the instances and orders they point at, and the report queue (listing, lease claim,
each completion) as frozen records."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta, timezone

import pytest

from engine.store import cluster, commitments, orders, patients
from engine.store.cluster import Lease, StaleLease
from engine.store.commitments import CommitmentReference, PendingReport
from engine.store.database import Store, Transaction

CT = "1.2.840.10008.5.1.4.1.1.2"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
AT = "2026-12-07T10:00:00.000+01:00"    # requested_at / updated_at as timestamps.now_iso writes them


def add(txn: Transaction, transaction_uid: str, *uids: str, duplicate_of: int | None = None) -> int:
    return commitments.add_request(txn, transaction_uid=transaction_uid, calling_ae_title="CT1",
                                   references=[CommitmentReference(CT, uid) for uid in uids], peer="127.0.0.1:104",
                                   duplicate_of=duplicate_of, at=AT, due=NOW)


def result(*committed: str) -> dict:
    return {"event_type": 1, "evaluated_at": AT, "failed": [],
            "committed": [{"sop_class_uid": CT, "sop_instance_uid": uid} for uid in committed]}


def reporting(store: Store, transaction_uid: str = "2.25.1") -> PendingReport:
    """A request evaluated and due at NOW; its listed report."""
    commitment_id = store.write(lambda txn: add(txn, transaction_uid, "2.25.11"))
    assert store.write(lambda txn: commitments.enqueue_report(txn, commitment_id, result("2.25.11"), NOW, AT)) == "CT1"
    [report] = [r for r in store.read(lambda txn: commitments.reports_due(txn, NOW)) if r.id == commitment_id]
    return report


def lease(store: Store, holder: str = "swf-a", ae: str = "CT1") -> Lease:
    """The requester's report lease, taken for ``holder`` for a minute."""
    taken = store.write(lambda txn: cluster.take(txn, commitments.report_lease(ae), holder, time.time(), 60))
    assert taken is not None
    return taken


def row(store: Store, commitment_id: int) -> tuple:
    return store.read(lambda txn: txn.row("SELECT status, attempts, next_attempt_at, last_error FROM commitments"
                                          " WHERE id = ?", (commitment_id,)))


def test_requests_are_read_back_with_their_references_and_an_unreadable_one_says_so(store: Store) -> None:
    first = store.write(lambda txn: add(txn, "2.25.1", "2.25.11", "2.25.12"))
    assert store.read(lambda txn: commitments.active_request(txn, "2.25.1")) == first
    assert store.read(lambda txn: commitments.active_request(txn, "2.25.9")) is None
    second = store.write(lambda txn: add(txn, "2.25.1", "2.25.21", duplicate_of=first))
    broken = store.write(lambda txn: add(txn, "2.25.3", "2.25.31"))
    store.write(lambda txn: txn.execute("UPDATE commitments SET request = ? WHERE id = ?", ("{not json", broken)))
    assert store.read(lambda txn: commitments.pending_due(txn, NOW - timedelta(seconds=1))) == []
    due = store.read(lambda txn: commitments.pending_due(txn, NOW))
    assert [(r.id, r.transaction_uid, r.calling_ae_title, r.requested_at) for r in due] == [
        (first, "2.25.1", "CT1", AT), (second, "2.25.1", "CT1", AT), (broken, "2.25.3", "CT1", AT)]
    assert due[0].references == (CommitmentReference(CT, "2.25.11"), CommitmentReference(CT, "2.25.12"))
    assert due[0].unreadable == "" and due[2].references == () and "unreadable" in due[2].unreadable
    with pytest.raises(dataclasses.FrozenInstanceError):
        due[0].id = 5  # type: ignore[misc]
    store.write(lambda txn: commitments.reschedule_pending(txn, first, NOW + timedelta(seconds=1)))
    assert [r.id for r in store.read(lambda txn: commitments.pending_due(txn, NOW))] == [second, broken]
    assert store.read(commitments.next_due) == NOW


def test_referenced_instances_and_their_orders_are_found_in_chunks(store: Store) -> None:
    def stored(txn: Transaction) -> int:
        patient = patients.insert(txn, "PAT1", "H", {})
        order = orders.insert(txn, patient, "PL1", "FI1", "RIS", "filler", "", ("archive",))
        procedure = orders.insert_procedure(txn, order, "ACC1", "RP1", "1.2.3", {})
        for n in range(600):   # more than one IN (...) chunk
            txn.execute("INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid,"
                        " series_instance_uid, transfer_syntax_uid, size_bytes, path, received_at,"
                        " requested_procedure_ref)"
                        " VALUES (?, ?, '1.2.3', '1.2.3.1', '1.2.840.10008.1.2.1', 1, ?, ?, ?)",
                        (f"2.25.{n}", CT, f"1.2.3/1.2.3.1/{n}.dcm", AT, procedure if n % 2 else None))
        return order

    order = store.write(stored)
    uids = [f"2.25.{n}" for n in range(600)] + ["2.25.999999", "2.25.1"]
    found = store.read(lambda txn: commitments.indexed_instances(txn, uids))
    assert len(found) == 600 and "2.25.999999" not in found
    linked = found["2.25.1"].requested_procedure_ref
    assert found["2.25.1"] == commitments.IndexedInstance("2.25.1", CT, "1.2.3/1.2.3.1/1.dcm", linked)
    assert found["2.25.0"].requested_procedure_ref is None and linked is not None
    assert store.read(lambda txn: commitments.linked_orders(txn, uids)) == [commitments.LinkedOrder("ACC1", order)]
    assert store.read(lambda txn: commitments.linked_orders(txn, ["2.25.0"])) == []


def test_a_result_is_stored_once_and_its_report_is_claimed_once(store: Store) -> None:
    report = reporting(store)
    assert store.write(lambda txn: commitments.enqueue_report(txn, report.id, result(), NOW, AT)) is None  # not pending
    assert (report.transaction_uid, report.calling_ae_title, report.attempts) == ("2.25.1", "CT1", 0)
    assert report.result == result("2.25.11") and report.next_attempt_at == commitments.utc_iso(NOW)
    until = NOW + timedelta(seconds=60)
    held = lease(store)
    [claimed], renewed = store.write(lambda txn: commitments.claim_reports(txn, [report], until, held, 60))
    assert renewed.generation == held.generation
    assert claimed.next_attempt_at == commitments.utc_iso(until) and claimed.id == report.id
    assert store.write(lambda txn: commitments.claim_reports(txn, [report], until, held, 60))[0] == []   # taken
    assert store.read(lambda txn: commitments.reports_due(txn, NOW)) == []
    assert store.read(commitments.next_due) == until
    store.write(lambda txn: commitments.report_delivered(txn, claimed, AT, held, 60))
    assert row(store, report.id) == ("delivered", 1, "", "")
    assert store.read(commitments.next_due) is None
    assert store.read(lambda txn: commitments.active_request(txn, "2.25.1")) is None


def test_a_failed_report_is_rescheduled_then_parked_dead(store: Store) -> None:
    report = reporting(store)
    assert store.read(lambda txn: commitments.report_attempts(txn, report)) == commitments.ReportAttempts(AT, 0)
    later = NOW + timedelta(seconds=30)
    held = lease(store)
    store.write(lambda txn: commitments.reschedule_report(txn, report, attempts=1, error="refused",
                                                           next_attempt=later, at=AT, lease=held, lease_seconds=60))
    assert row(store, report.id) == ("reporting", 1, commitments.utc_iso(later), "refused")
    # the claim's next_attempt_at is the fencing token: a completion with the old one is refused
    assert store.write(lambda txn: commitments.report_dead(txn, report, "stale", attempted=True, at=AT,
                                                             lease=held, lease_seconds=60)) is None
    assert row(store, report.id) == ("reporting", 1, commitments.utc_iso(later), "refused")
    report = dataclasses.replace(report, next_attempt_at=commitments.utc_iso(later))
    given_up = store.write(lambda txn: commitments.report_dead(txn, report, "gone", attempted=True, at=AT,
                                                             lease=held, lease_seconds=60))
    assert given_up == commitments.GivenUpReport("2.25.1", "CT1")
    assert row(store, report.id) == ("dead", 2, "", "gone")
    assert store.read(lambda txn: commitments.report_attempts(txn, report)) is None
    assert store.write(lambda txn: commitments.report_dead(txn, report, "again", attempted=False, at=AT,
                                                             lease=held, lease_seconds=60)) is None


def test_report_completions_are_fenced_by_the_requesters_lease(store: Store) -> None:
    """Instance A claims a report under the requester's lease, is paused past it, and B takes the lease over:
    A's late completions (delivered, failed, dead) change nothing; B's, under the new generation, count."""
    report = reporting(store)
    held = lease(store, "swf-a")
    until = NOW + timedelta(seconds=60)
    [claimed], _ = store.write(lambda txn: commitments.claim_reports(txn, [report], until, held, 60))
    name = commitments.report_lease("CT1")
    assert name == "commitment:CT1"
    store.write(lambda txn: txn.execute("UPDATE cluster_leases SET expires_at = 0 WHERE name = ?", (name,)))
    taken = store.write(lambda txn: cluster.take(txn, name, "swf-b", time.time(), 60))
    assert taken is not None and taken.generation == held.generation + 1
    before = row(store, report.id)
    with pytest.raises(StaleLease, match="swf-b holds generation"):
        store.write(lambda txn: commitments.report_delivered(txn, claimed, AT, held, 60))
    with pytest.raises(StaleLease):
        store.write(lambda txn: commitments.reschedule_report(txn, claimed, attempts=1, error="late", next_attempt=NOW,
                                                               at=AT, lease=held, lease_seconds=60))
    with pytest.raises(StaleLease):
        store.write(lambda txn: commitments.report_dead(txn, claimed, "late", attempted=True, at=AT, lease=held,
                                                         lease_seconds=60))
    with pytest.raises(StaleLease):   # nor can the stale holder claim anything more
        store.write(lambda txn: commitments.claim_reports(txn, [claimed], until, held, 60))
    assert row(store, report.id) == before
    store.write(lambda txn: commitments.report_delivered(txn, claimed, AT, taken, 60))
    assert row(store, report.id)[0] == "delivered"
