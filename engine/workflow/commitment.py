"""RAD-10 Storage Commitment (push model), the workflow side (SWF.md section 7).

A request goes through these states in the ``commitments`` table:

``pending``    received and persisted (the N-ACTION was answered 0x0000 after that commit); waits for its
               evaluation, which may be put off up to ``commitment_grace_seconds`` for in-flight C-STOREs;
``reporting``  evaluated: the result (committed / failed references) is stored, the domain event recorded,
               the N-EVENT-REPORT is due at ``next_attempt_at`` (retried with exponential backoff);
``delivered``  the requester answered the N-EVENT-REPORT with 0x0000: the transaction is closed;
``dead``       given up (requester unknown or unreachable past ``commitment_give_up_hours``), with the reason.

Nothing here opens a socket or holds SQL: the DICOM SCP (engine/dicom/services/commitment.py) turns
N-ACTIONs into ``receive_request`` calls, the sender (engine/dicom/services/commitment_reports.py) sends
the reports, and the statements are in engine/store/commitments.py; everything else can be tested on a
store alone.  Failed deliveries follow the shared ``RetryPolicy`` (engine/domain/retry.py).
"""
from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from ..domain.retry import RetryPolicy
from ..store import commitments, files, queues
from ..store import orders as order_store
from ..store.commitments import (DEAD, REPORTING, CommitmentReference, IndexedInstance, PendingReport, PendingRequest,
                                 parse_time)
from ..store.cluster import Lease
from ..store.database import Store, Transaction
from ..store.timestamps import now_iso
from . import study_stability

log = logging.getLogger(__name__)

STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"

# Failure Reason (0008,1197) values, DICOM PS3.3 C.14.1.1 (SWF.md 7.2)
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
RESOURCE_LIMITATION = 0x0213
SOP_CLASS_NOT_SUPPORTED = 0x0122
CLASS_INSTANCE_CONFLICT = 0x0119
DUPLICATE_TRANSACTION_UID = 0x0131

FAILURE_REASONS = {
    PROCESSING_FAILURE: "processing failure",
    NO_SUCH_OBJECT_INSTANCE: "no such object instance",
    RESOURCE_LIMITATION: "resource limitation",
    SOP_CLASS_NOT_SUPPORTED: "referenced SOP class not supported",
    CLASS_INSTANCE_CONFLICT: "class/instance conflict",
    DUPLICATE_TRANSACTION_UID: "duplicate transaction UID",
}

# A pending request that still waits for instances is looked at again this often (within its grace period).
RECHECK_SECONDS = 0.5


@dataclass
class CommitmentRequest:
    """An N-ACTION's content once the adapter has checked its form."""

    transaction_uid: str
    calling_ae_title: str
    references: list[CommitmentReference]
    peer: str = ""              # host:port the N-ACTION came from (for the operator; reports go to the known AE)
    received_by: str = ""       # the engine instance whose listener holds the N-ACTION's association


@dataclass
class Receipt:
    commitment_id: int
    duplicate: bool             # the Transaction UID was active: every reference fails with 0x0131


@dataclass
class Outcome:
    reference: CommitmentReference
    failure_reason: int = 0     # 0 = committed
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = self.reference.as_dict()
        if self.failure_reason:
            entry["failure_reason"] = self.failure_reason
            entry["why"] = self.why
        return entry


@dataclass
class Evaluation:
    commitment_id: int
    transaction_uid: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def committed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.failure_reason]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failure_reason]


# -- time -------------------------------------------------------------------------------------
def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- durability ----------------------------------------------------------------------------------
def secure_files(paths: Iterable[Path], storage_dir: Path) -> dict[Path, OSError | None]:
    """fsync every file and the directories above it up to ``storage_dir`` (engine/store/files.py); the
    error per file (None = durable)."""
    errors: dict[Path, OSError | None] = {}
    for path in paths:
        try:
            files.ensure_durable(path, storage_dir)
            errors[path] = None
        except OSError as exc:
            errors[path] = exc
    return errors


def _failure_for(exc: OSError) -> int:
    return RESOURCE_LIMITATION if exc.errno in (errno.ENOSPC, errno.EDQUOT) else PROCESSING_FAILURE


# -- storage classes ----------------------------------------------------------------------------
def _storage_classes() -> frozenset[str]:
    from ..dicom.wire.pynetdicom_private import storage_sop_classes   # those the C-STORE SCP accepts (SWF.md RAD-8)

    return frozenset(storage_sop_classes())


_STORAGE_CLASSES: frozenset[str] | None = None


def is_storage_class(sop_class_uid: str) -> bool:
    global _STORAGE_CLASSES
    if _STORAGE_CLASSES is None:
        _STORAGE_CLASSES = _storage_classes()
    return sop_class_uid in _STORAGE_CLASSES


