"""The queue and performed-step SQL of engine/store on both engines: claims in order, completions, the
operator's resend/discard, forwarding watermarks, and MPPS rows read back as frozen records."""
from __future__ import annotations

import dataclasses
import time
from io import BytesIO

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from engine.store import cluster, orders, patients, performed_steps, queues
from engine.store.database import DuplicateKey, Store, Transaction

NOW = "2026-12-07T09:00:00.000+00:00"


def held(store: Store, name: str) -> cluster.Lease:
    """A lease taken for the test's completions (they are fenced by it)."""
    lease = store.write(lambda txn: cluster.take(txn, name, "test", time.time(), 30))
    assert lease is not None
    return lease


def scheduled_order(txn: Transaction, accession: str = "ACC1") -> tuple[int, int]:
    """(order ref, step ref) of a new order with one requested procedure and one scheduled step."""
    patient = patients.insert(txn, "PAT1", "H", {})
    order = orders.insert(txn, patient, "PL1", "FI1", "RIS", "filler", "", ("archive",))
    procedure = orders.insert_procedure(txn, order, accession, "RP1", "1.2.3", {})
    step = orders.insert_step(txn, procedure, orders.StepSchedule(
        sps_id="SPS1", status="SCHEDULED", station_ae_title="CT1", station_name="", location="", modality="CT",
        start_datetime="", performing_physician_norm="", attributes={}))
    return order, step


def enqueue(txn: Transaction, destination: str, control_id: str) -> None:
    queues.enqueue_outbox(txn, destination=destination, at=NOW, event_ref=None, kind="order.scheduled",
                          control_id=control_id, accession_number="ACC1", message=b"MSH|" + control_id.encode())


def statuses(store: Store, table: str) -> list[tuple]:
    return [tuple(row.values()) for row in store.read(lambda txn: txn.query(
        f"SELECT id, status, attempts, last_error FROM {table} ORDER BY id"))]


