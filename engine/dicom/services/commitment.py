"""Storage Commitment Push Model SCP (RAD-10, SWF.md section 7).

N-ACTION in: checked, persisted, answered at once (0x0000 = "request received", not "committed").
A background sender thread then evaluates the pending requests (engine/workflow/commitment.py) and sends
each result as an N-EVENT-REPORT on a NEW association to the requester's AE (host/port from the known-AE
list), proposing the Storage Commitment Push Model with an SCP/SCU Role Selection item SCU-role = 0,
SCP-role = 1: the engine is association requester but the SCP of the push model (DICOM PS3.4 J.3.3.1.3).
An unreachable requester or a non-0x0000 answer is retried with exponential backoff, then parked as dead.

The report is never sent on the N-ACTION's own association (SWF.md 7.4, first bullet): pynetdicom's
acceptor side cannot send a DIMSE-N request on it (lab README, pitfall 8), and modalities such as Orthanc
release right after the N-ACTION response and expect the report on a new association anyway.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import StorageCommitmentPushModel

from ...store import repository as repo
from ...workflow import commitment as workflow
from ...workflow.commitment import CommitmentRequest, Reference, RetryPolicy
from ..ae import DicomContext, set_no_delay

log = logging.getLogger(__name__)

# N-ACTION statuses (SWF.md 7.1)
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_ARGUMENT_VALUE = 0x0115
NO_SUCH_SOP_CLASS = 0x0118
NO_SUCH_ACTION = 0x0123
NOT_AUTHORISED = 0x0124
RESOURCE_LIMITATION = 0x0213

IDLE_POLL_SECONDS = 5.0   # look at the table at least this often (requests persisted by another process)
MAX_REFERENCES = 100_000


class InvalidRequest(ValueError):
    """The N-ACTION's Action Information cannot be used (0x0115)."""


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


def _valid_uid(value: Any) -> bool:
    text = str(value or "")
    return bool(text) and UID(text).is_valid


def parse_action_information(dataset: Dataset) -> tuple[str, list[Reference]]:
    """Transaction UID and references of an N-ACTION, or InvalidRequest naming what is wrong."""
    transaction_uid = str(dataset.get("TransactionUID", "") or "").strip()
    if not transaction_uid:
        raise InvalidRequest("no Transaction UID (0008,1195)")
    if not _valid_uid(transaction_uid):
        raise InvalidRequest(f"malformed Transaction UID {transaction_uid[:40]!r}")
    items = dataset.get("ReferencedSOPSequence")
    if not items:
        raise InvalidRequest("no or empty Referenced SOP Sequence (0008,1199)")
    if len(items) > MAX_REFERENCES:
        raise InvalidRequest(f"more than {MAX_REFERENCES} references")
    references = []
    for number, item in enumerate(items, 1):
        sop_class_uid = str(item.get("ReferencedSOPClassUID", "") or "").strip()
        sop_instance_uid = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
        if not _valid_uid(sop_class_uid) or not _valid_uid(sop_instance_uid):
            raise InvalidRequest(f"Referenced SOP Sequence item {number}: missing or malformed SOP class/instance UID")
        references.append(Reference(sop_class_uid, sop_instance_uid))
    return transaction_uid, references


def build_event_report(transaction_uid: str, result: dict[str, Any], retrieve_ae_title: str) -> tuple[int, Dataset]:
    """Event Type ID and Event Information of the N-EVENT-REPORT for a stored result (SWF.md 7.3)."""
    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.RetrieveAETitle = retrieve_ae_title
    committed = result.get("committed", [])
    failed = result.get("failed", [])
    if committed:
        items = Sequence()
        for entry in committed:
            item = Dataset()
            item.ReferencedSOPClassUID = entry["sop_class_uid"]
            item.ReferencedSOPInstanceUID = entry["sop_instance_uid"]
            items.append(item)
        dataset.ReferencedSOPSequence = items
    if failed:
        items = Sequence()
        for entry in failed:
            item = Dataset()
            item.ReferencedSOPClassUID = entry["sop_class_uid"]
            item.ReferencedSOPInstanceUID = entry["sop_instance_uid"]
            item.FailureReason = entry["failure_reason"]
            items.append(item)
        dataset.FailedSOPSequence = items
    return (2 if failed else 1), dataset


