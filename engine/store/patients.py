"""SQL of the patients (RAD-1 / RAD-12): demographics, identifiers, visits, merges and patient history.

Every function takes the transaction and returns frozen records; a patient's attributes (DICOM keyword
-> value) are decoded here, once, when its record is built.  The worklist matching columns (SWF.md 5.8)
are derived from the attributes on every write.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.matching_keys import normalise_name
from .database import Transaction
from .json_columns import dumps, loads
from .timestamps import now_iso


@dataclass(frozen=True, slots=True)
class Patient:
    id: int
    patient_id: str
    issuer: str
    merged_into: int | None      # the patient this one was merged into (A40), None while it stands
    attributes: dict[str, Any]   # demographics by DICOM keyword (PatientName, PatientBirthDate ...)


@dataclass(frozen=True, slots=True)
class Identifier:
    """One of the IDs a patient is known by (PID-3 repetitions, and those of patients merged into it)."""

    patient_id: str
    issuer: str
    identifier_type: str
    source: str                  # "pid" (named by a message) or "merged"


_PATIENT_SELECT = "SELECT id, patient_id, issuer, merged_into, attributes FROM patients"


def _patient(row: tuple | None) -> Patient | None:
    if row is None:
        return None
    id, patient_id, issuer, merged_into, attributes = row
    return Patient(id, patient_id, issuer, merged_into, loads(attributes))


def find(txn: Transaction, patient_id: str, issuer: str) -> Patient | None:
    """The patient of this ID and issuer as stored (a merged one too: ``merged_into`` says so)."""
    return _patient(txn.row(f"{_PATIENT_SELECT} WHERE patient_id = ? AND issuer = ?", (patient_id, issuer)))


def merged_with_id(txn: Transaction, patient_id: str) -> list[Patient]:
    """The merged patients (A40) known by this ID, of any issuer."""
    return [_patient(row) for row in txn.rows(  # type: ignore[misc]
        f"{_PATIENT_SELECT} WHERE patient_id = ? AND merged_into IS NOT NULL ORDER BY id", (patient_id,))]


def by_ref(txn: Transaction, patient_ref: int) -> Patient | None:
    return _patient(txn.row(f"{_PATIENT_SELECT} WHERE id = ?", (patient_ref,)))


def _match_columns(attributes: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """The worklist matching columns derived from a patient's attributes (SWF.md 5.8)."""
    return (normalise_name(attributes.get("PatientName", "")), attributes.get("PatientBirthDate", ""),
            attributes.get("PatientSex", ""), normalise_name(attributes.get("ReferringPhysicianName", "")),
            attributes.get("AdmissionID", ""))


def insert(txn: Transaction, patient_id: str, issuer: str, attributes: dict[str, Any]) -> int:
    """A new patient; a taken ID and issuer raises ``DuplicateKey``.  Returns its id."""
    stamp = now_iso()
    return txn.insert(
        "INSERT INTO patients (patient_id, issuer, name_norm, birth_date, sex, referring_physician_norm, admission_id,"
        " attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (patient_id, issuer, *_match_columns(attributes), dumps(attributes), stamp, stamp))


def update(txn: Transaction, patient_ref: int, attributes: dict[str, Any]) -> None:
    """Replace the patient's attributes (the caller merged the new demographics into them)."""
    txn.execute("UPDATE patients SET name_norm = ?, birth_date = ?, sex = ?, referring_physician_norm = ?,"
                " admission_id = ?, attributes = ?, updated_at = ? WHERE id = ?",
                (*_match_columns(attributes), dumps(attributes), now_iso(), patient_ref))


def add_identifier(txn: Transaction, patient_ref: int, patient_id: str, issuer: str, identifier_type: str,
                   source: str) -> None:
    """Record an ID the patient is known by; one it already has is left as it is."""
    txn.execute("INSERT INTO patient_identifiers (patient_ref, patient_id, issuer, identifier_type, source)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (patient_ref, patient_id, issuer) DO NOTHING",
                (patient_ref, patient_id, issuer, identifier_type, source))


def identifiers_of(txn: Transaction, patient_ref: int) -> list[Identifier]:
    return [Identifier(*row) for row in txn.rows(
        "SELECT patient_id, issuer, identifier_type, source FROM patient_identifiers WHERE patient_ref = ? ORDER BY id",
        (patient_ref,))]


def merge(txn: Transaction, prior_ref: int, survivor_ref: int) -> int:
    """Move orders, visits and identifiers of the prior patient to the survivor; returns orders moved.

    A visit number the survivor already has stays with the prior patient; patients merged into the
    prior one earlier now point at the survivor."""
    moved = txn.execute("UPDATE orders SET patient_ref = ? WHERE patient_ref = ?", (survivor_ref, prior_ref)).rowcount
    for identifier in identifiers_of(txn, prior_ref):
        add_identifier(txn, survivor_ref, identifier.patient_id, identifier.issuer, identifier.identifier_type,
                       "merged")
    txn.execute("DELETE FROM patient_identifiers WHERE patient_ref = ?", (prior_ref,))
    for visit_ref, visit_number in txn.rows("SELECT id, visit_number FROM visits WHERE patient_ref = ?", (prior_ref,)):
        if not txn.row("SELECT id FROM visits WHERE patient_ref = ? AND visit_number = ?",
                       (survivor_ref, visit_number)):
            txn.execute("UPDATE visits SET patient_ref = ? WHERE id = ?", (survivor_ref, visit_ref))
    txn.execute("UPDATE patients SET merged_into = ?, updated_at = ? WHERE id = ?", (survivor_ref, now_iso(), prior_ref))
    txn.execute("UPDATE patients SET merged_into = ? WHERE merged_into = ?", (survivor_ref, prior_ref))
    return moved


def upsert_visit(txn: Transaction, patient_ref: int, visit_number: str, patient_class: str, location: str,
                 status: str) -> None:
    row = txn.row("SELECT id FROM visits WHERE patient_ref = ? AND visit_number = ?", (patient_ref, visit_number))
    if row:
        txn.execute("UPDATE visits SET patient_class = ?, location = ?, status = ?, updated_at = ? WHERE id = ?",
                    (patient_class, location, status, now_iso(), row[0]))
    else:
        txn.execute("INSERT INTO visits (patient_ref, visit_number, patient_class, location, status, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (patient_ref, visit_number, patient_class, location, status, now_iso()))


def add_history(txn: Transaction, patient_ref: int, kind: str, detail: str, journal_ref: int | None) -> None:
    txn.execute("INSERT INTO patient_history (patient_ref, at, kind, detail, journal_ref) VALUES (?, ?, ?, ?, ?)",
                (patient_ref, now_iso(), kind, detail, journal_ref))
