"""SQL of the operator's read-only views (the ``swf`` list and detail commands): orders with their
history, patients, the journal, performed steps (MPPS), storage commitment requests, the outbox and
the DICOM forwards.

Every function takes the transaction and returns frozen records holding what the views show; JSON
columns and stored MPPS datasets are decoded here, once.  Nothing here writes, and nothing here
formats text: the CLI does (and the HTTP API will read the same records).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..domain.status import StepStatus, order_status
from . import performed_steps
from .database import Transaction
from .performed_steps import LinkableStep, PerformedStep
from .json_columns import loads
from .where import Where

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


# -- orders ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderStep:
    """A scheduled step as the order views show it."""

    sps_id: str
    status: str
    modality: str
    station_ae_title: str          # "" for a step without a station
    start_datetime: str
    accession_number: str


@dataclass(frozen=True)
class OrderOverview:
    """One line of ``swf orders``: the order, its patient and what its steps add up to."""

    placer_order_number: str
    filler_order_number: str
    updated_at: str
    patient_id: str
    patient_name: str
    status: str                    # derived from the steps (SWF.md 4.1)
    accessions: tuple[str, ...]
    modalities: tuple[str, ...]
    stations: tuple[str, ...]
    steps_without_station: int
    id: int                        # the order's row id (the API's paging cursor)


@dataclass(frozen=True)
class OrderProcedure:
    requested_procedure_id: str
    accession_number: str
    study_instance_uid: str


@dataclass(frozen=True)
class HistoryEntry:
    """A change of a patient or an order."""

    at: str
    kind: str
    detail: str


@dataclass(frozen=True)
class OrderHistoryEntry(HistoryEntry):
    """A change of the order, with the message that caused it (when one did)."""

    journal_ref: int | None
    control_id: str
    message_code: str
    ack_code: str


@dataclass(frozen=True)
class OrderDetail:
    placer_order_number: str
    filler_order_number: str
    deployment_mode: str
    sending_application: str
    outbound: tuple[str, ...]      # the destinations its status / procedure messages go to
    patient_id: str
    issuer: str
    patient_name: str
    status: str
    procedures: tuple[OrderProcedure, ...]
    steps: tuple[OrderStep, ...]
    history: tuple[OrderHistoryEntry, ...]
    outbox: dict[str, dict[str, int]]   # {destination: {status: count}} of the messages made for it
    id: int                             # the order's row id


def _order_steps(txn: Transaction, order_ref: int) -> tuple[OrderStep, ...]:
    return tuple(OrderStep(*row) for row in txn.rows(
        "SELECT s.sps_id, s.status, s.modality, s.station_ae_title, s.start_datetime, r.accession_number"
        " FROM scheduled_steps s JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
        " WHERE r.order_ref = ? ORDER BY s.id", (order_ref,)))


def _status_of(steps: tuple[OrderStep, ...]) -> str:
    return order_status([StepStatus(step.status) for step in steps])


def order_overviews(txn: Transaction, rows: list[tuple]) -> list[OrderOverview]:
    """Overviews of order rows (id, placer, filler, updated_at, patient_id, patient attributes), in their order."""
    listed = []
    for order_ref, placer, filler, updated_at, patient_id, attributes in rows:
        steps = _order_steps(txn, order_ref)
        listed.append(OrderOverview(
            placer, filler, updated_at, patient_id, loads(attributes).get("PatientName", ""), _status_of(steps),
            accessions=tuple(sorted({step.accession_number for step in steps})),
            modalities=tuple(sorted({step.modality for step in steps if step.modality})),
            stations=tuple(sorted({step.station_ae_title for step in steps if step.station_ae_title})),
            steps_without_station=sum(1 for step in steps if not step.station_ae_title), id=order_ref))
    return listed


def order_list(txn: Transaction, limit: int) -> list[OrderOverview]:
    """The latest orders, newest first."""
    return order_overviews(txn, txn.rows(
        "SELECT o.id, o.placer_order_number, o.filler_order_number, o.updated_at, p.patient_id, p.attributes"
        " FROM orders o JOIN patients p ON p.id = o.patient_ref ORDER BY o.id DESC LIMIT ?", (limit,)))


def _order_ref(txn: Transaction, accession_or_number: str) -> int | None:
    """The order with this accession number, else the latest with this filler, else placer order number."""
    if not accession_or_number:
        return None
    row = (txn.row("SELECT order_ref FROM requested_procedures WHERE accession_number = ? ORDER BY id DESC LIMIT 1",
                   (accession_or_number,))
           or txn.row("SELECT id FROM orders WHERE filler_order_number = ? OR placer_order_number = ?"
                      " ORDER BY filler_order_number = ? DESC, id DESC LIMIT 1",
                      (accession_or_number, accession_or_number, accession_or_number)))
    return None if row is None else row[0]


def _outbox_counts(txn: Transaction, order_ref: int) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for destination, status, count in txn.rows(
            "SELECT o.destination, o.status, COUNT(*) FROM outbox o JOIN events e ON e.id = o.event_ref"
            " WHERE e.order_ref = ? GROUP BY o.destination, o.status", (order_ref,)):
        counts.setdefault(destination, {})[status] = count
    return counts


def _order_history(txn: Transaction, order_ref: int) -> tuple[OrderHistoryEntry, ...]:
    return tuple(OrderHistoryEntry(at, kind, detail, journal_ref, control_id or "", code or "", ack or "")
                 for at, kind, detail, journal_ref, control_id, code, ack in txn.rows(
                     "SELECT h.at, h.kind, h.detail, h.journal_ref, j.control_id, j.message_code, j.ack_code"
                     " FROM order_history h LEFT JOIN journal j ON j.id = h.journal_ref WHERE h.order_ref = ?"
                     " ORDER BY h.id", (order_ref,)))


def order_detail(txn: Transaction, accession_or_number: str) -> OrderDetail | None:
    """One order found by accession number, placer or filler order number, with its full history."""
    order_ref = _order_ref(txn, accession_or_number)
    if order_ref is None:
        return None
    row = txn.row(
        "SELECT o.placer_order_number, o.filler_order_number, o.deployment_mode, o.sending_application, o.outbound,"
        " p.patient_id, p.issuer, p.attributes FROM orders o JOIN patients p ON p.id = o.patient_ref WHERE o.id = ?",
        (order_ref,))
    assert row is not None
    placer, filler, mode, sending_application, outbound, patient_id, issuer, attributes = row
    steps = _order_steps(txn, order_ref)
    return OrderDetail(
        placer, filler, mode, sending_application, tuple((outbound or "").split()), patient_id, issuer,
        loads(attributes).get("PatientName", ""), _status_of(steps),
        procedures=tuple(OrderProcedure(*row) for row in txn.rows(
            "SELECT requested_procedure_id, accession_number, study_instance_uid FROM requested_procedures"
            " WHERE order_ref = ? ORDER BY id", (order_ref,))),
        steps=steps,
        history=_order_history(txn, order_ref),
        outbox=_outbox_counts(txn, order_ref), id=order_ref)


# -- patients ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientKey:
    patient_id: str
    issuer: str


@dataclass(frozen=True)
class PatientIdentifier(PatientKey):
    """An identifier the patient is also known by (PID-3 repetitions, IDs of merged patients)."""

    identifier_type: str
    source: str                    # "pid", or "merged" for one taken over from a merged patient


@dataclass(frozen=True)
class Visit:
    visit_number: str
    patient_class: str
    location: str
    status: str


@dataclass(frozen=True)
class PatientDetail:
    patient: PatientKey
    attributes: dict[str, Any]     # the demographics as mapped from PID (PatientName, PatientBirthDate ...)
    merged_into: PatientKey | None
    merged_from: tuple[PatientKey, ...]
    identifiers: tuple[PatientIdentifier, ...]
    visits: tuple[Visit, ...]
    orders: int
    history: tuple[HistoryEntry, ...]


_PATIENT_COLUMNS = "p.id, p.patient_id, p.issuer, p.attributes, m.patient_id, m.issuer"
_PATIENT_FROM = "FROM patients p LEFT JOIN patients m ON m.id = p.merged_into"


def patient_detail(txn: Transaction, patient_id: str, issuer: str | None) -> list[PatientDetail]:
    """Patients with this ID (any issuer unless given; else those holding it as another identifier),
    with identifiers, visits, merges and history."""
    if issuer is None:
        rows = (txn.rows(f"SELECT {_PATIENT_COLUMNS} {_PATIENT_FROM} WHERE p.patient_id = ? ORDER BY p.id",
                         (patient_id,))
                or txn.rows(f"SELECT {_PATIENT_COLUMNS} {_PATIENT_FROM} JOIN patient_identifiers i"
                            " ON i.patient_ref = p.id WHERE i.patient_id = ? ORDER BY p.id", (patient_id,)))
    else:
        rows = txn.rows(f"SELECT {_PATIENT_COLUMNS} {_PATIENT_FROM} WHERE p.patient_id = ? AND p.issuer = ?",
                        (patient_id, issuer))
    return [PatientDetail(
        PatientKey(found_id, found_issuer), loads(attributes),
        None if survivor_id is None else PatientKey(survivor_id, survivor_issuer),
        merged_from=tuple(PatientKey(*row) for row in txn.rows(
            "SELECT patient_id, issuer FROM patients WHERE merged_into = ? ORDER BY id", (patient_ref,))),
        identifiers=tuple(PatientIdentifier(*row) for row in txn.rows(
            "SELECT patient_id, issuer, identifier_type, source FROM patient_identifiers WHERE patient_ref = ?"
            " ORDER BY id", (patient_ref,))),
        visits=tuple(Visit(*row) for row in txn.rows(
            "SELECT visit_number, patient_class, location, status FROM visits WHERE patient_ref = ? ORDER BY id",
            (patient_ref,))),
        orders=txn.rows("SELECT COUNT(*) FROM orders WHERE patient_ref = ?", (patient_ref,))[0][0],
        history=tuple(HistoryEntry(*row) for row in txn.rows(
            "SELECT at, kind, detail FROM patient_history WHERE patient_ref = ? ORDER BY id", (patient_ref,))))
        for patient_ref, found_id, found_issuer, attributes, survivor_id, survivor_issuer in rows]


# -- journal -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JournalHead:
    """What every view of a journaled message begins with: which message, from whom, what became of it."""

    id: int
    received_at: str
    peer: str
    control_id: str
    message_code: str
    status: str


@dataclass(frozen=True)
class JournalEntry(JournalHead):
    """A received HL7 message as journaled: who sent it, what became of it, the ACK code and why."""

    ack_code: str
    reason: str


@dataclass(frozen=True)
class JournalMessage(JournalEntry):
    """A journal entry with the bytes received and answered."""

    raw: bytes
    ack: bytes | None


_JOURNAL_COLUMNS = "id, received_at, peer, control_id, message_code, status, ack_code, reason"


def journal_list(txn: Transaction, status: str | None, limit: int) -> list[JournalEntry]:
    """The latest entries, newest first; only those with ``status`` when given."""
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    return [JournalEntry(*row) for row in txn.rows(
        f"SELECT {_JOURNAL_COLUMNS} FROM journal {where} ORDER BY id DESC LIMIT ?", [*params, limit])]


def journal_entry(txn: Transaction, journal_id: int) -> JournalMessage | None:
    row = txn.row(f"SELECT {_JOURNAL_COLUMNS}, raw, ack FROM journal WHERE id = ?", (journal_id,))
    if row is None:
        return None
    *head, raw, ack = row
    return JournalMessage(*head, bytes(raw), None if ack is None else bytes(ack))


# -- storage commitment ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommitmentOverview:
    """One line of ``swf commitments``: a request with its reference and failure counts."""

    id: int
    transaction_uid: str
    calling_ae_title: str
    requested_at: str
    status: str
    attempts: int
    last_error: str
    references: int
    failed: int | None             # None before a result was reached


@dataclass(frozen=True)
class ReferenceOutcome:
    """One instance a commitment request named, and what became of it."""

    sop_instance_uid: str
    sop_class_uid: str
    outcome: int | None            # None: not decided yet; 0: committed; else the Failure Reason
    why: str
    accession_number: str          # of the order the stored instance is linked to, "" when none


@dataclass(frozen=True)
class CommitmentDetail:
    id: int
    transaction_uid: str
    calling_ae_title: str
    peer: str                      # the requester's address, "" when not known
    requested_at: str
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str
    duplicate_of: int | None       # the active request with the same Transaction UID, for a duplicate
    result: dict[str, Any]         # {"event_type", "committed": [...], "failed": [...]}; {} before a result
    references: tuple[ReferenceOutcome, ...]


def commitment_list(txn: Transaction, status: str | None, limit: int,
                    before_id: int | None = None) -> list[CommitmentOverview]:
    """The latest storage commitment requests, newest first; only those with ``status`` when given
    (``before_id``: the page after the one that ended there)."""
    where = Where()
    where.when("status = ?", status)
    where.when("id < ?", before_id)
    listed = []
    for *head, request, result in txn.rows(
            "SELECT id, transaction_uid, calling_ae_title, requested_at, status, attempts, last_error, request, result"
            f" FROM commitments{where.clause} ORDER BY id DESC LIMIT ?", [*where.params, limit]):
        outcome = loads(result)
        listed.append(CommitmentOverview(*head, len(loads(request).get("references", [])),
                                         len(outcome.get("failed", [])) if outcome else None))
    return listed


def _reference_outcome(txn: Transaction, reference: dict[str, Any], outcomes: dict[str, dict[str, Any]]) -> \
        ReferenceOutcome:
    uid = reference["sop_instance_uid"]
    outcome = outcomes.get(uid)
    linked = txn.row("SELECT r.accession_number FROM instances i LEFT JOIN requested_procedures r"
                     " ON r.id = i.requested_procedure_ref WHERE i.sop_instance_uid = ?", (uid,))
    return ReferenceOutcome(uid, reference["sop_class_uid"],
                            None if outcome is None else outcome.get("failure_reason", 0),
                            (outcome or {}).get("why", ""), (linked or ("",))[0] or "")


def commitment_detail(txn: Transaction, transaction_uid: str) -> list[CommitmentDetail]:
    """Every request made with this Transaction UID (a duplicate is its own request), oldest first, with
    each reference's outcome and the accessions its instances are linked to."""
    details = []
    for (id, uid, calling_ae_title, requested_at, status, attempts, next_attempt_at, last_error, request_text,
         result_text) in txn.rows(
            "SELECT id, transaction_uid, calling_ae_title, requested_at, status, attempts, next_attempt_at, last_error,"
            " request, result FROM commitments WHERE transaction_uid = ? ORDER BY id", (transaction_uid,)):
        request, result = loads(request_text), loads(result_text)
        outcomes = {entry["sop_instance_uid"]: entry
                    for entry in result.get("committed", []) + result.get("failed", [])}
        details.append(CommitmentDetail(
            id, uid, calling_ae_title, request.get("peer") or "", requested_at, status, attempts, next_attempt_at,
            last_error, request.get("duplicate_of"), result,
            tuple(_reference_outcome(txn, reference, outcomes) for reference in request.get("references", []))))
    return details