def test_outbox_claims_the_destinations_head_and_each_completion_ends_it(store: Store) -> None:
    store.write(lambda txn: [enqueue(txn, destination, f"C{n}") for n, destination in
                             enumerate(("archive", "ris", "archive"))])
    head = store.read(lambda txn: queues.claim_outbox(txn, "archive"))
    assert (head.control_id, head.message, head.attempts, head.rejections) == ("C0", b"MSH|C0", 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        head.attempts = 3  # type: ignore[misc]
    lease = held(store, queues.outbox_lease("archive"))
    store.write(lambda txn: queues.outbox_failed(txn, head, attempts=1, rejections=1, dead=False,
                                                  next_attempt_at=12.5, reason="AE: no", ack=b"ACK", lease=lease,
                                                  lease_seconds=30))
    again = store.read(lambda txn: queues.claim_outbox(txn, "archive"))
    assert (again.id, again.attempts, again.rejections, again.next_attempt_at) == (head.id, 1, 1, 12.5)
    store.write(lambda txn: queues.outbox_delivered(txn, again, b"ACK AA", NOW, lease, 30))
    assert store.read(lambda txn: queues.claim_outbox(txn, "archive")).control_id == "C2"
    third = store.read(lambda txn: queues.claim_outbox(txn, "archive"))
    store.write(lambda txn: queues.outbox_failed(txn, third, attempts=1, rejections=0, dead=True,
                                                  next_attempt_at=0, reason="too old", ack=None, lease=lease,
                                                  lease_seconds=30))
    assert store.read(lambda txn: queues.claim_outbox(txn, "archive")) is None
    assert statuses(store, "outbox") == [(1, "delivered", 2, ""), (2, "pending", 0, ""), (3, "dead", 1, "too old")]

    assert store.write(lambda txn: queues.resend_outbox(txn, 3)) is True           # dead -> pending from scratch
    assert store.read(lambda txn: queues.claim_outbox(txn, "archive")).attempts == 0
    assert store.write(lambda txn: queues.discard_outbox(txn, 3)) is True
    assert store.write(lambda txn: queues.discard_outbox(txn, 1)) is False         # delivered stays delivered
    assert store.write(lambda txn: queues.resend_outbox(txn, 99)) is False
    assert [row[1] for row in statuses(store, "outbox")] == ["delivered", "pending", "discarded"]


def test_events_are_read_once_with_their_destinations_and_marked_dispatched(store: Store) -> None:
    def record(txn: Transaction) -> None:
        order, _step = scheduled_order(txn)
        queues.record_event(txn, "order.scheduled", "ACC1", "new", order)
        queues.record_event(txn, "patient.updated", "PAT1^H", "A08", None, destinations=("ris", "archive"))

    store.write(record)
    events = store.write(queues.undispatched_events)
    assert [(e.kind, e.destinations, e.order_outbound) for e in events] == [
        ("order.scheduled", (), ("archive",)), ("patient.updated", ("ris", "archive"), ())]
    assert store.read(queues.undispatched_event_waiting) is True
    store.write(lambda txn: queues.mark_dispatched(txn, events))
    assert store.write(queues.undispatched_events) == []
    assert store.read(queues.undispatched_event_waiting) is False


def test_forward_watermarks_queue_only_what_is_committed_after_the_start(store: Store) -> None:
    def mpps_version(txn: Transaction, uid: str) -> None:
        ref = performed_steps.insert(txn, sop_instance_uid=uid, status="IN PROGRESS", pps_id="", unscheduled=True,
                                     performed_station_ae_title="CT1", calling_ae_title="CT1", study_instance_uid="",
                                     dataset=b"x", at=NOW)
        performed_steps.add_version(txn, ref, "N-CREATE", "IN PROGRESS", b"x", NOW)

    store.write(lambda txn: mpps_version(txn, "1.1"))                       # history: never forwarded
    assert store.read(lambda txn: queues.forward_watermark(txn, "mpps")) is None
    store.write(lambda txn: queues.start_forward_watermark(txn, "mpps"))
    store.write(lambda txn: queues.start_forward_watermark(txn, "mpps"))    # a restart keeps the watermark
    assert store.read(lambda txn: queues.forward_watermark(txn, "mpps")) == 1
    store.write(lambda txn: [mpps_version(txn, uid) for uid in ("1.2", "1.3")])
    sources = store.read(lambda txn: queues.forward_sources_after(txn, "mpps", 1))
    assert [(s.source_ref, s.sop_instance_uid) for s in sources] == [(2, "1.2"), (3, "1.3")]

    def enqueue_all(txn: Transaction) -> None:
        for source in sources:
            queues.enqueue_forward(txn, destination="PACS2", kind="mpps", source=source, at=NOW)
        queues.advance_forward_watermark(txn, "mpps", sources[-1].source_ref)

    store.write(enqueue_all)
    assert store.read(lambda txn: queues.forward_sources_after(txn, "mpps", queues.forward_watermark(txn, "mpps"))) == []
    first, second = store.read(lambda txn: queues.claim_forwards(txn, "PACS2"))
    assert (first.kind, first.source_ref, first.sop_instance_uid, first.attempts) == ("mpps", 2, "1.2", 0)
    assert store.read(lambda txn: queues.claim_forwards(txn, "OTHER")) == []
    lease = held(store, queues.forward_lease("PACS2"))
    store.write(lambda txn: queues.forward_failed(txn, first, attempts=1, dead=False, next_attempt_at=5.0,
                                                   reason="refused", lease=lease, lease_seconds=30))
    assert store.read(lambda txn: queues.claim_forwards(txn, "PACS2", limit=1))[0].next_attempt_at == 5.0
    store.write(lambda txn: queues.forward_delivered(txn, first, lease, 30))
    store.write(lambda txn: queues.forward_failed(txn, second, attempts=1, dead=True, next_attempt_at=0,
                                                   reason="gone", lease=lease, lease_seconds=30))
    assert statuses(store, "dicom_forwards") == [(1, "delivered", 2, ""), (2, "dead", 1, "gone")]
    version = store.read(lambda txn: performed_steps.version(txn, 2))
    assert (version.operation, version.status, version.dataset) == ("N-CREATE", "IN PROGRESS", b"x")
    assert store.read(lambda txn: queues.forwarded_instance(txn, 1)) is None


def encoded_mpps(uid: str, status: str) -> bytes:
    dataset = Dataset()
    dataset.PerformedProcedureStepStatus = status
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    dataset.file_meta.MediaStorageSOPInstanceUID = uid
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = BytesIO()
    dcmwrite(buffer, dataset, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def test_performed_steps_are_frozen_records_and_their_datasets_decode(store: Store) -> None:
    def create(txn: Transaction) -> int:
        order, step = scheduled_order(txn)
        ref = performed_steps.insert(txn, sop_instance_uid="9.1", status="IN PROGRESS", pps_id="PPS1",
                                     performed_station_ae_title="CT1", calling_ae_title="CT1_AE",
                                     study_instance_uid="1.2.3", unscheduled=False,
                                     dataset=encoded_mpps("9.1", "IN PROGRESS"), at=NOW)
        performed_steps.link(txn, ref, step)
        return order

    order = store.write(create)
    assert store.read(lambda txn: performed_steps.exists(txn, "9.1")) is True
    with pytest.raises(DuplicateKey):
        store.write(lambda txn: performed_steps.insert(
            txn, sop_instance_uid="9.1", status="IN PROGRESS", pps_id="", performed_station_ae_title="",
            calling_ae_title="", study_instance_uid="", unscheduled=True, dataset=b"", at=NOW))
    [linked] = store.read(lambda txn: performed_steps.steps_by_accession(txn, "ACC1"))
    assert (linked.sps_id, linked.status, linked.order_ref) == ("SPS1", "SCHEDULED", order)
    assert store.read(lambda txn: performed_steps.steps_by_sps_id(txn, "SPS1", "RP1", "ACC1")) == [linked]
    assert store.read(lambda txn: performed_steps.steps_by_study(txn, "1.2.3", "RP1")) == [linked]
    assert store.read(lambda txn: performed_steps.linked_steps(txn, 1)) == [linked]

    def complete(txn: Transaction) -> performed_steps.PerformedStep:
        row = performed_steps.for_update(txn, "9.1")
        performed_steps.update(txn, row.id, "COMPLETED", encoded_mpps("9.1", "COMPLETED"), NOW)
        return row

    before = store.write(complete)
    assert (before.status, before.pps_id, before.unscheduled) == ("IN PROGRESS", "PPS1", False)
    assert store.write(lambda txn: performed_steps.for_update(txn, "9.9")) is None
    latest = store.read(lambda txn: performed_steps.latest_of_order(txn, order))
    assert latest.status == "COMPLETED" and isinstance(latest.dataset, bytes)
    assert performed_steps.decode_dataset(latest.dataset).PerformedProcedureStepStatus == "COMPLETED"
    assert store.read(lambda txn: performed_steps.latest_of_order(txn, order + 1)) is None
