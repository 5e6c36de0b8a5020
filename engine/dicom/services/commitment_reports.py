"""The N-EVENT-REPORT sender of Storage Commitment (RAD-10, SWF.md 7.3 and 7.4).

A background thread evaluates the pending requests (engine/workflow/commitment.py) and sends each result
as an N-EVENT-REPORT.  If the N-ACTION's own association is still open when the result is ready, within
``dicom.commitment_same_association_wait`` seconds of the N-ACTION, the report goes on it (SWF.md 7.4; see
``OpenAssociation``); if it is gone or that fails, the report goes on a NEW association to the requester's
AE (host/port from the known-AE list), proposing the Storage Commitment Push Model with an SCP/SCU Role
Selection item SCU-role = 0, SCP-role = 1: the engine is association requester but the SCP of the push
model (DICOM PS3.4 J.3.3.1.3).  Modalities such as Orthanc release right after the N-ACTION response and
get it on a new association.

The open association needs no address: a requester admitted by ``allow_any_ae`` or listed without
host/port gets its report on it whenever it is still open (the wait limit does not apply, there is no
other way); only when it has closed is such a report parked as dead, with the reason.

Several instances on one database (issue 15): a requester's reports are sent by the one instance holding
its lease ``commitment:<AE title>`` (taken before the claim; the claim and every completion are fenced by
its generation), oldest first, so they reach it in request order.  The N-ACTION's association is open on
the instance that received it (``received_by``), which need not hold the lease.  For a requester with
host/port the lease holder does not wait for it: it sends on a new association (as after the wait).  For
one without, only that instance can deliver, so the lease holder stops at such a report and hands the
lease over (``LeaseKeeper.hand_over``), and an instance not holding the lease does not take it while the
oldest due report is one the other instance received; the report waits, and is parked as dead only by the
instance that received it (it knows its association closed) or, once that instance's heartbeat is older
than a lease (it died, and its associations with it), by whichever instance holds the lease.  An unreachable
requester or a non-0x0000 answer is retried by the shared retry policy (engine/domain/retry.py:
``commitment_retry_seconds`` doubling up to ``commitment_max_retry_seconds``), then parked as dead after
``commitment_give_up_hours``.  The report queue's SQL is in engine/store/commitments.py.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO
from typing import Any, Callable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import StorageCommitmentPushModel

from ...cluster import LeaseKeeper
from ...domain.retry import RetryPolicy
from ...store import cluster as cluster_store
from ...store import commitments
from ...store.cluster import Lease, StaleLease
from ...store.database import Transaction
from ...store.timestamps import now_iso
from ...store.commitments import PendingReport
from ...workflow import commitment as workflow
from ..ae import DicomContext, set_no_delay
from ..scu_contexts import COMMITMENT_REPORT
from ..tls import tls_args
from ..wire import pynetdicom_private as private

log = logging.getLogger(__name__)

SUCCESS = 0x0000              # the requester's answer to an N-EVENT-REPORT that closes the transaction
N_EVENT_REPORT_RSP = 0x8100   # Command Field (0000,0100) of an N-EVENT-REPORT response
IDLE_POLL_SECONDS = 5.0       # look at the table at least this often (requests persisted by another process)
OTHER_INSTANCE_POLL_SECONDS = 0.5   # how often due reports another instance delivers are looked at again


class _Checkpoint:
    """Stands in for the acceptor reactor's pause event (``Association._reactor_checkpoint``: set, clear, wait)
    and also tells when the reactor is actually held at it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._held = False

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._open = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            self._held = True
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._open, timeout)
            finally:
                self._held = False

    def hold(self, timeout: float) -> bool:
        """Close the checkpoint and wait until the reactor is blocked at it (True) or ``timeout`` (False, reopened)."""
        with self._cond:
            self._open = False
            if self._cond.wait_for(lambda: self._held, timeout):
                return True
            self._open = True
            self._cond.notify_all()
            return False