# -- performed procedure steps (MPPS) ----------------------------------------------------------------
@dataclass(frozen=True)
class PerformedStepOverview:
    """One line of ``swf mpps``."""

    sop_instance_uid: str
    status: str
    pps_id: str
    performed_station_ae_title: str
    unscheduled: bool
    updated_at: str
    accessions: tuple[str, ...]    # of the scheduled steps it is linked to
    id: int                        # the performed step's row id (the API's paging cursor)


@dataclass(frozen=True)
class MppsSummary:
    """The attributes an operator looks at first, read from a stored MPPS dataset."""

    patient_id: str
    patient_name: str
    modality: str
    description: str
    start: str                     # "YYYYMMDD HHMMSS", as much of it as was sent
    end: str
    series: int
    images: int
    reason: str                    # the discontinuation reasons: "code meaning; ..."
    dataset: "Dataset"


@dataclass(frozen=True)
class PerformedStepVersionEntry:
    at: str
    operation: str                 # "N-CREATE" or "N-SET"
    status: str


@dataclass(frozen=True)
class PerformedStepDetail:
    step: PerformedStep
    linked_steps: tuple[LinkableStep, ...]
    versions: tuple[PerformedStepVersionEntry, ...]
    summary: MppsSummary


def performed_step_overviews(txn: Transaction, rows: list[tuple]) -> list[PerformedStepOverview]:
    """Overviews of performed step rows (id, uid, status, PPS ID, station, unscheduled, updated_at), in order."""
    return [PerformedStepOverview(uid, status, pps_id, station, bool(unscheduled), updated_at, tuple(sorted(
                {step.accession_number for step in performed_steps.linked_steps(txn, performed_ref)})),
                id=performed_ref)
            for performed_ref, uid, status, pps_id, station, unscheduled, updated_at in rows]