# -- receiving (N-ACTION) ---------------------------------------------------------------------
def receive_request(txn: Transaction, request: CommitmentRequest) -> Receipt:
    """Persist a request (before the N-ACTION is answered).  A Transaction UID still active from another
    request makes every reference of this one fail with 0x0131, reported like any other result."""
    stamp = now_iso()
    active = commitments.active_request(txn, request.transaction_uid)
    commitment_id = commitments.add_request(
        txn, transaction_uid=request.transaction_uid, calling_ae_title=request.calling_ae_title,
        references=request.references, peer=request.peer, duplicate_of=active, at=stamp, due=utc_now(),
        received_by=request.received_by)
    if active is None:
        return Receipt(commitment_id, duplicate=False)
    why = f"transaction UID still active in commitment #{active}"
    evaluation = Evaluation(commitment_id, request.transaction_uid,
                            [Outcome(r, DUPLICATE_TRANSACTION_UID, why) for r in request.references])
    record_result(txn, evaluation)
    return Receipt(commitment_id, duplicate=True)


# -- evaluation ------------------------------------------------------------------------------
def check_references(commitment_id: int, transaction_uid: str, references: Iterable[CommitmentReference],
                     instances: dict[str, IndexedInstance], storage_dir: Path, waiting_allowed: bool,
                     secure: Callable[[Iterable[Path], Path], dict[Path, OSError | None]] = secure_files
                     ) -> Evaluation | None:
    """The result of a request, or None while a referenced instance is missing and ``waiting_allowed``
    (the grace period for in-flight C-STOREs has not run out).  A reference is committed only when its
    instance is indexed with the same SOP class and its file (and directory) were fsynced just now."""
    outcomes: list[Outcome] = []
    to_secure: dict[int, Path] = {}
    for reference in references:
        if not is_storage_class(reference.sop_class_uid):
            outcomes.append(Outcome(reference, SOP_CLASS_NOT_SUPPORTED,
                                    f"{reference.sop_class_uid} is not a storage SOP class"))
            continue
        instance = instances.get(reference.sop_instance_uid)
        if instance is None:
            if waiting_allowed:
                return None
            outcomes.append(Outcome(reference, NO_SUCH_OBJECT_INSTANCE, "not stored"))
            continue
        if instance.sop_class_uid != reference.sop_class_uid:
            outcomes.append(Outcome(reference, CLASS_INSTANCE_CONFLICT,
                                    f"stored as SOP class {instance.sop_class_uid}"))
            continue
        path = Path(instance.path)
        to_secure[len(outcomes)] = path if path.is_absolute() else storage_dir / path
        outcomes.append(Outcome(reference))
    errors = secure(list(dict.fromkeys(to_secure.values())), storage_dir) if to_secure else {}
    for index, path in to_secure.items():
        error = errors.get(path)
        if error is not None:
            outcome = outcomes[index]
            outcome.failure_reason = _failure_for(error)
            outcome.why = f"cannot secure {path}: {error.strerror or error}"
    return Evaluation(commitment_id, transaction_uid, outcomes)


def summary(result: dict[str, Any]) -> str:
    """'3 committed, 1 failed (0x0112 no such object instance x1)'."""
    reasons: dict[int, int] = {}
    for entry in result.get("failed", []):
        reasons[entry["failure_reason"]] = reasons.get(entry["failure_reason"], 0) + 1
    text = f"{len(result.get('committed', []))} committed, {len(result.get('failed', []))} failed"
    if reasons:
        text += " (" + ", ".join(f"0x{code:04X} {FAILURE_REASONS.get(code, '?')} x{count}"
                                 for code, count in sorted(reasons.items())) + ")"
    return text


def record_result(txn: Transaction, evaluation: Evaluation, now: datetime | None = None) -> bool:
    """Store the result of a pending request, make its report due now, and record the domain event
    (``commitment.succeeded`` / ``commitment.failed``) once per linked accession, with an order history
    entry; a success for every reference is a stable point of each pending study it names
    (``study_stability.on_commitment``).  False when the request was no longer pending (another evaluator
    got there first)."""
    now = now or utc_now()
    result = {
        "event_type": 2 if evaluation.failed else 1,
        "evaluated_at": now_iso(),
        "committed": [o.as_dict() for o in evaluation.committed],
        "failed": [o.as_dict() for o in evaluation.failed],
    }
    calling = commitments.enqueue_report(txn, evaluation.commitment_id, result, due=now, at=now_iso())
    if calling is None:
        return False
    kind = "commitment.failed" if evaluation.failed else "commitment.succeeded"
    detail = f"transaction {evaluation.transaction_uid} from {calling}: {summary(result)}"
    linked = commitments.linked_orders(txn, [o.reference.sop_instance_uid for o in evaluation.outcomes])
    for link in linked:
        queues.record_event(txn, kind, link.accession_number, detail, order_ref=link.order_ref)
        order_store.add_history(txn, link.order_ref, kind, detail, None)
    if not linked:
        queues.record_event(txn, kind, evaluation.transaction_uid, detail)
    log.info("%s %s (accession %s)", kind, detail, ", ".join(link.accession_number for link in linked) or "none linked")
    if evaluation.committed and not evaluation.failed:   # "that is all": a stable point of each study
        study_stability.on_commitment(txn, commitments.studies_of(
            txn, [o.reference.sop_instance_uid for o in evaluation.committed]))
    return True


