"""RAD-10 storage commitment workflow without sockets, on a real SQLite store with real instance files.

The ``instances`` rows and files are made here the way the C-STORE SCP leaves them (row committed, file under
``study/series``); the order comes in through the real HL7 ingest so that events name its accession.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from engine import cli
from engine.dicom.services.commitment import InvalidRequest, parse_action_information
from engine.dicom.services.commitment_reports import build_event_report
from engine.domain.retry import RetryPolicy
from engine.store import cluster, commitments
from engine.store.cluster import Lease
from engine.store.commitments import CommitmentReference as Reference
from engine.store.commitments import PendingReport
from engine.store.timestamps import now_iso
from engine.workflow import commitment as wf
from engine.workflow.commitment import CommitmentRequest
from tests.conftest import Pipeline, hl7

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"
STUDY = "1.2.826.0.1.3680043.10.1.1"

PID = "PID|1||PAT4711^^^GENHOSP^MR||MUELLER^ANNA||19780214|F"


def order(pipeline: Pipeline, accession: str = "ACC1", study: str = STUDY) -> None:
    result = pipeline.send(hl7(
        f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|C-{accession}|P|2.3.1", PID,
        f"ORC|NW|PLC-{accession}^HIS|FIL-{accession}^RIS||SC||1^once^^20250304100000^^R",
        f"OBR|1|PLC-{accession}^HIS|FIL-{accession}^RIS|CTCHEST^CT chest^99RAD||||||||||||||{accession}|RP-{accession}"
        "|SPS-1||||CT", f"ZDS|{study}^RIS^Application^DICOM"))
    assert result.ack_code == "AA", result


def lease(pipeline: Pipeline, ae: str = "MODALITY1") -> Lease:
    """The requester's report lease (a single engine holds it)."""
    taken = pipeline.store.write(lambda txn: cluster.take(txn, commitments.report_lease(ae), "test", time.time(), 60))
    assert taken is not None
    return taken


class Instances:
    """Stored instances as the C-STORE SCP leaves them: a file under study/series and an indexed row."""

    def __init__(self, pipeline: Pipeline, storage_dir: Path):
        self.pipeline = pipeline
        self.storage_dir = storage_dir

    def add(self, uid: str, sop_class: str = CT, study: str = STUDY, relative: bool = True,
            write_file: bool = True) -> Path:
        relative_path = Path(study) / "1.2.3.9" / f"{uid}.dcm"
        path = self.storage_dir / relative_path
        if write_file:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\0" * 128 + b"DICM" + uid.encode())

        def insert(txn):
            procedure = txn.one("SELECT id FROM requested_procedures WHERE study_instance_uid = ?", (study,))
            txn.execute(
                "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,"
                " transfer_syntax_uid, size_bytes, path, received_from, received_at, requested_procedure_ref)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, sop_class, study, "1.2.3.9", "1.2.840.10008.1.2.1", 140,
                 str(relative_path) if relative else str(path), "MODALITY1", now_iso(),
                 procedure["id"] if procedure else None))

        self.pipeline.store.write(insert)
        return path


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "dicom"


