"""The console dashboard's journal figures (engine/store/dashboard.py) on both engines: messages per minute
from a time on, ACK codes in that range, the newest answers other than AA."""
from __future__ import annotations

from engine.store import dashboard, journal
from engine.store.database import Store, Transaction

# (received at, ACK code, reason)
ENTRIES = [("2026-12-07T08:59:59.000+01:00", "AA", ""), ("2026-12-07T09:00:01.000+01:00", "AA", ""),
           ("2026-12-07T09:00:30.000+01:00", "AE", "PID-3 empty"), ("2026-12-07T09:02:00.000+01:00", "AR", "type"),
           ("2026-12-07T09:02:10.000+01:00", "AA", "")]


def fill(store: Store) -> None:
    def work(txn: Transaction) -> None:
        for number, (at, code, reason) in enumerate(ENTRIES, 1):
            journal_id = journal.insert(txn, received_at=at, peer="p", sending_application="RIS", sending_facility="H",
                                        control_id=f"C{number}", message_code="ORM^O01", hl7_version="2.3.1",
                                        payload_hash=str(number), raw=b"MSH|")
            journal.finish(txn, journal_id, "applied" if code == "AA" else "rejected", code, b"ACK", reason, "")
    store.write(work)


def test_messages_per_minute_ack_codes_and_errors_from_a_time_on(store: Store) -> None:
    fill(store)
    since = "2026-12-07T09:00:00.000+01:00"
    assert store.read(lambda txn: dashboard.messages_per_minute(txn, since)) == [
        dashboard.MinuteCount("2026-12-07T09:00", 2), dashboard.MinuteCount("2026-12-07T09:02", 2)]
    assert store.read(lambda txn: dashboard.ack_codes(txn, since)) == {"AA": 2, "AE": 1, "AR": 1}
    errors = store.read(lambda txn: dashboard.recent_errors(txn, 1))
    assert [(error.control_id, error.ack_code, error.reason) for error in errors] == [("C4", "AR", "type")]
    assert [error.control_id for error in store.read(lambda txn: dashboard.recent_errors(txn, 10))] == ["C4", "C3"]
