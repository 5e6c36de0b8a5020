"""RAD-10 Storage Commitment (push model), the workflow side (SWF.md section 7).

A request goes through these states in the ``commitments`` table:

``pending``    received and persisted (the N-ACTION was answered 0x0000 after that commit); waits for its
               evaluation, which may be put off up to ``commitment_grace_seconds`` for in-flight C-STOREs;
``reporting``  evaluated: the result (committed / failed references) is stored, the domain event recorded,
               the N-EVENT-REPORT is due at ``next_attempt_at`` (retried with exponential backoff);
``delivered``  the requester answered the N-EVENT-REPORT with 0x0000: the transaction is closed;
``dead``       given up (requester unknown or unreachable past ``commitment_give_up_hours``), with the reason.

Nothing here opens a socket: the DICOM service (engine/dicom/services/commitment.py) turns N-ACTIONs into
``receive_request`` calls and sends the reports; everything else can be tested on a store alone.
``next_attempt_at`` is kept in UTC ISO-8601 so that SQL compares it as text on both databases.
"""
from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from ..store import files
from ..store import repository as repo
from ..store.database import Store, Transaction

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

PENDING, REPORTING, DELIVERED, DEAD = "pending", "reporting", "delivered", "dead"
ACTIVE = (PENDING, REPORTING)
# A pending request that still waits for instances is looked at again this often (within its grace period).
RECHECK_SECONDS = 0.5
_IN_CHUNK = 500   # UIDs per IN (...) list


@dataclass(frozen=True)
class Reference:
    sop_class_uid: str
    sop_instance_uid: str

    def as_dict(self) -> dict[str, str]:
        return {"sop_class_uid": self.sop_class_uid, "sop_instance_uid": self.sop_instance_uid}


@dataclass
class CommitmentRequest:
    """An N-ACTION's content once the adapter has checked its form."""

    transaction_uid: str
    calling_ae_title: str
    references: list[Reference]
    peer: str = ""              # host:port the N-ACTION came from (for the operator; reports go to the known AE)


@dataclass
class Receipt:
    commitment_id: int
    duplicate: bool             # the Transaction UID was active: every reference fails with 0x0131


