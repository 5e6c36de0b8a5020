"""The API's listings (engine/store/listings.py) on both engines: the order status filter agrees with
the domain's order_status for every mix of step statuses, step filters hold for one and the same step,
pages follow each other without gaps or repeats, LIKE wildcards in a reason are taken literally, and a
DICOM forward can be resent and discarded like an outbox message."""
from __future__ import annotations

import dataclasses
import time

import pytest

from engine.domain.status import StepStatus, order_status
from engine.store import cluster, listings, queues
from engine.store.database import Store, Transaction

NOW = "2026-12-07T09:00:00.000+00:00"
MIXES = ([], ["SCHEDULED"], ["ARRIVED", "READY"], ["STARTED"], ["COMPLETED", "SCHEDULED"], ["COMPLETED", "CANCELED"],
         ["DISCONTINUED", "CANCELED"], ["CANCELED"], ["DEPARTED"], ["DISCONTINUED", "COMPLETED"])


def add_order(txn: Transaction, number: int, steps: list[tuple[str, str, str, str]]) -> int:
    """An order ACC<number> of patient P<number % 3>; steps: (status, modality, station, start)."""
    patient = txn.row("SELECT id FROM patients WHERE patient_id = ?", (f"P{number % 3}",))
    patient_ref = patient[0] if patient else txn.insert(
        "INSERT INTO patients (patient_id, created_at, updated_at) VALUES (?, ?, ?)", (f"P{number % 3}", NOW, NOW))
    order = txn.insert("INSERT INTO orders (patient_ref, placer_order_number, filler_order_number, created_at,"
                       " updated_at) VALUES (?, ?, ?, ?, ?)", (patient_ref, f"PL{number}", f"FI{number}", NOW, NOW))
    procedure = txn.insert("INSERT INTO requested_procedures (order_ref, accession_number, requested_procedure_id,"
                           " study_instance_uid, updated_at) VALUES (?, ?, 'RP', ?, ?)",
                           (order, f"ACC{number}", f"1.2.{number}", NOW))
    for index, (status, modality, station, start) in enumerate(steps):
        txn.execute("INSERT INTO scheduled_steps (requested_procedure_ref, sps_id, status, modality, station_ae_title,"
                    " start_datetime, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (procedure, f"S{index}", status, modality, station, start, NOW))
    return order


def test_the_status_filter_agrees_with_the_domain_for_every_mix_of_steps(store: Store) -> None:
    refs = store.write(lambda txn: [add_order(txn, n, [(s, "CT", "CT1", "20250101120000") for s in mix])
                                    for n, mix in enumerate(MIXES)])
    expected = {ref: order_status([StepStatus(s) for s in mix]) for ref, mix in zip(refs, MIXES)}
    assert set(expected.values()) == set(listings.ORDER_STATUSES)
    for status in listings.ORDER_STATUSES:
        page = store.read(lambda txn: listings.order_page(txn, listings.OrderFilter(status=status), 50, None))
        assert [o.id for o in page.items] == sorted((r for r, s in expected.items() if s == status), reverse=True)
        assert {o.status for o in page.items} <= {status}


def test_step_filters_hold_for_one_step_and_pages_follow_each_other(store: Store) -> None:
    def fill(txn: Transaction) -> list[int]:
        return [add_order(txn, n, [("SCHEDULED", "CT", "CT1", f"2025010{1 + n % 3}0800"),
                                   ("SCHEDULED", "MR", "MR1", f"2025020{1 + n % 3}0900")]) for n in range(9)]
    refs = store.write(fill)

    def ids(**criteria: str) -> list[int]:
        page = store.read(lambda txn: listings.order_page(txn, listings.OrderFilter(**criteria), 50, None))
        return [o.id for o in page.items]
    assert ids(modality="CT", station_ae_title="MR1") == []
    assert ids(modality="MR", station_ae_title="MR1") == refs[::-1]
    assert ids(modality="CT", scheduled_from="20250201") == []
    assert ids(scheduled_from="202501020800", scheduled_to="20250102") == [r for n, r in enumerate(refs)
                                                                          if n % 3 == 1][::-1]
    assert ids(patient_id="P1", accession_number="ACC4") == [refs[4]]
    assert ids(placer_order_number="PL2", filler_order_number="FI2") == [refs[2]]
    seen, cursor = [], None
    while True:
        page = store.read(lambda txn: listings.order_page(txn, listings.OrderFilter(), 4, cursor))
        seen += [o.id for o in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == refs[::-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.next_cursor = 1   # type: ignore[misc]


def test_journal_reason_wildcards_are_literal(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        for n, reason in enumerate(("100% wrong", "1000 wrong", "a_b", "ab", "back\\slash")):
            txn.execute("INSERT INTO journal (received_at, control_id, payload_hash, raw, status, reason)"
                        " VALUES (?, ?, ?, ?, 'rejected', ?)", (NOW, f"C{n}", f"{n:064x}", b"MSH|", reason))
    store.write(fill)

    def reasons(text: str) -> list[str]:
        page = store.read(lambda txn: listings.journal_page(txn, listings.JournalFilter(reason=text), 50, None))
        return [entry.reason for entry in page.items]
    assert reasons("0%") == ["100% wrong"]
    assert reasons("a_b") == ["a_b"]
    assert reasons("\\") == ["back\\slash"]
    assert reasons("wrong") == ["1000 wrong", "100% wrong"]


def test_a_reason_search_reads_a_bounded_window_per_page_and_its_cursor_goes_on_below_it(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listings, "REASON_SCAN_ROWS", 10)
    def fill(txn: Transaction) -> None:
        for n in range(1, 36):   # the two matches are far below the newest rows
            txn.execute("INSERT INTO journal (received_at, control_id, payload_hash, raw, status, reason)"
                        " VALUES (?, ?, ?, ?, 'rejected', ?)",
                        (NOW, f"C{n}", f"{n:064x}", b"MSH|", "no OBR" if n in (4, 5) else "other"))
    store.write(fill)
    pages, cursor, found = 0, None, []
    while True:
        page = store.read(lambda txn: listings.journal_page(txn, listings.JournalFilter(reason="OBR"), 50, cursor))
        pages += 1
        found += [entry.control_id for entry in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert found == ["C5", "C4"] and pages == 4   # rows 26-35, 16-25, 6-15, then 1-5: nothing missed, none twice
    first = store.read(lambda txn: listings.journal_page(txn, listings.JournalFilter(reason="OBR"), 50, None))
    assert first.items == () and first.next_cursor == 26


def test_a_forward_is_resent_and_discarded_in_the_states_that_allow_it(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        queues.enqueue_forward(txn, destination="PACS", kind="store", source=queues.ForwardSource(7, "1.2.7"), at=NOW)
        queues.forward_failed(txn, queues.claim_forwards(txn, "PACS")[0], attempts=3, dead=True, next_attempt_at=0,
                              reason="refused", lease=cluster.take(txn, "forward:PACS", "test", time.time(), 30),
                              lease_seconds=30)
    store.write(fill)
    assert store.read(lambda txn: listings.forward_record(txn, 1)).status == "dead"
    assert store.write(lambda txn: queues.discard_forward(txn, 1))
    assert not store.write(lambda txn: queues.discard_forward(txn, 1))
    assert store.write(lambda txn: queues.resend_forward(txn, 1))
    record = store.read(lambda txn: listings.forward_record(txn, 1))
    assert (record.status, record.attempts, record.last_error) == ("pending", 0, "")
    assert not store.write(lambda txn: queues.resend_forward(txn, 2))
    page = store.read(lambda txn: listings.forward_page(txn, "pending", 1, None))
    assert ([f.id for f in page.items], page.next_cursor) == ([1], None)


def test_patient_search_by_name_with_wildcards_identifier_and_birth_date(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        for n, (name, birth) in enumerate((("MÜLLER^ANNA", "19780214"), ("MULLER^ANNE", "19800101"),
                                           ("100%^X", "19900101"), ("MILLER^A", "19780214"))):
            ref = txn.insert("INSERT INTO patients (patient_id, issuer, name_norm, birth_date, attributes, created_at,"
                             " updated_at) VALUES (?, 'H', ?, ?, ?, ?, ?)",
                             (f"P{n}", listings.normalise_name(name), birth, f'{{"PatientName": "{name}"}}', NOW, NOW))
            txn.execute("INSERT INTO patient_identifiers (patient_ref, patient_id, issuer) VALUES (?, ?, 'OTHER')",
                        (ref, f"OLD{n}"))
    store.write(fill)

    def ids(**criteria: str) -> list[str]:
        page = store.read(lambda txn: listings.patient_page(txn, listings.PatientFilter(**criteria), 50, None))
        return [patient.patient_id for patient in page.items]
    assert ids(name="muller*") == ["P1", "P0"]
    assert ids(name="M?LLER^A*") == ["P3", "P1", "P0"]
    assert ids(name="MULLER^ANNA") == ["P0"]
    assert ids(name="1%*") == []
    assert ids(name="100%*") == ["P2"]
    assert ids(patient_id="OLD3") == ids(patient_id="P3") == ["P3"]
    assert ids(birth_date="19780214", issuer="H") == ["P3", "P0"]
    first = store.read(lambda txn: listings.patient_page(txn, listings.PatientFilter(), 3, None))
    rest = store.read(lambda txn: listings.patient_page(txn, listings.PatientFilter(), 3, first.next_cursor))
    assert [p.patient_id for p in first.items + rest.items] == ["P3", "P2", "P1", "P0"] and rest.next_cursor is None


def test_a_common_and_a_rare_step_value_give_the_same_answer_as_each_other_way(store: Store) -> None:
    """Past listings._RARE matching steps the orders are walked newest first, below it read from the steps:
    both ways must list the same orders."""
    refs = store.write(lambda txn: [add_order(txn, n, [("SCHEDULED", "MR" if n % 500 == 7 else "CT", "A1", "")])
                                    for n in range(listings._RARE + 10)])

    def ids(modality: str, limit: int) -> list[int]:
        page = store.read(lambda txn: listings.order_page(txn, listings.OrderFilter(modality=modality), limit, None))
        return [o.id for o in page.items]
    assert ids("CT", 60) == [r for n, r in enumerate(refs) if n % 500 != 7][::-1][:60]
    assert ids("MR", 60) == [r for n, r in enumerate(refs) if n % 500 == 7][::-1]