def evaluate_due(store: Store, storage_dir: Path, grace_seconds: float, now: datetime | None = None,
                 secure: Callable[[Iterable[Path], Path], dict[Path, OSError | None]] = secure_files) -> list[Evaluation]:
    """Evaluate the pending requests that are due; returns the results stored.  The instance lookup and the
    fsyncs run outside any write transaction (they must not hold up the store's writer)."""
    now = now or utc_now()
    stored: list[Evaluation] = []
    for request in store.read(lambda txn: commitments.pending_due(txn, now)):
        try:
            evaluation = _evaluate(store, request, storage_dir, grace_seconds, now, secure)
        except Exception as exc:  # noqa: BLE001 - a broken request must not stop the others
            log.exception("commitment #%s (transaction %s): evaluation failed", request.id, request.transaction_uid)
            evaluation = Evaluation(request.id, request.transaction_uid,
                                    [Outcome(r, PROCESSING_FAILURE, f"evaluation failed: {exc}")
                                     for r in request.references])
        if evaluation is None:
            deadline = parse_time(request.requested_at) + timedelta(seconds=grace_seconds)
            recheck = min(now + timedelta(seconds=RECHECK_SECONDS), deadline)
            store.write(lambda txn: commitments.reschedule_pending(txn, request.id, recheck))
            continue
        if store.write(lambda txn: record_result(txn, evaluation)):
            stored.append(evaluation)
    return stored


def _evaluate(store: Store, request: PendingRequest, storage_dir: Path, grace_seconds: float, now: datetime,
              secure: Callable[[Iterable[Path], Path], dict[Path, OSError | None]]) -> Evaluation | None:
    if request.unreadable:
        raise ValueError(request.unreadable)
    instances = store.read(lambda txn: commitments.indexed_instances(
        txn, [r.sop_instance_uid for r in request.references]))
    deadline = parse_time(request.requested_at) + timedelta(seconds=grace_seconds)
    return check_references(request.id, request.transaction_uid, request.references, instances, storage_dir,
                            waiting_allowed=now < deadline, secure=secure)


# -- reporting (N-EVENT-REPORT) -----------------------------------------------------------------
def report_dead(txn: Transaction, report: PendingReport, reason: str, lease: Lease, lease_seconds: float,
                attempted: bool = False) -> None:
    """Park a report that will not be delivered, with the reason (shown by ``swf commitments``); fenced by
    the requester's ``lease`` (``StaleLease`` when another instance took it over)."""
    given_up = commitments.report_dead(txn, report, reason, attempted=attempted, at=now_iso(), lease=lease,
                                       lease_seconds=lease_seconds)
    if given_up is not None:
        queues.record_event(txn, "commitment.undeliverable", given_up.transaction_uid,
                            f"report to {given_up.calling_ae_title} given up: {reason}")
        log.warning("commitment #%d (transaction %s): report to %s given up: %s", report.id,
                    given_up.transaction_uid, given_up.calling_ae_title, reason)


def report_failed(txn: Transaction, report: PendingReport, error: str, policy: RetryPolicy, lease: Lease,
                  lease_seconds: float, now: datetime | None = None) -> str:
    """Count a failed delivery attempt; schedule the next one by the retry policy (never later than
    ``give_up_hours`` after the request), or park the report as dead once they have passed (fenced by the
    requester's ``lease``).  Returns the new status ("" when the report was no longer reporting)."""
    now = now or utc_now()
    state = commitments.report_attempts(txn, report)
    if state is None:
        return ""
    attempts = state.attempts + 1
    wait = policy.retry_in(attempts, (now - parse_time(state.requested_at)).total_seconds())
    if wait is None:
        report_dead(txn, report, f"given up after {attempts} attempt(s) in {policy.give_up_hours:g} h;"
                    f" last error: {error}", lease, lease_seconds, attempted=True)
        return DEAD
    commitments.reschedule_report(txn, report, attempts=attempts, error=error,
                                  next_attempt=now + timedelta(seconds=wait), at=now_iso(), lease=lease,
                                  lease_seconds=lease_seconds)
    return REPORTING