@pytest.fixture
def instances(pipeline: Pipeline, storage_dir: Path) -> Instances:
    return Instances(pipeline, storage_dir)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsynced by the workflow (the real fsync still runs)."""
    seen: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return seen


def request(transaction_uid: str, *references: tuple[str, str], calling: str = "MODALITY1") -> CommitmentRequest:
    return CommitmentRequest(transaction_uid, calling, [Reference(c, i) for c, i in references], peer="127.0.0.1:1")


def receive(pipeline: Pipeline, commitment_request: CommitmentRequest) -> wf.Receipt:
    return pipeline.store.write(lambda txn: wf.receive_request(txn, commitment_request))


def commitment(pipeline: Pipeline, commitment_id: int) -> dict:
    row = pipeline.read("SELECT * FROM commitments WHERE id = ?", (commitment_id,))[0]
    row["result"] = json.loads(row["result"]) if row["result"] else {}
    return row


def evaluate(pipeline: Pipeline, storage_dir: Path, grace: float = 30.0, later: float = 0.0, **kwargs):
    return wf.evaluate_due(pipeline.store, storage_dir, grace, now=wf.utc_now() + timedelta(seconds=later), **kwargs)


def due_report(pipeline: Pipeline) -> PendingReport:
    [report] = pipeline.store.read(lambda txn: commitments.reports_due(txn, wf.utc_now()))
    return report


def events(pipeline: Pipeline) -> list[dict]:
    return pipeline.read("SELECT kind, subject, detail, order_ref FROM events WHERE kind LIKE 'commitment.%' ORDER BY id")


# -- receiving --------------------------------------------------------------------------------------
def test_request_is_persisted_pending_with_its_references(pipeline: Pipeline) -> None:
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11"), (MR, "2.25.12")))
    row = commitment(pipeline, receipt.commitment_id)
    assert not receipt.duplicate
    assert (row["status"], row["transaction_uid"], row["calling_ae_title"]) == ("pending", "2.25.1", "MODALITY1")
    assert json.loads(row["request"])["references"] == [
        {"sop_class_uid": CT, "sop_instance_uid": "2.25.11"}, {"sop_class_uid": MR, "sop_instance_uid": "2.25.12"}]
    assert row["result"] == {} and row["attempts"] == 0


def test_active_transaction_uid_makes_every_item_of_the_new_request_fail_with_0x0131(pipeline: Pipeline) -> None:
    first = receive(pipeline, request("2.25.1", (CT, "2.25.11")))
    second = receive(pipeline, request("2.25.1", (CT, "2.25.21"), (CT, "2.25.22"), calling="MODALITY2"))
    assert second.duplicate
    row = commitment(pipeline, second.commitment_id)
    assert row["status"] == "reporting"
    assert row["result"]["event_type"] == 2 and row["result"]["committed"] == []
    assert [(f["sop_instance_uid"], f["failure_reason"]) for f in row["result"]["failed"]] == [
        ("2.25.21", 0x0131), ("2.25.22", 0x0131)]
    assert commitment(pipeline, first.commitment_id)["status"] == "pending"   # the first one is untouched
    assert [e["kind"] for e in events(pipeline)] == ["commitment.failed"]


def test_a_closed_transaction_uid_is_a_new_request_not_a_duplicate(pipeline: Pipeline, storage_dir: Path) -> None:
    first = receive(pipeline, request("2.25.1", (VERIFICATION, "2.25.11")))
    evaluate(pipeline, storage_dir)
    report = due_report(pipeline)
    held = lease(pipeline)
    pipeline.store.write(lambda txn: commitments.report_delivered(txn, report, now_iso(), held, 60))
    assert commitment(pipeline, first.commitment_id)["status"] == "delivered"
    assert not receive(pipeline, request("2.25.1", (CT, "2.25.11"))).duplicate


# -- evaluation ------------------------------------------------------------------------------------
def test_stored_instances_of_the_same_class_are_committed_after_fsync(
        pipeline: Pipeline, instances: Instances, storage_dir: Path, fsynced: list[str]) -> None:
    order(pipeline, "ACC1")
    first = instances.add("2.25.11")
    second = instances.add("2.25.12", relative=False)
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11"), (CT, "2.25.12")))
    stored = evaluate(pipeline, storage_dir)
    assert [e.commitment_id for e in stored] == [receipt.commitment_id]
    row = commitment(pipeline, receipt.commitment_id)
    assert row["status"] == "reporting" and row["result"]["event_type"] == 1
    assert [c["sop_instance_uid"] for c in row["result"]["committed"]] == ["2.25.11", "2.25.12"]
    assert row["result"]["failed"] == []
    # both files and the directories holding their entries (series, study, storage root) were flushed
    assert set(fsynced) == {str(first), str(second), str(first.parent), str(first.parent.parent), str(storage_dir)}
    assert fsynced.index(str(first)) < fsynced.index(str(first.parent))
    order_ref = pipeline.read("SELECT id FROM orders")[0]["id"]
    assert events(pipeline) == [{"kind": "commitment.succeeded", "subject": "ACC1", "order_ref": order_ref,
                                 "detail": "transaction 2.25.1 from MODALITY1: 2 committed, 0 failed"}]
    history = pipeline.read("SELECT kind, detail FROM order_history WHERE kind LIKE 'commitment.%'")
    assert history == [{"kind": "commitment.succeeded",
                        "detail": "transaction 2.25.1 from MODALITY1: 2 committed, 0 failed"}]


def test_a_missing_instance_is_waited_for_during_the_grace_period(
        pipeline: Pipeline, instances: Instances, storage_dir: Path) -> None:
    instances.add("2.25.11")
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11"), (CT, "2.25.12")))
    assert evaluate(pipeline, storage_dir, grace=30) == []
    row = commitment(pipeline, receipt.commitment_id)
    assert row["status"] == "pending" and row["result"] == {}
    assert row["next_attempt_at"] > commitments.utc_iso(wf.utc_now())   # looked at again later, not in a busy loop
    assert evaluate(pipeline, storage_dir, grace=30) == []       # not due yet: nothing done
    instances.add("2.25.12")                                      # the C-STORE arrives within the grace period
    assert len(evaluate(pipeline, storage_dir, grace=30, later=1)) == 1
    assert commitment(pipeline, receipt.commitment_id)["result"]["event_type"] == 1


def test_an_instance_still_missing_after_the_grace_period_fails_with_0x0112(
        pipeline: Pipeline, instances: Instances, storage_dir: Path) -> None:
    order(pipeline, "ACC1")
    instances.add("2.25.11")
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11"), (CT, "2.25.12")))
    assert evaluate(pipeline, storage_dir, grace=1) == []
    assert len(evaluate(pipeline, storage_dir, grace=1, later=1.5)) == 1
    result = commitment(pipeline, receipt.commitment_id)["result"]
    assert result["event_type"] == 2
    assert [c["sop_instance_uid"] for c in result["committed"]] == ["2.25.11"]
    assert [(f["sop_instance_uid"], f["failure_reason"]) for f in result["failed"]] == [("2.25.12", 0x0112)]
    [event] = events(pipeline)
    assert (event["kind"], event["subject"]) == ("commitment.failed", "ACC1")
    assert "1 committed, 1 failed (0x0112 no such object instance x1)" in event["detail"]


def test_class_conflict_and_non_storage_class_fail_without_waiting(
        pipeline: Pipeline, instances: Instances, storage_dir: Path) -> None:
    instances.add("2.25.11", sop_class=MR)
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11"), (VERIFICATION, "2.25.12")))
    assert len(evaluate(pipeline, storage_dir, grace=30)) == 1      # nothing to wait for
    row = commitment(pipeline, receipt.commitment_id)
    assert [(f["sop_instance_uid"], f["failure_reason"]) for f in row["result"]["failed"]] == [
        ("2.25.11", 0x0119), ("2.25.12", 0x0122)]
    assert row["result"]["committed"] == []
    # not linked to any order: the event names the transaction
    assert [(e["kind"], e["subject"], e["order_ref"]) for e in events(pipeline)] == [
        ("commitment.failed", "2.25.1", None)]


def test_an_indexed_instance_whose_file_is_gone_is_a_processing_failure(
        pipeline: Pipeline, instances: Instances, storage_dir: Path) -> None:
    instances.add("2.25.11", write_file=False)
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11")))
    evaluate(pipeline, storage_dir)
    [failed] = commitment(pipeline, receipt.commitment_id)["result"]["failed"]
    assert failed["failure_reason"] == 0x0110 and "cannot secure" in failed["why"]


def test_a_full_disk_while_securing_is_a_resource_limitation(
        pipeline: Pipeline, instances: Instances, storage_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instances.add("2.25.11")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    receipt = receive(pipeline, request("2.25.1", (CT, "2.25.11")))
    evaluate(pipeline, storage_dir)
    [failed] = commitment(pipeline, receipt.commitment_id)["result"]["failed"]
    assert failed["failure_reason"] == 0x0213


def test_instances_of_several_orders_give_one_event_per_accession(
        pipeline: Pipeline, instances: Instances, storage_dir: Path) -> None:
    order(pipeline, "ACC1", study="1.2.3.100")
    order(pipeline, "ACC2", study="1.2.3.200")
    instances.add("2.25.11", study="1.2.3.100")
    instances.add("2.25.21", study="1.2.3.200")
    receive(pipeline, request("2.25.1", (CT, "2.25.11"), (CT, "2.25.21")))
    evaluate(pipeline, storage_dir)
    assert sorted((e["kind"], e["subject"]) for e in events(pipeline)) == [
        ("commitment.succeeded", "ACC1"), ("commitment.succeeded", "ACC2")]


# -- reporting: delivery, retries, dead ----------------------------------------------------------------
def test_retry_delay_doubles_up_to_the_maximum() -> None:
    policy = RetryPolicy(first_seconds=30, max_seconds=1800, give_up_hours=24)
    assert [policy.delay(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1800, 1800]


def test_failed_deliveries_back_off_then_the_report_is_parked_dead(pipeline: Pipeline, storage_dir: Path) -> None:
    receipt = receive(pipeline, request("2.25.1", (VERIFICATION, "2.25.11")))
    evaluate(pipeline, storage_dir)
    report = due_report(pipeline)
    policy = RetryPolicy(first_seconds=10, max_seconds=25, give_up_hours=1)
    held = lease(pipeline)
    start = wf.utc_now()
    for attempt, delay in ((1, 10), (2, 20), (3, 25)):
        assert pipeline.store.write(lambda txn: wf.report_failed(txn, report, "refused", policy, held, 60,
                                                                 now=start)) == "reporting"
        row = commitment(pipeline, receipt.commitment_id)
        assert row["attempts"] == attempt and row["last_error"] == "refused"
        assert row["next_attempt_at"] == commitments.utc_iso(start + timedelta(seconds=delay))
        stale = report   # the next attempt's claim has the new next_attempt_at: the old one is refused
        report = dataclasses.replace(report, next_attempt_at=row["next_attempt_at"])
    assert pipeline.store.write(lambda txn: wf.report_failed(txn, stale, "late", policy, held, 60, now=start)) == ""
    assert pipeline.store.read(lambda txn: commitments.reports_due(txn, start)) == []
    assert len(pipeline.store.read(lambda txn: commitments.reports_due(txn, start + timedelta(seconds=25)))) == 1
    later = start + timedelta(hours=1, seconds=1)
    assert pipeline.store.write(lambda txn: wf.report_failed(txn, report, "refused", policy, held, 60,
                                                             now=later)) == "dead"
    row = commitment(pipeline, receipt.commitment_id)
    assert row["status"] == "dead" and row["attempts"] == 4
    assert row["last_error"].startswith("given up after 4 attempt(s) in 1 h") and row["last_error"].endswith("refused")
    assert pipeline.store.read(lambda txn: commitments.next_due(txn)) is None
    assert events(pipeline)[-1]["kind"] == "commitment.undeliverable"


def test_the_last_attempt_is_made_at_the_give_up_deadline(pipeline: Pipeline, storage_dir: Path) -> None:
    receipt = receive(pipeline, request("2.25.1", (VERIFICATION, "2.25.11")))
    evaluate(pipeline, storage_dir)
    requested = commitments.parse_time(commitment(pipeline, receipt.commitment_id)["requested_at"])
    policy = RetryPolicy(first_seconds=3600, max_seconds=3600, give_up_hours=0.5)
    held = lease(pipeline)
    report = due_report(pipeline)
    pipeline.store.write(lambda txn: wf.report_failed(txn, report, "down", policy, held, 60, now=requested))
    assert commitment(pipeline, receipt.commitment_id)["next_attempt_at"] == commitments.utc_iso(
        requested + timedelta(minutes=30))


def test_a_claimed_report_is_not_taken_twice_and_delivery_closes_it(pipeline: Pipeline, storage_dir: Path) -> None:
    receipt = receive(pipeline, request("2.25.1", (VERIFICATION, "2.25.11")))
    evaluate(pipeline, storage_dir)
    [row] = pipeline.store.read(lambda txn: commitments.reports_due(txn, wf.utc_now()))
    until = wf.utc_now() + timedelta(seconds=60)
    held = lease(pipeline)
    [claimed], _ = pipeline.store.write(lambda txn: commitments.claim_reports(txn, [row], until, held, 60))
    assert not pipeline.store.write(lambda txn: commitments.claim_reports(txn, [row], until, held, 60))[0]
    assert pipeline.store.read(lambda txn: commitments.reports_due(txn, wf.utc_now())) == []
    pipeline.store.write(lambda txn: commitments.report_delivered(txn, row, now_iso(), held, 60))   # unclaimed: refused
    assert commitment(pipeline, receipt.commitment_id)["status"] == "reporting"
    pipeline.store.write(lambda txn: commitments.report_delivered(txn, claimed, now_iso(), held, 60))
    row = commitment(pipeline, receipt.commitment_id)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("delivered", 1, "")


def test_unknown_requester_is_parked_dead_with_the_reason(pipeline: Pipeline, storage_dir: Path) -> None:
    receipt = receive(pipeline, request("2.25.1", (VERIFICATION, "2.25.11")))
    evaluate(pipeline, storage_dir)
    report = due_report(pipeline)
    held = lease(pipeline)
    pipeline.store.write(lambda txn: wf.report_dead(txn, report, "requester X is not known", held, 60))
    row = commitment(pipeline, receipt.commitment_id)
    assert (row["status"], row["last_error"], row["attempts"]) == ("dead", "requester X is not known", 0)


# -- the DICOM datasets (pure helpers of the service) -------------------------------------------------
def test_event_report_lists_successes_and_failures_with_reasons() -> None:
    result = {"committed": [{"sop_class_uid": CT, "sop_instance_uid": "2.25.11"}],
              "failed": [{"sop_class_uid": CT, "sop_instance_uid": "2.25.12", "failure_reason": 0x0112}]}
    event_type, dataset = build_event_report("2.25.1", result, "SWF_ENGINE")
    assert event_type == 2
    assert dataset.TransactionUID == "2.25.1" and dataset.RetrieveAETitle == "SWF_ENGINE"
    assert [i.ReferencedSOPInstanceUID for i in dataset.ReferencedSOPSequence] == ["2.25.11"]
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in dataset.FailedSOPSequence] == [("2.25.12", 0x0112)]
    event_type, dataset = build_event_report("2.25.1", {"committed": result["committed"], "failed": []}, "SWF_ENGINE")
    assert event_type == 1 and "FailedSOPSequence" not in dataset
    event_type, dataset = build_event_report("2.25.1", {"committed": [], "failed": result["failed"]}, "SWF_ENGINE")
    assert event_type == 2 and "ReferencedSOPSequence" not in dataset


def _action(transaction_uid: str | None, *items: tuple[str | None, str | None]) -> Dataset:
    dataset = Dataset()
    if transaction_uid is not None:
        dataset.TransactionUID = transaction_uid
    sequence = []
    for sop_class, sop_instance in items:
        item = Dataset()
        if sop_class is not None:
            item.ReferencedSOPClassUID = sop_class
        if sop_instance is not None:
            item.ReferencedSOPInstanceUID = sop_instance
        sequence.append(item)
    if items:
        dataset.ReferencedSOPSequence = sequence
    return dataset


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_action_information_is_parsed_and_malformed_ones_refused() -> None:
    assert parse_action_information(_action("2.25.1", (CT, "2.25.11"))) == ("2.25.1", [Reference(CT, "2.25.11")])
    for bad in (_action(None, (CT, "2.25.11")), _action("", (CT, "2.25.11")), _action("not a uid", (CT, "2.25.11")),
                _action("2.25.1"), _action("2.25.1", (CT, None)), _action("2.25.1", (None, "2.25.11")),
                _action("2.25.1", (CT, "2.25.11"), (CT, "1..2"))):
        with pytest.raises(InvalidRequest):
            parse_action_information(bad)


# -- swf commitments -----------------------------------------------------------------------------------
def test_swf_commitments_lists_and_shows_a_transaction(
        pipeline: Pipeline, instances: Instances, storage_dir: Path, capsys: pytest.CaptureFixture) -> None:
    order(pipeline, "ACC1")
    instances.add("2.25.11")
    receive(pipeline, request("2.25.1", (CT, "2.25.11"), (CT, "2.25.12")))
    evaluate(pipeline, storage_dir, grace=0)
    data_dir = pipeline.config.data_dir
    assert cli.main(["commitments", "--data-dir", data_dir]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and "2.25.1" in listing[1] and "reporting" in listing[1] and "MODALITY1" in listing[1]
    assert cli.main(["commitments", "2.25.1", "--data-dir", data_dir]) == 0
    shown = capsys.readouterr().out
    assert "result: event type 2, 1 committed, 1 failed" in shown
    assert "2.25.11  " + CT + "  committed  accession ACC1" in shown
    assert "2.25.12  " + CT + "  FAILED 0x0112 no such object instance: not stored" in shown
    assert cli.main(["commitments", "2.25.999", "--data-dir", data_dir]) == 1
