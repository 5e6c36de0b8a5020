"""Read-only views of the engine's data for the CLI: orders with their history, patients, journal."""
from __future__ import annotations

from typing import Any

from .domain.status import StepStatus, order_status
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
        row["patient_name"] = repo.loads(row.pop("patient_attributes")).get("PatientName", "")
    return rows


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
