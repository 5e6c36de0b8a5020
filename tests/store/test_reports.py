"""The operator's read-only views (engine/store/reports.py) on both engines: queue listings filtered by
status, storage commitment requests with their decoded request and result, performed steps by UID or
PPS ID with links and versions, journal entries with their bytes, merged patients; all frozen records."""
from __future__ import annotations

import dataclasses
import json

import pytest

from engine.store import performed_steps, queues, reports
from engine.store import journal as journal_store
from engine.store import patients
from engine.store.database import Store, Transaction
from tests.store.test_queues import NOW, encoded_mpps, enqueue, scheduled_order


def test_queue_listings_show_the_rows_of_a_status_or_every_row(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        for control_id in ("C1", "C2"):
            enqueue(txn, "archive", control_id)
        queues.discard_outbox(txn, 1)
        queues.enqueue_forward(txn, destination="PACS", kind="store",
                               source=queues.ForwardSource(7, "1.2.7"), at=NOW)
    store.write(fill)
    assert [m.control_id for m in store.read(lambda txn: reports.outbox_list(txn, "pending", 10))] == ["C2"]
    listed = store.read(lambda txn: reports.outbox_list(txn, None, 10))
    assert [(m.id, m.status, m.destination, m.accession_number) for m in listed] == [
        (1, "discarded", "archive", "ACC1"), (2, "pending", "archive", "ACC1")]
    assert store.read(lambda txn: reports.outbox_list(txn, None, 1))[0].id == 1
    assert store.read(lambda txn: reports.forward_list(txn, "dead", 10)) == []
    [forward] = store.read(lambda txn: reports.forward_list(txn, "pending", 10))
    assert (forward.destination, forward.kind, forward.sop_instance_uid, forward.attempts) == ("PACS", "store", "1.2.7", 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        forward.status = "dead"  # type: ignore[misc]


def test_commitment_views_decode_the_request_and_result_once(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        scheduled_order(txn)
        procedure = txn.row("SELECT id FROM requested_procedures")[0]
        txn.execute("INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,"
                    " transfer_syntax_uid, size_bytes, path, received_at, requested_procedure_ref)"
                    " VALUES ('1.9.1', '1.2.840.10008.5.1.4.1.1.2', '1.2.3', '1.2.3.1', '1.2.840.10008.1.2.1', 1,"
                    " 'a.dcm', ?, ?)", (NOW, procedure))
        request = {"peer": "127.0.0.1:104", "references": [
            {"sop_instance_uid": "1.9.1", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"},
            {"sop_instance_uid": "1.9.2", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"}]}
        result = {"event_type": 2, "committed": [{"sop_instance_uid": "1.9.1"}],
                  "failed": [{"sop_instance_uid": "1.9.2", "failure_reason": 0x0112, "why": "not received"}]}
        for status, result_text, duplicate_of in (("delivered", json.dumps(result), None), ("pending", "", 1)):
            txn.execute("INSERT INTO commitments (transaction_uid, calling_ae_title, requested_at, status, request,"
                        " result, updated_at) VALUES ('2.25.7', 'MOD', ?, ?, ?, ?, ?)",
                        (NOW, status, json.dumps({**request, "duplicate_of": duplicate_of}), result_text, NOW))
    store.write(fill)
    listed = store.read(lambda txn: reports.commitment_list(txn, None, 10))
    assert [(c.id, c.status, c.references, c.failed) for c in listed] == [(2, "pending", 2, None),
                                                                        (1, "delivered", 2, 1)]
    assert [c.id for c in store.read(lambda txn: reports.commitment_list(txn, "delivered", 10))] == [1]
    first, duplicate = store.read(lambda txn: reports.commitment_detail(txn, "2.25.7"))
    assert (first.peer, first.duplicate_of, first.result["event_type"], duplicate.duplicate_of,
            duplicate.result) == ("127.0.0.1:104", None, 2, 1, {})
    assert [(r.sop_instance_uid, r.outcome, r.why, r.accession_number) for r in first.references] == [
        ("1.9.1", 0, "", "ACC1"), ("1.9.2", 0x0112, "not received", "")]
    assert [r.outcome for r in duplicate.references] == [None, None]
    assert store.read(lambda txn: reports.commitment_detail(txn, "2.25.8")) == []


def test_performed_step_views_find_by_uid_or_pps_id_with_links_and_versions(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        _order, step = scheduled_order(txn)
        for uid, pps_id in (("9.1", "PPS1"), ("9.2", "PPS1")):
            performed = performed_steps.insert(
                txn, sop_instance_uid=uid, status="IN PROGRESS", pps_id=pps_id, performed_station_ae_title="CT1",
                calling_ae_title="MOD", study_instance_uid="1.2.3", unscheduled=uid == "9.2",
                dataset=encoded_mpps(uid, "IN PROGRESS"), at=NOW)
            performed_steps.add_version(txn, performed, "N-CREATE", "IN PROGRESS", encoded_mpps(uid, "IN PROGRESS"), NOW)
        performed_steps.link(txn, 1, step)
    store.write(fill)
    listed = store.read(lambda txn: reports.performed_step_list(txn, 10))
    assert [(p.sop_instance_uid, p.unscheduled, p.accessions) for p in listed] == [("9.2", True, ()),
                                                                                  ("9.1", False, ("ACC1",))]
    assert [p.sop_instance_uid for p in store.read(lambda txn: reports.performed_step_list(txn, 10, True))] == ["9.2"]
    detail = store.read(lambda txn: reports.performed_step_detail(txn, "9.1"))
    assert [(s.accession_number, s.sps_id) for s in detail.linked_steps] == [("ACC1", "SPS1")]
    assert [(v.operation, v.status) for v in detail.versions] == [("N-CREATE", "IN PROGRESS")]
    assert detail.summary.dataset.PerformedProcedureStepStatus == "IN PROGRESS"
    assert store.read(lambda txn: reports.performed_step_detail(txn, "PPS1")).step.sop_instance_uid == "9.2"
    assert store.read(lambda txn: reports.performed_step_detail(txn, "9.9")) is None


def test_journal_entry_and_merged_patients(store: Store) -> None:
    def fill(txn: Transaction) -> None:
        journal = journal_store.insert(txn, received_at=NOW, peer="127.0.0.1:5000", sending_application="RIS",
                                       sending_facility="H", control_id="C1", message_code="ADT^A40",
                                       hl7_version="2.5", payload_hash="x", raw=b"MSH|raw")
        journal_store.finish(txn, journal, "applied", "AA", None, "", "")
        survivor = patients.insert(txn, "PAT1", "H", {"PatientName": "DOE^JANE"})
        prior = patients.insert(txn, "PAT0", "H", {})
        patients.add_identifier(txn, survivor, "ALT-1", "H", "MR", "pid")
        patients.merge(txn, prior, survivor)
    store.write(fill)
    entry = store.read(lambda txn: reports.journal_entry(txn, 1))
    assert (entry.peer, entry.status, entry.raw, entry.ack) == ("127.0.0.1:5000", "applied", b"MSH|raw", None)
    assert store.read(lambda txn: reports.journal_entry(txn, 2)) is None
    [survivor] = store.read(lambda txn: reports.patient_detail(txn, "ALT-1", None))
    assert (survivor.patient, survivor.attributes["PatientName"], survivor.merged_into) == (
        reports.PatientKey("PAT1", "H"), "DOE^JANE", None)
    assert survivor.merged_from == (reports.PatientKey("PAT0", "H"),)
    assert [(i.patient_id, i.identifier_type) for i in survivor.identifiers] == [("ALT-1", "MR")]
    [prior] = store.read(lambda txn: reports.patient_detail(txn, "PAT0", "H"))
    assert prior.merged_into == reports.PatientKey("PAT1", "H") and prior.orders == 0
