"""Read-only views of the engine's data for the CLI: orders with their history, patients, journal."""
from __future__ import annotations

from typing import Any

from .domain.status import StepStatus, order_status
from .store import performed_steps
from .store import repository as repo
from .store.database import Transaction


def order_list(txn: Transaction, limit: int) -> list[dict[str, Any]]:
    rows = txn.query(
        "SELECT o.id, o.placer_order_number, o.filler_order_number, o.deployment_mode, o.updated_at,"
        " p.patient_id, p.issuer, p.attributes AS patient_attributes FROM orders o JOIN patients p ON p.id = o.patient_ref"
        " ORDER BY o.id DESC LIMIT ?", (limit,))
    for row in rows:
        steps = repo.steps_of_order(txn, row["id"])
        row["status"] = order_status([StepStatus(s["status"]) for s in steps])
        row["accessions"] = sorted({s["accession_number"] for s in steps})
        row["modalities"] = sorted({s["modality"] for s in steps if s["modality"]})
        row["stations"] = sorted({s["station_ae_title"] for s in steps if s["station_ae_title"]})
        row["steps_without_station"] = sum(1 for s in steps if not s["station_ae_title"])
        row["patient_name"] = repo.loads(row.pop("patient_attributes")).get("PatientName", "")
    return rows


def station_label(station_ae_title: str, default_station: str) -> str:
    """A step's station as ``swf orders`` shows it: a step without one is marked, never a blank column."""
    if station_ae_title:
        return station_ae_title
    return f"no station (offered as {default_station})" if default_station else "no station"


def order_detail(txn: Transaction, accession_or_number: str) -> dict[str, Any] | None:
    """One order found by accession number, placer or filler order number, with its full history."""
    procedure = txn.one("SELECT order_ref FROM requested_procedures WHERE accession_number = ? ORDER BY id DESC LIMIT 1",
                        (accession_or_number,))
    order_ref = procedure["order_ref"] if procedure else None
    if order_ref is None:
        order = repo.find_order(txn, accession_or_number, accession_or_number)
        order_ref = order["id"] if order else None
    if order_ref is None:
        return None
    order = txn.one("SELECT * FROM orders WHERE id = ?", (order_ref,))
    assert order is not None
    patient = repo.patient_by_ref(txn, order["patient_ref"])
    steps = repo.steps_of_order(txn, order_ref)
    history = txn.query(
        "SELECT h.at, h.kind, h.detail, h.journal_ref, j.control_id, j.message_code, j.ack_code FROM order_history h"
        " LEFT JOIN journal j ON j.id = h.journal_ref WHERE h.order_ref = ? ORDER BY h.id", (order_ref,))
    return {
        "order": order,
        "patient": patient,
        "status": order_status([StepStatus(s["status"]) for s in steps]),
        "procedures": repo.procedures_of(txn, order_ref),
        "steps": steps,
        "history": history,
        "outbox": repo.outbox_counts_of_order(txn, order_ref),
    }


def patient_detail(txn: Transaction, patient_id: str, issuer: str | None) -> list[dict[str, Any]]:
    """Patients with this ID (any issuer unless given), with identifiers, visits, merges and history."""
    if issuer is None:
        rows = txn.query("SELECT * FROM patients WHERE patient_id = ? ORDER BY id", (patient_id,))
        if not rows:
            rows = txn.query("SELECT p.* FROM patients p JOIN patient_identifiers i ON i.patient_ref = p.id"
                             " WHERE i.patient_id = ? ORDER BY p.id", (patient_id,))
    else:
        rows = txn.query("SELECT * FROM patients WHERE patient_id = ? AND issuer = ?", (patient_id, issuer))
    details = []
    for row in rows:
        details.append({
            "patient": row,
            "attributes": repo.loads(row["attributes"]),
            "identifiers": repo.identifiers_of(txn, row["id"]),
            "merged_from": txn.query("SELECT patient_id, issuer FROM patients WHERE merged_into = ?", (row["id"],)),
            "merged_into": repo.patient_by_ref(txn, row["merged_into"]) if row["merged_into"] else None,
            "visits": txn.query("SELECT visit_number, patient_class, location, status, updated_at FROM visits"
                                " WHERE patient_ref = ? ORDER BY id", (row["id"],)),
            "orders": txn.query("SELECT id, placer_order_number, filler_order_number FROM orders WHERE patient_ref = ?"
                                " ORDER BY id", (row["id"],)),
            "history": txn.query("SELECT at, kind, detail, journal_ref FROM patient_history WHERE patient_ref = ?"
                                 " ORDER BY id", (row["id"],)),
        })
    return details


def journal_list(txn: Transaction, status: str | None, limit: int) -> list[dict[str, Any]]:
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    return txn.query(
        "SELECT id, received_at, peer, sending_application, control_id, message_code, status, ack_code, reason"
        f" FROM journal {where} ORDER BY id DESC LIMIT ?", [*params, limit])


def journal_entry(txn: Transaction, journal_id: int) -> dict[str, Any] | None:
    return txn.one("SELECT * FROM journal WHERE id = ?", (journal_id,))