@dataclass
class RetryPolicy:
    first_seconds: float = 30.0
    max_seconds: float = 1800.0
    give_up_hours: float = 24.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones (1, 2, ...): doubling, capped."""
        return min(self.first_seconds * (2 ** max(attempts - 1, 0)), self.max_seconds)


@dataclass
class Outcome:
    reference: Reference
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


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
    from pynetdicom import sop_class   # the classes the C-STORE SCP accepts (SWF.md RAD-8)

    return frozenset(str(uid) for uid in sop_class._STORAGE_CLASSES.values())


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
    stamp = repo.now_iso()
    body = {"references": [r.as_dict() for r in request.references], "peer": request.peer}
    active = txn.one("SELECT id FROM commitments WHERE transaction_uid = ? AND status IN (?, ?) ORDER BY id LIMIT 1",
                     (request.transaction_uid, *ACTIVE))
    if active is None:
        commitment_id = txn.insert(
            "INSERT INTO commitments (transaction_uid, calling_ae_title, requested_at, status, request, next_attempt_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request.transaction_uid, request.calling_ae_title, stamp, PENDING, repo.dumps(body),
             utc_iso(utc_now()), stamp))
        return Receipt(commitment_id, duplicate=False)
    body["duplicate_of"] = active["id"]
    commitment_id = txn.insert(
        "INSERT INTO commitments (transaction_uid, calling_ae_title, requested_at, status, request, next_attempt_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (request.transaction_uid, request.calling_ae_title, stamp, PENDING, repo.dumps(body), utc_iso(utc_now()), stamp))
    why = f"transaction UID still active in commitment #{active['id']}"
    evaluation = Evaluation(commitment_id, request.transaction_uid,
                            [Outcome(r, DUPLICATE_TRANSACTION_UID, why) for r in request.references])
    record_result(txn, evaluation)
    return Receipt(commitment_id, duplicate=True)


# -- evaluation ------------------------------------------------------------------------------
def references_of(row: dict[str, Any]) -> list[Reference]:
    return [Reference(r["sop_class_uid"], r["sop_instance_uid"]) for r in repo.loads(row["request"])["references"]]


def pending_due(txn: Transaction, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    return txn.query("SELECT * FROM commitments WHERE status = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                     (PENDING, utc_iso(now), limit))


def stored_instances(txn: Transaction, sop_instance_uids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``instances`` rows of these SOP Instance UIDs, by UID."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(sop_instance_uids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start:start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for row in txn.query(f"SELECT sop_instance_uid, sop_class_uid, path, requested_procedure_ref FROM instances"
                             f" WHERE sop_instance_uid IN ({marks})", chunk):
            found[row["sop_instance_uid"]] = row
    return found


def check_references(commitment_id: int, transaction_uid: str, references: list[Reference],
                     instances: dict[str, dict[str, Any]], storage_dir: Path, waiting_allowed: bool,
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
        if instance["sop_class_uid"] != reference.sop_class_uid:
            outcomes.append(Outcome(reference, CLASS_INSTANCE_CONFLICT,
                                    f"stored as SOP class {instance['sop_class_uid']}"))
            continue
        path = Path(instance["path"])
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


def _linked_orders(txn: Transaction, sop_instance_uids: list[str]) -> list[dict[str, Any]]:
    """(accession_number, order_ref) of the requested procedures the instances are linked to."""
    linked: dict[tuple[str, int], dict[str, Any]] = {}
    unique = list(dict.fromkeys(sop_instance_uids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start:start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for row in txn.query(
                "SELECT DISTINCT r.accession_number, r.order_ref FROM instances i"
                " JOIN requested_procedures r ON r.id = i.requested_procedure_ref"
                f" WHERE i.sop_instance_uid IN ({marks})", chunk):
            linked[(row["accession_number"], row["order_ref"])] = row
    return sorted(linked.values(), key=lambda r: (r["accession_number"], r["order_ref"]))


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
    entry.  False when the request was no longer pending (another evaluator got there first)."""
    now = now or utc_now()
    result = {
        "event_type": 2 if evaluation.failed else 1,
        "evaluated_at": repo.now_iso(),
        "committed": [o.as_dict() for o in evaluation.committed],
        "failed": [o.as_dict() for o in evaluation.failed],
    }
    changed = txn.execute(
        "UPDATE commitments SET status = ?, result = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = ?",
        (REPORTING, repo.dumps(result), utc_iso(now), repo.now_iso(), evaluation.commitment_id, PENDING)).rowcount
    if changed != 1:
        return False
    row = txn.one("SELECT calling_ae_title FROM commitments WHERE id = ?", (evaluation.commitment_id,))
    kind = "commitment.failed" if evaluation.failed else "commitment.succeeded"
    detail = (f"transaction {evaluation.transaction_uid} from {row['calling_ae_title'] if row else '?'}: "
              f"{summary(result)}")
    linked = _linked_orders(txn, [o.reference.sop_instance_uid for o in evaluation.outcomes])
    for link in linked:
        repo.record_event(txn, kind, link["accession_number"], detail, order_ref=link["order_ref"])
        repo.add_order_history(txn, link["order_ref"], kind, detail, None)
    if not linked:
        repo.record_event(txn, kind, evaluation.transaction_uid, detail)
    log.info("%s %s (accession %s)", kind, detail, ", ".join(link["accession_number"] for link in linked) or "none linked")
    return True


def reschedule_pending(txn: Transaction, commitment_id: int, at: datetime) -> None:
    txn.execute("UPDATE commitments SET next_attempt_at = ? WHERE id = ? AND status = ?",
                (utc_iso(at), commitment_id, PENDING))


def evaluate_due(store: Store, storage_dir: Path, grace_seconds: float, now: datetime | None = None,
                 secure: Callable[[Iterable[Path], Path], dict[Path, OSError | None]] = secure_files) -> list[Evaluation]:
    """Evaluate the pending requests that are due; returns the results stored.  The instance lookup and the
    fsyncs run outside any write transaction (they must not hold up the store's writer)."""
    now = now or utc_now()
    stored: list[Evaluation] = []
    for row in store.read(lambda txn: pending_due(txn, now)):
        try:
            references = references_of(row)
            instances = store.read(lambda txn: stored_instances(txn, [r.sop_instance_uid for r in references]))
            deadline = _parse(row["requested_at"]) + timedelta(seconds=grace_seconds)
            evaluation = check_references(row["id"], row["transaction_uid"], references, instances, storage_dir,
                                          waiting_allowed=now < deadline, secure=secure)
        except Exception as exc:  # noqa: BLE001 - a broken request must not stop the others
            log.exception("commitment #%s (transaction %s): evaluation failed", row["id"], row["transaction_uid"])
            references = _safe_references(row)
            evaluation = Evaluation(row["id"], row["transaction_uid"],
                                    [Outcome(r, PROCESSING_FAILURE, f"evaluation failed: {exc}") for r in references])
        if evaluation is None:
            recheck = min(now + timedelta(seconds=RECHECK_SECONDS), deadline)
            store.write(lambda txn: reschedule_pending(txn, row["id"], recheck))
            continue
        if store.write(lambda txn: record_result(txn, evaluation)):
            stored.append(evaluation)
    return stored