def performed_step_list(txn: Transaction, limit: int, unscheduled_only: bool = False) -> list[PerformedStepOverview]:
    """The latest performed steps, newest first, each with the accessions it is linked to."""
    where = "WHERE unscheduled = 1" if unscheduled_only else ""
    return performed_step_overviews(txn, txn.rows(
        "SELECT id, sop_instance_uid, status, pps_id, performed_station_ae_title, unscheduled, updated_at"
        f" FROM performed_steps {where} ORDER BY id DESC LIMIT ?", (limit,)))


def mpps_summary(data: bytes) -> MppsSummary:
    """The summary of a stored MPPS dataset (Part 10 bytes)."""
    ds = performed_steps.decode_dataset(data)

    def text(keyword: str) -> str:
        return str(ds.get(keyword) or "")

    series = ds.get("PerformedSeriesSequence") or []
    reasons = ds.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
    return MppsSummary(
        text("PatientID"), text("PatientName"), text("Modality"), text("PerformedProcedureStepDescription"),
        f"{text('PerformedProcedureStepStartDate')} {text('PerformedProcedureStepStartTime')}".strip(),
        f"{text('PerformedProcedureStepEndDate')} {text('PerformedProcedureStepEndTime')}".strip(),
        len(series), sum(len(item.get("ReferencedImageSequence") or []) for item in series),
        "; ".join(f"{item.get('CodeValue', '')} {item.get('CodeMeaning', '')}".strip() for item in reasons), ds)