# -- storage commitment (swf commitments) ------------------------------------------------------------
def commitment_list(txn: Transaction, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest storage commitment requests with their reference and failure counts."""
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    rows = txn.query(f"SELECT * FROM commitments {where} ORDER BY id DESC LIMIT ?", [*params, limit])
    for row in rows:
        request, result = repo.loads(row["request"]), repo.loads(row["result"])
        row["references"] = len(request.get("references", []))
        row["committed"] = len(result.get("committed", [])) if result else None
        row["failed"] = len(result.get("failed", [])) if result else None
    return rows


def commitment_detail(txn: Transaction, transaction_uid: str) -> list[dict[str, Any]]:
    """Every request made with this Transaction UID (a duplicate is its own request), oldest first, with
    each reference's outcome and the accessions its instances are linked to."""
    rows = txn.query("SELECT * FROM commitments WHERE transaction_uid = ? ORDER BY id", (transaction_uid,))
    for row in rows:
        request, result = repo.loads(row["request"]), repo.loads(row["result"])
        outcomes = {entry["sop_instance_uid"]: entry for entry in result.get("committed", []) + result.get("failed", [])}
        references = []
        for reference in request.get("references", []):
            outcome = outcomes.get(reference["sop_instance_uid"])
            instance = txn.one(
                "SELECT i.sop_class_uid, r.accession_number FROM instances i"
                " LEFT JOIN requested_procedures r ON r.id = i.requested_procedure_ref WHERE i.sop_instance_uid = ?",
                (reference["sop_instance_uid"],))
            references.append({**reference,
                               "outcome": None if outcome is None else outcome.get("failure_reason", 0),
                               "why": (outcome or {}).get("why", ""),
                               "accession_number": (instance or {}).get("accession_number") or ""})
        row["request"], row["result"], row["references"] = request, result, references
    return rows


# -- performed procedure steps (MPPS) -------------------------------------------------------------------
def _performed_step_links(txn: Transaction, performed_ref: int) -> list[dict[str, Any]]:
    return txn.query(
        "SELECT r.accession_number, r.requested_procedure_id, s.sps_id, s.status, s.modality, r.order_ref"
        " FROM performed_step_links l JOIN scheduled_steps s ON s.id = l.step_ref"
        " JOIN requested_procedures r ON r.id = s.requested_procedure_ref WHERE l.performed_step_ref = ?"
        " ORDER BY s.id", (performed_ref,))


def performed_step_list(txn: Transaction, limit: int, unscheduled_only: bool = False) -> list[dict[str, Any]]:
    """The latest performed steps (MPPS), each with the accessions and scheduled steps it is linked to."""
    where = "WHERE unscheduled = 1" if unscheduled_only else ""
    rows = txn.query(
        "SELECT id, sop_instance_uid, status, pps_id, performed_station_ae_title, calling_ae_title,"
        f" study_instance_uid, unscheduled, created_at, updated_at FROM performed_steps {where}"
        " ORDER BY id DESC LIMIT ?", (limit,))
    for row in rows:
        row["steps"] = _performed_step_links(txn, row["id"])
        row["accessions"] = sorted({step["accession_number"] for step in row["steps"]})
    return rows


def mpps_summary(dataset: bytes) -> dict[str, Any]:
    """The attributes an operator looks at first, read from a stored MPPS dataset (Part 10 bytes)."""
    ds = performed_steps.decode_dataset(dataset)

    def text(keyword: str) -> str:
        return str(ds.get(keyword) or "")

    series = ds.get("PerformedSeriesSequence") or []
    reasons = ds.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
    return {
        "PatientID": text("PatientID"),
        "PatientName": text("PatientName"),
        "Modality": text("Modality"),
        "Description": text("PerformedProcedureStepDescription"),
        "Start": f"{text('PerformedProcedureStepStartDate')} {text('PerformedProcedureStepStartTime')}".strip(),
        "End": f"{text('PerformedProcedureStepEndDate')} {text('PerformedProcedureStepEndTime')}".strip(),
        "Series": len(series),
        "Images": sum(len(item.get("ReferencedImageSequence") or []) for item in series),
        "Reason": "; ".join(f"{item.get('CodeValue', '')} {item.get('CodeMeaning', '')}".strip() for item in reasons),
        "Dataset": ds,
    }


def performed_step_detail(txn: Transaction, uid_or_pps_id: str) -> dict[str, Any] | None:
    """One performed step by SOP Instance UID (else the latest with this PPS ID), with links and versions."""
    row = txn.one("SELECT * FROM performed_steps WHERE sop_instance_uid = ?", (uid_or_pps_id,))
    if row is None:
        row = txn.one("SELECT * FROM performed_steps WHERE pps_id = ? ORDER BY id DESC LIMIT 1", (uid_or_pps_id,))
    if row is None:
        return None
    return {
        "step": row,
        "steps": _performed_step_links(txn, row["id"]),
        "versions": txn.query("SELECT at, operation, status FROM performed_step_versions WHERE performed_step_ref = ?"
                              " ORDER BY id", (row["id"],)),
        "summary": mpps_summary(row["dataset"]),
    }


def outbox_list(txn: Transaction, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Outbox messages: pending by default, or those with ``status`` (dead, delivered, discarded, all)."""
    where, params = ("", []) if status == "all" else ("WHERE status = ?", [status or "pending"])
    return txn.query(
        "SELECT id, destination, created_at, kind, control_id, accession_number, status, attempts, rejections,"
        f" next_attempt_at, last_error, delivered_at FROM outbox {where} ORDER BY id LIMIT ?", [*params, limit])