def _safe_references(row: dict[str, Any]) -> list[Reference]:
    try:
        return references_of(row)
    except Exception:  # noqa: BLE001
        return []


# -- reporting (N-EVENT-REPORT) -----------------------------------------------------------------
def reports_due(txn: Transaction, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    return txn.query("SELECT * FROM commitments WHERE status = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                     (REPORTING, utc_iso(now), limit))


def claim_report(txn: Transaction, row: dict[str, Any], lease_until: datetime) -> bool:
    """Take a due report for one delivery attempt: its next attempt moves to ``lease_until`` so that no other
    sender (another engine process on the same database) picks it up meanwhile."""
    return txn.execute(
        "UPDATE commitments SET next_attempt_at = ? WHERE id = ? AND status = ? AND next_attempt_at = ?",
        (utc_iso(lease_until), row["id"], REPORTING, row["next_attempt_at"])).rowcount == 1


def report_delivered(txn: Transaction, commitment_id: int) -> None:
    """The requester acknowledged the report: the transaction is closed."""
    txn.execute("UPDATE commitments SET status = ?, attempts = attempts + 1, last_error = '', next_attempt_at = '',"
                " updated_at = ? WHERE id = ? AND status = ?",
                (DELIVERED, repo.now_iso(), commitment_id, REPORTING))


def report_dead(txn: Transaction, commitment_id: int, reason: str, attempted: bool = False) -> None:
    """Park a report that will not be delivered, with the reason (shown by ``swf commitments``)."""
    row = txn.one("SELECT transaction_uid, calling_ae_title FROM commitments WHERE id = ?", (commitment_id,))
    changed = txn.execute(
        "UPDATE commitments SET status = ?, attempts = attempts + ?, last_error = ?, next_attempt_at = '',"
        " updated_at = ? WHERE id = ? AND status = ?",
        (DEAD, 1 if attempted else 0, reason, repo.now_iso(), commitment_id, REPORTING)).rowcount
    if changed and row:
        repo.record_event(txn, "commitment.undeliverable", row["transaction_uid"],
                          f"report to {row['calling_ae_title']} given up: {reason}")
        log.warning("commitment #%d (transaction %s): report to %s given up: %s", commitment_id,
                    row["transaction_uid"], row["calling_ae_title"], reason)


def report_failed(txn: Transaction, commitment_id: int, error: str, policy: RetryPolicy,
                  now: datetime | None = None) -> str:
    """Count a failed delivery attempt; schedule the next one with exponential backoff, or park the report
    as dead once ``give_up_hours`` have passed since the request.  Returns the new status."""
    now = now or utc_now()
    row = txn.one("SELECT requested_at, attempts FROM commitments WHERE id = ? AND status = ?",
                  (commitment_id, REPORTING))
    if row is None:
        return ""
    deadline = _parse(row["requested_at"]) + timedelta(hours=policy.give_up_hours)
    attempts = row["attempts"] + 1
    if now >= deadline:
        report_dead(txn, commitment_id, f"given up after {attempts} attempt(s) in {policy.give_up_hours:g} h;"
                    f" last error: {error}", attempted=True)
        return DEAD
    next_attempt = min(now + timedelta(seconds=policy.delay(attempts)), deadline)
    txn.execute("UPDATE commitments SET attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ?"
                " WHERE id = ?", (attempts, error, utc_iso(next_attempt), repo.now_iso(), commitment_id))
    return REPORTING


def next_due(txn: Transaction) -> datetime | None:
    """When the earliest pending evaluation or report is due (None: nothing to do)."""
    row = txn.one("SELECT MIN(next_attempt_at) AS due FROM commitments WHERE status IN (?, ?)", ACTIVE)
    return _parse(row["due"]) if row and row["due"] else None
