"""Forwarding to downstream AEs (config ``dicom.forward_store_to`` / ``forward_mpps_to`` /
``notify_availability_to``): the engine as C-STORE SCU (received instances, as stored), as PPS Manager
forwarding MPPS N-CREATE / N-SET, and as Instance Availability Notification SCU (N-CREATE of the notices
engine/workflow/instance_availability.py queues at each stable point of a study).

Tasks come from the ``dicom_forwards`` queue (filled in the indexing transaction, see
workflow/forwarding.py; the SQL of both is in store/queues.py).  A background thread delivers them per
destination in order, one association per round; a failure is retried with doubling delays, and after
``forward_give_up_hours`` the task is parked as dead with the reason (engine/domain/retry.py).  With
several engines on one database, the holder of a destination's lease forwards to it (engine/cluster.py).
"""
from __future__ import annotations

import logging
import threading
from io import BytesIO
import time
from datetime import datetime
from typing import Any, Callable

from pydicom import dcmread
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from ...cluster import LeaseKeeper
from ...domain.retry import RetryPolicy
from ...store import performed_steps, queues
from ...store.files import FileStore
from ...store.cluster import Lease, StaleLease
from ...store.database import Transaction
from ...store.queues import ForwardTask
from ...store import availability_notices
from ...workflow.forwarding import ForwardingQueue
from ...workflow.instance_availability import IAN_KIND, INSTANCE_AVAILABILITY_NOTIFICATION, AvailabilityNotifier
from ...workflow.mpps import NOT_SETTABLE
from ..ae import DicomContext, set_no_delay
from ..scu_contexts import FORWARD_MPPS, FORWARD_STORE
from ..tls import TlsSetupError, tls_args

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class ForwardingService:
    name = "forwarding"

    def __init__(self, context: DicomContext):
        self.context = context
        dicom = context.config.dicom
        self.queue = ForwardingQueue(dicom.forward_store_to, dicom.forward_mpps_to)
        self.retry = RetryPolicy(dicom.forward_retry_seconds, dicom.forward_max_retry_seconds,
                                 dicom.forward_give_up_hours)
        self.notifier = AvailabilityNotifier(dicom.notify_availability_to, dicom.ae_title)
        self.destinations = sorted(set(dicom.forward_store_to) | set(dicom.forward_mpps_to)
                                   | set(dicom.notify_availability_to))
        self.files = FileStore(context.config.storage_dir)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for title in self.destinations:
            known = context.directory.get(title)
            if known is None or not known.reachable:
                log.warning("forwarding to %s: not a known AE with host and port (dicom.aes); rows will wait", title)

    def contexts(self) -> list:
        return []

    def handlers(self) -> list[tuple]:
        return []

    def start(self) -> None:
        if not self.destinations:
            return
        self.context.store.write(self.queue.start)
        self.context.store.before_commit.append(self.queue)
        if self.notifier.destinations:
            self.context.store.write(self.notifier.start)
            self.context.store.before_commit.append(self.notifier)
        self._thread = threading.Thread(target=self._run, name="dicom-forwarding", daemon=True)
        self._thread.start()
        log.info("forwarding received instances to %s, MPPS to %s and availability notices to %s",
                 ", ".join(self.context.config.dicom.forward_store_to) or "nobody",
                 ", ".join(self.context.config.dicom.forward_mpps_to) or "nobody",
                 ", ".join(self.notifier.destinations) or "nobody")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- delivery ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            for destination in self.destinations:
                try:
                    self._deliver(destination)
                except Exception:  # noqa: BLE001 - the loop must go on for the other destinations
                    log.exception("forwarding to %s failed", destination)

    def _deliver(self, destination: str) -> None:
        tasks = self.context.store.read(lambda txn: queues.claim_forwards(txn, destination))
        if not tasks or tasks[0].next_attempt_at > time.time():
            return  # strict order: the head waits for its retry time, the rest wait behind it
        keeper = self._keeper(destination)
        lease = keeper.fresh()
        if lease is None:   # taken or renewed once per third of a lease, then the head read again
            lease = keeper.take_blocking(self.context.store)
            if lease is None:
                return   # another instance forwards to this destination
            tasks = self.context.store.read(lambda txn: queues.claim_forwards(txn, destination))
            if not tasks:
                return
        known = self.context.directory.get(destination)
        if known is None or not known.reachable:
            return
        items = [(task, self._payload(task)) for task in tasks]
        ae = AE(ae_title=self.context.ae_title)
        contexts: set[tuple[str, str]] = set()
        for task, (sop_class, dataset, operation) in items:
            if dataset is None:
                continue
            # Instances go as they were stored (their own transfer syntax); MPPS in the standard syntaxes.
            use = FORWARD_STORE if operation == "C-STORE" else FORWARD_MPPS
            syntax = str(dataset.file_meta.TransferSyntaxUID) if use.per_instance else ""
            if (sop_class, syntax) not in contexts and len(contexts) < use.max_contexts:
                contexts.add((sop_class, syntax))
                ae.add_requested_context(sop_class, use.syntaxes_for(syntax))
        if not contexts:
            for task, _ in items:
                self._failed(lease, task, "source no longer readable", dead=True)
            return
        try:
            secure = tls_args(known, self.context.config.dicom.tls)
        except TlsSetupError as exc:
            self._failed(lease, tasks[0], f"TLS towards {destination}: {exc}")
            return
        assoc = ae.associate(known.host, known.port, ae_title=destination, tls_args=secure)
        if not assoc.is_established:
            self._failed(lease, tasks[0], f"association with {destination} at {known.host}:{known.port} not established")
            return
        set_no_delay(assoc)
        try:
            for task, (sop_class, dataset, operation) in items:
                if dataset is None:
                    self._failed(lease, task, "source no longer readable", dead=True)
                    continue
                if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
                    self._failed(lease, task, f"{destination} did not accept {_name(sop_class)}")
                    break
                status = self._send(assoc, sop_class, dataset, operation, task.sop_instance_uid)
                if status is None or status not in (0x0000, 0xB000, 0xB006, 0xB007):
                    self._failed(lease, task, f"{operation} answered {'no status' if status is None else hex(status)}")
                    break
                if not self._done(lease, task):
                    break
                log.info("forwarded %s %s to %s", operation, task.sop_instance_uid, destination)
        finally:
            assoc.release()

    def _payload(self, task: ForwardTask) -> tuple[str, Any, str]:
        """(SOP class, dataset, operation) of a queued task; dataset None when the source is gone."""
        try:
            if task.kind == "store":
                instance = self.context.store.read(lambda txn: queues.forwarded_instance(txn, task.source_ref))
                if instance is None:
                    return "", None, ""
                return instance.sop_class_uid, dcmread(self.files.absolute(instance.path)), "C-STORE"
            if task.kind == IAN_KIND:
                notice = self.context.store.read(lambda txn: availability_notices.notice(txn, task.source_ref))
                if notice is None:
                    return "", None, ""
                return INSTANCE_AVAILABILITY_NOTIFICATION, dcmread(BytesIO(notice.dataset)), "N-CREATE"
            version = self.context.store.read(lambda txn: performed_steps.version(txn, task.source_ref))
            if version is None:
                return "", None, ""
            dataset = performed_steps.decode_dataset(version.dataset)
        except (OSError, ValueError) as exc:
            log.warning("forward %d: source unreadable: %s", task.id, exc)
            return "", None, ""
        if version.operation == "N-SET":
            for keyword in NOT_SETTABLE:
                if keyword in dataset:
                    delattr(dataset, keyword)
        return str(ModalityPerformedProcedureStep), dataset, version.operation

    @staticmethod
    def _send(assoc: Any, sop_class: str, dataset: Any, operation: str, uid: str) -> int | None:
        if operation == "C-STORE":
            status = assoc.send_c_store(dataset)
        elif operation == "N-CREATE":
            status, _ = assoc.send_n_create(dataset, sop_class, uid)
        else:
            status, _ = assoc.send_n_set(dataset, sop_class, uid)
        return int(status.Status) if status is not None and "Status" in status else None

    def _keeper(self, destination: str) -> LeaseKeeper:
        return self.context.cluster.keeper(queues.forward_lease(destination))

    def _completed(self, lease: Lease, task: ForwardTask, work: Callable[[Transaction], Lease]) -> bool:
        """Record how a forward ended; False when the lease was taken over meanwhile (refused, logged)."""
        keeper = self._keeper(task.destination)
        try:
            keeper.taken(self.context.store.write(work))
        except StaleLease as exc:
            keeper.stale(lease, f"forward of {task.kind} {task.sop_instance_uid} to {task.destination}", exc)
            return False
        return True

    def _done(self, lease: Lease, task: ForwardTask) -> bool:
        seconds = self.context.cluster.lease_seconds
        return self._completed(lease, task, lambda txn: queues.forward_delivered(txn, task, lease, seconds))

    def _failed(self, lease: Lease, task: ForwardTask, reason: str, dead: bool = False) -> None:
        attempts = task.attempts + 1
        now = time.time()
        wait = self.retry.retry_in(attempts, now - datetime.fromisoformat(task.created_at).timestamp())
        dead = dead or wait is None
        delay = self.retry.delay(attempts) if wait is None else wait
        log.warning("forward of %s %s to %s %s: %s", task.kind, task.sop_instance_uid, task.destination,
                    "parked as dead" if dead else f"retry in {delay:.0f} s", reason)
        seconds = self.context.cluster.lease_seconds
        self._completed(lease, task, lambda txn: queues.forward_failed(
            txn, task, attempts=attempts, dead=dead, next_attempt_at=now + delay, reason=reason, lease=lease,
            lease_seconds=seconds))


def _name(sop_class: str) -> str:
    return UID(sop_class).name or sop_class


def create(context: DicomContext) -> ForwardingService:
    return ForwardingService(context)