class CommitmentService:
    name = "storage commitment"

    def __init__(self, context: DicomContext):
        self.context = context
        dicom = context.config.dicom
        self.policy = RetryPolicy(dicom.commitment_retry_seconds, dicom.commitment_max_retry_seconds,
                                  dicom.commitment_give_up_hours)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._requester: AE | None = None

    # -- the SCP side ---------------------------------------------------------------------------
    def contexts(self) -> list[PresentationContext]:
        return [build_context(StorageCommitmentPushModel)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_N_ACTION, self.on_action)]

    def on_action(self, event: Any) -> tuple[Dataset, Dataset | None]:
        request = event.request
        calling = str(event.assoc.requestor.ae_title).strip()
        if not self.context.directory.allows(calling, "commit"):
            log.warning("storage commitment N-ACTION from %s refused: not authorised (permission 'commit')", calling)
            return _status(NOT_AUTHORISED, f"{calling} may not request storage commitment"), None
        if str(request.RequestedSOPClassUID) != workflow.STORAGE_COMMITMENT_PUSH_MODEL:
            return _status(NO_SUCH_SOP_CLASS), None
        if str(request.RequestedSOPInstanceUID) != workflow.WELL_KNOWN_INSTANCE:
            return _status(NO_SUCH_SOP_INSTANCE, f"use the well-known instance {workflow.WELL_KNOWN_INSTANCE}"), None
        if request.ActionTypeID != 1:
            return _status(NO_SUCH_ACTION, f"Action Type ID {request.ActionTypeID}: only 1 is defined"), None
        try:
            transaction_uid, references = parse_action_information(event.action_information)
        except InvalidRequest as exc:
            log.warning("storage commitment N-ACTION from %s refused: %s", calling, exc)
            return _status(INVALID_ARGUMENT_VALUE, str(exc)), None
        except Exception as exc:  # noqa: BLE001 - undecodable Action Information
            log.warning("storage commitment N-ACTION from %s: cannot decode the request: %s", calling, exc)
            return _status(INVALID_ARGUMENT_VALUE, "cannot decode the Action Information"), None
        requestor = event.assoc.requestor
        commitment_request = CommitmentRequest(transaction_uid, calling, references,
                                               peer=f"{requestor.address}:{requestor.port}")
        try:
            receipt = self.context.store.write(lambda txn: workflow.receive_request(txn, commitment_request))
        except Exception:  # noqa: BLE001 - not persisted: the modality must not take it as received
            log.exception("storage commitment transaction %s from %s: cannot persist the request",
                          transaction_uid, calling)
            return _status(PROCESSING_FAILURE, "cannot persist the request"), None
        log.info("storage commitment transaction %s from %s: %d reference(s) received (commitment #%d%s)",
                 transaction_uid, calling, len(references), receipt.commitment_id,
                 ", duplicate of an active transaction: every item fails with 0x0131" if receipt.duplicate else "")
        self._wake.set()
        return _status(SUCCESS), None

    # -- the background sender ------------------------------------------------------------------
    def start(self) -> None:
        dicom = self.context.config.dicom
        requester = AE(ae_title=dicom.ae_title)
        requester.add_requested_context(StorageCommitmentPushModel)
        requester.acse_timeout = dicom.acse_timeout
        requester.dimse_timeout = dicom.dimse_timeout
        requester.network_timeout = dicom.network_timeout
        requester.connection_timeout = dicom.acse_timeout
        self._requester = requester
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="commitment-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
                due = self.context.store.read(workflow.next_due)
            except Exception:  # noqa: BLE001 - keep the sender alive; the rows stay for the next round
                log.exception("storage commitment sender: round failed")
                due = None
            wait = IDLE_POLL_SECONDS
            if due is not None:
                wait = min(max((due - workflow.utc_now()).total_seconds(), 0.05), IDLE_POLL_SECONDS)
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self) -> None:
        """Evaluate what is due, then send the reports that are due (grouped per requester AE)."""
        config = self.context.config
        workflow.evaluate_due(self.context.store, config.storage_dir, config.dicom.commitment_grace_seconds)
        now = workflow.utc_now()
        rows = self.context.store.read(lambda txn: workflow.reports_due(txn, now))
        by_ae: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_ae.setdefault(row["calling_ae_title"], []).append(row)
        for calling, reports in by_ae.items():
            if self._stopping.is_set():
                return
            self._deliver(calling, reports)

    def _deliver(self, calling: str, rows: list[dict[str, Any]]) -> None:
        store = self.context.store
        known = self.context.directory.get(calling)
        if known is None or not known.reachable:
            reason = (f"requester {calling} is not in the known-AE list (dicom.aes)" if known is None else
                      f"requester {calling} has no host/port in the known-AE list (dicom.aes)")
            store.write(lambda txn: [workflow.report_dead(txn, row["id"], reason) for row in rows])
            return
        dicom = self.context.config.dicom
        lease = workflow.utc_now() + timedelta(seconds=dicom.acse_timeout + dicom.dimse_timeout * (len(rows) + 1))
        claimed = store.write(lambda txn: [row for row in rows if workflow.claim_report(txn, row, lease)])
        if not claimed:
            return
        assert self._requester is not None
        role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        try:
            assoc = self._requester.associate(known.host, known.port, ae_title=calling, ext_neg=[role])
        except Exception as exc:  # noqa: BLE001 - bad address and the like: counts as unreachable
            self._failed(claimed, f"cannot connect to {calling} at {known.host}:{known.port}: {exc}")
            return
        if not assoc.is_established:
            what = "rejected the association" if assoc.is_rejected else "not reachable (or aborted the association)"
            self._failed(claimed, f"{calling} at {known.host}:{known.port} {what}")
            return
        set_no_delay(assoc)
        try:
            accepted = [cx for cx in assoc.accepted_contexts
                        if cx.abstract_syntax == workflow.STORAGE_COMMITMENT_PUSH_MODEL and cx.as_scp]
            if not accepted:
                self._failed(claimed, f"{calling} did not accept Storage Commitment with the engine as SCP"
                             " (SCP/SCU role selection refused)")
                return
            for index, row in enumerate(claimed):
                if not assoc.is_established:
                    self._failed(claimed[index:], f"{calling} closed the association")
                    return
                self._send(assoc, row, message_id=index + 1)
        finally:
            if assoc.is_established:
                assoc.release()

    def _send(self, assoc: Any, row: dict[str, Any], message_id: int) -> None:
        store = self.context.store
        result = repo.loads(row["result"])
        event_type, information = build_event_report(row["transaction_uid"], result, self.context.ae_title)
        calling = row["calling_ae_title"]
        try:
            answer = assoc.send_n_event_report(information, event_type, StorageCommitmentPushModel,
                                               workflow.WELL_KNOWN_INSTANCE, msg_id=message_id)
            status, _reply = answer
        except Exception as exc:  # noqa: BLE001
            self._failed([row], f"N-EVENT-REPORT to {calling} failed: {exc}")
            return
        code = getattr(status, "Status", None)
        if code == SUCCESS:
            store.write(lambda txn: workflow.report_delivered(txn, row["id"]))
            log.info("storage commitment transaction %s: report (event type %d, %s) delivered to %s",
                     row["transaction_uid"], event_type, workflow.summary(result), calling)
        elif code is None:
            self._failed([row], f"no answer from {calling} to the N-EVENT-REPORT")
        else:
            self._failed([row], f"{calling} answered the N-EVENT-REPORT with 0x{code:04X}")

    def _failed(self, rows: list[dict[str, Any]], error: str) -> None:
        statuses = self.context.store.write(
            lambda txn: [workflow.report_failed(txn, row["id"], error, self.policy) for row in rows])
        for row, status in zip(rows, statuses):
            if status == workflow.REPORTING:
                log.warning("storage commitment transaction %s: report to %s not delivered (%s); will retry",
                            row["transaction_uid"], row["calling_ae_title"], error)


def create(context: DicomContext) -> CommitmentService:
    return CommitmentService(context)