def performed_step_detail(txn: Transaction, uid_or_pps_id: str) -> PerformedStepDetail | None:
    """One performed step by SOP Instance UID (else the latest with this PPS ID), with links and versions."""
    step = performed_steps.by_uid_or_pps_id(txn, uid_or_pps_id)
    if step is None:
        return None
    return PerformedStepDetail(
        step, tuple(performed_steps.linked_steps(txn, step.id)),
        tuple(PerformedStepVersionEntry(*row) for row in txn.rows(
            "SELECT at, operation, status FROM performed_step_versions WHERE performed_step_ref = ? ORDER BY id",
            (step.id,))),
        mpps_summary(step.dataset))


# -- delivery queues ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxEntry:
    """An outbound HL7 message as the queue holds it."""

    id: int
    destination: str
    kind: str
    control_id: str
    accession_number: str
    status: str                    # pending, delivered, dead, discarded
    attempts: int
    last_error: str


@dataclass(frozen=True)
class ForwardEntry:
    """A DICOM forward (an instance's C-STORE, an MPPS N-CREATE / N-SET) as the queue holds it."""

    id: int
    destination: str
    kind: str
    sop_instance_uid: str
    status: str                    # pending, delivered, dead
    attempts: int
    last_error: str


def _queue_filter(status: str | None) -> tuple[str, list[str]]:
    return ("", []) if status is None else ("WHERE status = ?", [status])


def outbox_list(txn: Transaction, status: str | None, limit: int) -> list[OutboxEntry]:
    """Outbox messages with ``status`` (every one when None), oldest first."""
    where, params = _queue_filter(status)
    return [OutboxEntry(*row) for row in txn.rows(
        "SELECT id, destination, kind, control_id, accession_number, status, attempts, last_error"
        f" FROM outbox {where} ORDER BY id LIMIT ?", [*params, limit])]


def forward_list(txn: Transaction, status: str | None, limit: int) -> list[ForwardEntry]:
    """DICOM forwards with ``status`` (every one when None), oldest first."""
    where, params = _queue_filter(status)
    return [ForwardEntry(*row) for row in txn.rows(
        "SELECT id, destination, kind, sop_instance_uid, status, attempts, last_error"
        f" FROM dicom_forwards {where} ORDER BY id LIMIT ?", [*params, limit])]