class OpenAssociation:
    """An N-ACTION's association as acceptor, to send the N-EVENT-REPORT on it from the sender thread.

    pynetdicom has no public way for another thread to send a request on an association it accepted: its
    reactor thread serves the peer's requests and reads the DIMSE queue.  So, using its internals (checked in
    ``attach``; anything unexpected means the new-association path): the reactor's pause event is replaced by
    a ``_Checkpoint``, the request is sent through ``assoc.dimse.send_msg`` while the reactor is held there
    (it serves and sends nothing meanwhile), and the response is taken from the EVT_DIMSE_RECV notification;
    the reactor, running again, drops that response from its queue ("unexpected ... service message").
    """

    def __init__(self, assoc: Any, checkpoint: _Checkpoint) -> None:
        self.assoc = assoc
        self.checkpoint = checkpoint
        self._send = private.message_sender(assoc)
        self._lock = threading.Condition()
        self._answers: dict[int, int] = {}
        self._message_id = 0
        assoc.bind(evt.EVT_DIMSE_RECV, self._received)

    @classmethod
    def attach(cls, assoc: Any) -> "OpenAssociation | None":
        """The helper of this association, made on its first N-ACTION (in its reactor thread, while the reactor
        is not at its checkpoint); None when this pynetdicom does not look like 3.0."""
        helper = private.engine_attribute(assoc, "open_association")
        if helper is not None:
            return helper
        old = private.reactor_checkpoint(assoc)
        if not assoc.is_acceptor or not isinstance(old, threading.Event) or not old.is_set() \
                or private.message_sender(assoc) is None:
            log.warning("storage commitment: pynetdicom internals not as expected; reports go on new associations")
            return None
        checkpoint = _Checkpoint()
        private.replace_reactor_checkpoint(assoc, checkpoint)
        helper = cls(assoc, checkpoint)
        private.attach_engine_attribute(assoc, "open_association", helper)
        return helper

    def _received(self, event: Any) -> None:   # in the DUL thread
        command = getattr(event.message, "command_set", None)
        if command is None or command.get("CommandField") != N_EVENT_REPORT_RSP:
            return
        with self._lock:
            self._answers[int(command.MessageIDBeingRespondedTo)] = int(command.get("Status", 0xFFFF))
            self._lock.notify_all()

    def send_report(self, context_id: int, event_type: int, information: Dataset, timeout: float) -> int | None:
        """Send the N-EVENT-REPORT on the association; the status answered, or None (not sent, no answer)."""
        assoc = self.assoc
        context = next((cx for cx in assoc.accepted_contexts if cx.context_id == context_id), None)
        if context is None or not assoc.is_established:
            return None
        syntax = context.transfer_syntax[0]
        encoded = encode(information, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
        if encoded is None:
            raise ValueError("cannot encode the Event Information")
        with self._lock:
            self._message_id += 1
            message_id = self._message_id
        request = N_EVENT_REPORT()
        request.MessageID = message_id
        request.AffectedSOPClassUID = StorageCommitmentPushModel
        request.AffectedSOPInstanceUID = workflow.WELL_KNOWN_INSTANCE
        request.EventTypeID = event_type
        request.EventInformation = BytesIO(encoded)
        deadline = time.monotonic() + timeout
        while not self.checkpoint.hold(0.1):   # the reactor gets there within a few ms unless it is serving
            if time.monotonic() > deadline or not assoc.is_established:
                return None
        try:
            if not assoc.is_established or private.release_requested(assoc):
                return None   # gone, or the requester is releasing it (the reactor answers that once resumed)
            self._send(request, context_id)
        finally:
            self.checkpoint.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            while message_id not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or not assoc.is_established:
                    return None
                self._lock.wait(min(left, 0.05))
            return self._answers.pop(message_id)


@dataclass
class WaitingReport:
    """A request whose report may go on its N-ACTION's association until ``until`` (time.monotonic)."""

    channel: OpenAssociation
    context_id: int
    until: float


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


class _LeaseLost(Exception):
    """A completion was refused: another instance holds the requester's lease now (the round stops)."""


class ReportSender:
    """Evaluates due requests and delivers their reports, in its own thread (``start`` / ``stop``); the SCP
    tells it of each N-ACTION's association (``expect_report``) and wakes it (``wake``)."""

    def __init__(self, context: DicomContext):
        self.context = context
        dicom = context.config.dicom
        self.policy = RetryPolicy(dicom.commitment_retry_seconds, dicom.commitment_max_retry_seconds,
                                  dicom.commitment_give_up_hours)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._requester: AE | None = None
        self._same_association_wait = float(dicom.commitment_same_association_wait)
        # (calling AE, Transaction UID) -> the N-ACTION associations of its requests, oldest first
        self._waiting: dict[tuple[str, str], list[WaitingReport]] = {}
        self._waiting_lock = threading.Lock()
        self._deferred = False   # the last round left some requester's reports to another instance

    # -- what the SCP tells ---------------------------------------------------------------------
    def expect_report(self, assoc: Any, context_id: int, key: tuple[str, str]) -> WaitingReport | None:
        """Keep an N-ACTION's association (in its reactor thread) for the report of ``key`` (calling AE,
        Transaction UID); None when reports never go on it (``commitment_same_association_wait`` 0) or it
        cannot be used."""
        if self._same_association_wait <= 0:
            return None
        try:
            channel = OpenAssociation.attach(assoc)
        except Exception:  # noqa: BLE001 - a pynetdicom change: the new-association path still works
            log.exception("storage commitment: cannot prepare the N-ACTION association for the report")
            return None
        if channel is None:
            return None
        waiting = WaitingReport(channel, context_id, time.monotonic() + self._same_association_wait)
        with self._waiting_lock:
            self._waiting.setdefault(key, []).append(waiting)
        return waiting

    def forget(self, key: tuple[str, str], waiting: WaitingReport | None) -> None:
        """The request of an ``expect_report`` was not persisted: no report will come for it."""
        with self._waiting_lock:
            entries = self._waiting.get(key, [])
            if waiting in entries:
                entries.remove(waiting)
            if not entries:
                self._waiting.pop(key, None)

    def wake(self) -> None:
        """A request was persisted: evaluate now rather than at the next poll."""
        self._wake.set()

    def _prune_closed(self) -> None:
        """Drop the associations that have closed (the memory held is bounded by the open ones)."""
        with self._waiting_lock:
            for key in list(self._waiting):
                entries = [entry for entry in self._waiting[key] if entry.channel.assoc.is_established]
                if entries:
                    self._waiting[key] = entries
                else:
                    del self._waiting[key]

    # -- the thread -----------------------------------------------------------------------------
    def start(self) -> None:
        dicom = self.context.config.dicom
        requester = AE(ae_title=dicom.ae_title)
        for sop_class in COMMITMENT_REPORT.sop_classes:
            requester.add_requested_context(sop_class, COMMITMENT_REPORT.syntaxes_for())
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
                due = self.context.store.read(commitments.next_due)
            except Exception:  # noqa: BLE001 - keep the sender alive; the rows stay for the next round
                log.exception("storage commitment sender: round failed")
                due = None
            wait = IDLE_POLL_SECONDS
            if due is not None:
                # reports left to another instance stay due: look again at the pace of OTHER_INSTANCE_POLL
                floor = OTHER_INSTANCE_POLL_SECONDS if self._deferred else 0.05
                wait = min(max((due - workflow.utc_now()).total_seconds(), floor), IDLE_POLL_SECONDS)
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self) -> None:
        """Evaluate what is due, then send the reports that are due (grouped per requester AE)."""
        config = self.context.config
        if self.context.cluster.is_leader():   # once per cluster: the instance holding the leader lease
            workflow.evaluate_due(self.context.store, config.storage_dir, config.dicom.commitment_grace_seconds)
        now = workflow.utc_now()
        due = self.context.store.read(lambda txn: commitments.reports_due(txn, now))
        by_ae: dict[str, list[PendingReport]] = {}
        for report in due:
            by_ae.setdefault(report.calling_ae_title, []).append(report)
        self._deferred = False
        for calling, reports in by_ae.items():
            if self._stopping.is_set():
                return
            try:
                self._deliver(calling, reports)
            except _LeaseLost:
                self._deferred = True   # another instance took the requester's lease over: it delivers
        self._prune_closed()

    # -- delivery -------------------------------------------------------------------------------
    def _keeper(self, calling: str) -> LeaseKeeper:
        return self.context.cluster.keeper(commitments.report_lease(calling))

    def _record(self, lease: Lease, what: str, work: Callable[[Transaction], Any]) -> Any:
        """Write how a delivery ended, fenced by ``lease``; raises ``_LeaseLost`` (logged) when another
        instance took the lease over meanwhile, so the round stops there."""
        keeper = self.context.cluster.keeper(lease.name)
        try:
            result = self.context.store.write(work)
        except StaleLease as exc:
            keeper.stale(lease, what, exc)
            raise _LeaseLost(lease.name) from exc
        if isinstance(result, Lease):
            keeper.taken(result)
        return result

    def _held_elsewhere(self, reports: list[PendingReport], reachable: bool) -> int:
        """How many of the requester's due reports (oldest first) this instance may deliver before one
        that only another instance can: a requester without host/port gets a report on its N-ACTION's
        association alone, and that is open (if at all) on the instance that received it, so while that
        instance is alive its reports wait for it; here they would be parked as dead."""
        me = self.context.cluster.name
        if reachable or all(report.received_by in ("", me) for report in reports):
            return len(reports)
        since = time.time() - self.context.cluster.lease_seconds
        alive = self.context.store.read(lambda txn: cluster_store.alive(txn, since))
        return next((index for index, report in enumerate(reports)
                     if report.received_by not in ("", me) and report.received_by in alive), len(reports))

    def _deliver(self, calling: str, reports: list[PendingReport]) -> None:
        """Under the requester's lease (one instance delivers to it at a time, so its reports go out in
        request order): the open N-ACTION association first (it needs no address); only the reports left
        over need the requester's host/port for a new association, and are parked as dead when it has none."""
        store = self.context.store
        known = self.context.directory.get(calling)
        reachable = known is not None and known.reachable
        keeper = self._keeper(calling)
        mine = self._held_elsewhere(reports, reachable)
        if mine == 0:   # the oldest waits for the instance holding its association: let that one take over
            keeper.hand_over(store, f"the report of transaction {reports[0].transaction_uid} to {calling} can only"
                                    f" go on its N-ACTION association, open on instance {reports[0].received_by}")
            self._deferred = True
            return
        lease = keeper.take_blocking(store)
        if lease is None:
            self._deferred = True   # another instance delivers this requester's reports
            return
        dicom = self.context.config.dicom
        seconds = self.context.cluster.lease_seconds
        until = workflow.utc_now() + timedelta(seconds=dicom.acse_timeout + dicom.dimse_timeout * (mine + 1))
        claimed = self._record(lease, f"claim of the reports to {calling}",
                               lambda txn: commitments.claim_reports(txn, reports[:mine], until, lease, seconds))
        claimed = [report for report in claimed[0]
                   if not self._send_on_open_association(report, fallback=reachable, lease=lease)]
        if claimed:
            self._deliver_claimed(calling, claimed, lease)
        if mine < len(reports):
            keeper.hand_over(store, f"the report of transaction {reports[mine].transaction_uid} to {calling} can"
                                    f" only go on its N-ACTION association, open on instance"
                                    f" {reports[mine].received_by}")
            self._deferred = True

    def _deliver_claimed(self, calling: str, claimed: list[PendingReport], lease: Lease) -> None:
        """The claimed reports the open association did not take, on a new association to the requester."""
        known = self.context.directory.get(calling)
        dicom = self.context.config.dicom
        if known is None or not known.reachable:
            reason = (f"requester {calling} is not in the known-AE list (dicom.aes)" if known is None else
                      f"requester {calling} has no host/port in the known-AE list (dicom.aes)")
            reason += ": the report can only go on its N-ACTION association, which is closed or did not take it"
            seconds = self.context.cluster.lease_seconds
            self._record(lease, f"reports to {calling} parked as dead", lambda txn: [
                workflow.report_dead(txn, report, reason, lease, seconds) for report in claimed])
            return
        assert self._requester is not None
        try:
            assoc = self._requester.associate(known.host, known.port, ae_title=calling,
                                              ext_neg=COMMITMENT_REPORT.role_selection(),
                                              tls_args=tls_args(known, dicom.tls))
        except Exception as exc:  # noqa: BLE001 - bad address and the like: counts as unreachable
            self._failed(claimed, f"cannot connect to {calling} at {known.host}:{known.port}: {exc}", lease)
            return
        if not assoc.is_established:
            what = "rejected the association" if assoc.is_rejected else "not reachable (or aborted the association)"
            self._failed(claimed, f"{calling} at {known.host}:{known.port} {what}", lease)
            return
        set_no_delay(assoc)
        try:
            accepted = [cx for cx in assoc.accepted_contexts
                        if cx.abstract_syntax == workflow.STORAGE_COMMITMENT_PUSH_MODEL and cx.as_scp]
            if not accepted:
                self._failed(claimed, f"{calling} did not accept Storage Commitment with the engine as SCP"
                             " (SCP/SCU role selection refused)", lease)
                return
            for index, report in enumerate(claimed):
                if not assoc.is_established:
                    self._failed(claimed[index:], f"{calling} closed the association", lease)
                    return
                self._send(assoc, report, index + 1, lease)
        finally:
            if assoc.is_established:
                assoc.release()

    def _send_on_open_association(self, report: PendingReport, fallback: bool, lease: Lease) -> bool:
        """Deliver the report on its N-ACTION's association if that is still open (SWF.md 7.4); False when
        it is gone, too late, or the attempt failed: the new-association path takes over.

        "Too late" (past ``commitment_same_association_wait``) only applies when there is a ``fallback``: a
        requester without host/port in dicom.aes can be reached on its open association alone."""
        now = time.monotonic()
        key = (report.calling_ae_title, report.transaction_uid)
        with self._waiting_lock:
            entries = self._waiting.get(key, [])
            waiting = entries.pop(0) if entries else None
            if not entries:
                self._waiting.pop(key, None)
        if waiting is None or (fallback and waiting.until < now) or not waiting.channel.assoc.is_established:
            return False
        event_type, information = build_event_report(report.transaction_uid, report.result, self.context.ae_title)
        calling = report.calling_ae_title
        try:
            code = waiting.channel.send_report(waiting.context_id, event_type, information,
                                               self.context.config.dicom.dimse_timeout)
        except Exception as exc:  # noqa: BLE001 - pynetdicom internals changed, encoding failed ...
            log.warning("storage commitment transaction %s: report on the N-ACTION association to %s failed (%s);"
                        " using a new association", report.transaction_uid, calling, exc)
            return False
        if code != SUCCESS:
            log.info("storage commitment transaction %s: report on the N-ACTION association to %s %s;"
                     " using a new association", report.transaction_uid, calling,
                     "not answered" if code is None else f"answered 0x{code:04X}")
            return False
        self._delivered(report, lease)
        log.info("storage commitment transaction %s: report (event type %d, %s) delivered to %s on the N-ACTION"
                 " association", report.transaction_uid, event_type, workflow.summary(report.result), calling)
        return True

    def _send(self, assoc: Any, report: PendingReport, message_id: int, lease: Lease) -> None:
        event_type, information = build_event_report(report.transaction_uid, report.result, self.context.ae_title)
        calling = report.calling_ae_title
        try:
            answer = assoc.send_n_event_report(information, event_type, StorageCommitmentPushModel,
                                               workflow.WELL_KNOWN_INSTANCE, msg_id=message_id)
            status, _reply = answer
        except Exception as exc:  # noqa: BLE001
            self._failed([report], f"N-EVENT-REPORT to {calling} failed: {exc}", lease)
            return
        code = getattr(status, "Status", None)
        if code == SUCCESS:
            self._delivered(report, lease)
            log.info("storage commitment transaction %s: report (event type %d, %s) delivered to %s",
                     report.transaction_uid, event_type, workflow.summary(report.result), calling)
        elif code is None:
            self._failed([report], f"no answer from {calling} to the N-EVENT-REPORT", lease)
        else:
            self._failed([report], f"{calling} answered the N-EVENT-REPORT with 0x{code:04X}", lease)

    def _delivered(self, report: PendingReport, lease: Lease) -> None:
        seconds = self.context.cluster.lease_seconds
        self._record(lease, f"storage commitment transaction {report.transaction_uid}: report delivered to"
                            f" {report.calling_ae_title}",
                     lambda txn: commitments.report_delivered(txn, report, now_iso(), lease, seconds))

    def _failed(self, reports: list[PendingReport], error: str, lease: Lease) -> None:
        seconds = self.context.cluster.lease_seconds
        statuses = self._record(lease, f"reports to {reports[0].calling_ae_title} not delivered ({error})", lambda txn: [
            workflow.report_failed(txn, report, error, self.policy, lease, seconds) for report in reports])
        for report, status in zip(reports, statuses):
            if status == commitments.REPORTING:
                log.warning("storage commitment transaction %s: report to %s not delivered (%s); will retry",
                            report.transaction_uid, report.calling_ae_title, error)
