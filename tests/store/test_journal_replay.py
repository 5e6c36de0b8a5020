"""Reading the journal back in pages for a rules dry-run (engine/store/journal_replay.py), on both engines:
the time range is half-open, pages follow the id and never repeat or skip a row, the bytes are the bytes."""
from __future__ import annotations

from engine.store import journal, journal_replay
from engine.store.database import Store, Transaction

TIMES = ["2026-12-07T08:00:00.000+01:00", "2026-12-07T09:00:00.000+01:00", "2026-12-07T09:30:00.000+01:00",
         "2026-12-07T10:00:00.000+01:00", "2026-12-07T11:00:00.000+01:00"]


def fill(store: Store) -> None:
    def work(txn: Transaction) -> None:
        for number, at in enumerate(TIMES, 1):
            journal_id = journal.insert(txn, received_at=at, peer="p", sending_application="RIS",
                                     sending_facility="H", control_id=f"C{number}", message_code="ORM^O01",
                                     hl7_version="2.3.1", payload_hash=str(number), raw=b"MSH|\xe9%d" % number)
            journal.finish(txn, journal_id, "applied", "AA", b"ACK", "", "RIS orders")
    store.write(work)


def test_a_time_range_is_read_in_pages_in_id_order(store: Store) -> None:
    fill(store)
    since, until = TIMES[1], TIMES[4]          # 09:00 included, 11:00 not
    span = store.read(lambda txn: journal_replay.journal_range(txn, since, until))
    assert span == journal_replay.JournalRange(2, 4, 3)
    pages, after = [], 0
    while True:
        page = store.read(lambda txn: journal_replay.journal_page(txn, span, since, until, after, 2))
        if not page:
            break
        pages.append([row.control_id for row in page])
        after = page[-1].id
    assert pages == [["C2", "C3"], ["C4"]]
    [row] = store.read(lambda txn: journal_replay.journal_page(txn, span, since, until, 2, 1))
    assert (row.id, row.raw, row.status, row.rule, row.message_code, row.peer) == (
        3, b"MSH|\xe93", "applied", "RIS orders", "ORM^O01", "p")


def test_open_bounds_and_an_empty_range(store: Store) -> None:
    fill(store)
    assert store.read(lambda txn: journal_replay.journal_range(txn, "", "")) == journal_replay.JournalRange(1, 5, 5)
    assert store.read(lambda txn: journal_replay.journal_range(txn, TIMES[3], "")).first_id == 4
    assert store.read(lambda txn: journal_replay.journal_range(txn, "2027-01-01", "")) is None
