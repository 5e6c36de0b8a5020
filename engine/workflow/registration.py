"""RAD-1 / RAD-12: patient registration, update, visit changes and merges."""
from __future__ import annotations

import logging

from ..domain.model import DomainEvent, PatientData, PatientIdentity, Problem, Rejection
from ..store import orders as order_store
from ..store import patients
from ..store.database import Transaction
from .reconciliation import reconcile

log = logging.getLogger(__name__)

CREATE_OR_UPDATE = {"A01", "A04", "A05", "A08", "A02", "A03", "A06", "A07", "A12", "A13"}
CANCEL_VISIT = {"A11", "A38"}
MERGE = {"A40", "A18", "A34"}
SUPPORTED_TRIGGERS = CREATE_OR_UPDATE | CANCEL_VISIT | MERGE
VISIT_STATUS = {"A05": "pre-admitted", "A03": "discharged", "A11": "cancelled", "A38": "cancelled",
                "A13": "active", "A12": "active"}


def resolve_patient(txn: Transaction, identity: PatientIdentity, strict_merged: bool) -> patients.Patient | None:
    """The patient of ``identity``, following merges to the surviving patient."""
    patient = patients.find(txn, identity.patient_id, identity.issuer)
    seen = set()
    while patient is not None and patient.merged_into is not None and patient.id not in seen:
        seen.add(patient.id)
        if strict_merged:
            raise Rejection(Problem.UNKNOWN_KEY, f"patient {identity.patient_id} was merged; use the surviving ID",
                            "PID-3")
        log.info("patient %s^%s was merged: using the surviving patient", identity.patient_id, identity.issuer)
        patient = patients.by_ref(txn, patient.merged_into)
    return patient


def upsert_patient(txn: Transaction, patient: PatientData, journal_ref: int | None, strict_merged: bool,
                   cause: str) -> int:
    """Create the patient or merge the new demographics into it; returns the patient's row id."""
    identity = patient.identity
    stored = resolve_patient(txn, identity, strict_merged)
    if stored is None:
        patient_ref = patients.insert(txn, identity.patient_id, identity.issuer, patient.attributes)
        patients.add_history(txn, patient_ref, "created", cause, journal_ref)
    else:
        patient_ref = stored.id
        known = stored.attributes
        changed = {k: v for k, v in patient.attributes.items() if known.get(k) != v}
        if changed:
            patients.update(txn, patient_ref, {**known, **changed})
            patients.add_history(txn, patient_ref, "updated", f"{cause}: {', '.join(sorted(changed))}", journal_ref)
    patients.add_identifier(txn, patient_ref, identity.patient_id, identity.issuer, identity.identifier_type, "pid")
    for other in patient.other_ids:
        patients.add_identifier(txn, patient_ref, other.patient_id, other.issuer, other.identifier_type, "pid")
    return patient_ref


def _reconcile_merge(txn: Transaction, trigger: str, prior: PatientIdentity, survivor: PatientIdentity,
                     survivor_ref: int, journal_ref: int | None) -> int:
    """IHE PIR: the instances stored for the prior patient, and the survivor's own, carry the survivor;
    how many of the prior patient's changed."""
    stored = patients.by_ref(txn, survivor_ref)
    assert stored is not None, "the survivor was ensured in this transaction"
    cause = f"ADT^{trigger} merge of {prior.patient_id}"
    moved = reconcile(txn, prior.patient_id, prior.issuer, stored, cause, journal_ref)
    reconcile(txn, survivor.patient_id, survivor.issuer, stored, cause, journal_ref)
    return moved


def register(txn: Transaction, trigger: str, patient: PatientData, prior: PatientIdentity | None,
             journal_ref: int | None, strict_merged: bool) -> list[DomainEvent]:
    """Apply one ADT message; ``prior`` is MRG-1 for merges."""
    if trigger not in SUPPORTED_TRIGGERS:
        raise Rejection(Problem.REFUSED, f"ADT trigger {trigger} not supported", "MSH-9.2", hard=True)
    # Patient events name the patient as ID^issuer; a merge's detail is the prior ID^issuer (MRG-1).
    subject = f"{patient.identity.patient_id}^{patient.identity.issuer}"
    if trigger in MERGE:
        if prior is None:
            raise Rejection(Problem.REQUIRED_MISSING, "MRG-1 Prior Patient Identifier List is empty", "MRG-1")
        survivor_ref = upsert_patient(txn, patient, journal_ref, strict_merged=False, cause=f"ADT^{trigger}")
        prior_patient = patients.find(txn, prior.patient_id, prior.issuer)
        if prior_patient is None:
            log.info("ADT^%s: prior patient %s unknown; survivor %s ensured", trigger, prior.patient_id, subject)
            patients.add_history(txn, survivor_ref, "merge", f"prior {prior.patient_id} unknown: no order moved",
                                 journal_ref)
            if _reconcile_merge(txn, trigger, prior, patient.identity, survivor_ref, journal_ref):
                # only its stored instances knew the prior patient (a temporary ID given at the modality):
                # it is kept as merged, so instances arriving later under its ID are reconciled too
                patients.merge(txn, patients.insert(txn, prior.patient_id, prior.issuer, {}), survivor_ref)
            return [DomainEvent("patient.merged", subject, f"{prior.patient_id}^{prior.issuer}")]
        if prior_patient.id == survivor_ref:
            return []
        moved = patients.merge(txn, prior_patient.id, survivor_ref)
        detail = f"{prior.patient_id}^{prior.issuer} merged into {subject}: {moved} order(s) moved"
        patients.add_history(txn, survivor_ref, "merge", detail, journal_ref)
        patients.add_history(txn, prior_patient.id, "merged", detail, journal_ref)
        for order_ref in order_store.refs_of_patient(txn, survivor_ref):
            order_store.add_history(txn, order_ref, "patient merged", detail, journal_ref)
        _reconcile_merge(txn, trigger, prior, patient.identity, survivor_ref, journal_ref)
        return [DomainEvent("patient.merged", subject, f"{prior.patient_id}^{prior.issuer}")]
    patient_ref = upsert_patient(txn, patient, journal_ref, strict_merged, cause=f"ADT^{trigger}")
    if patient.visit_number:
        status = VISIT_STATUS.get(trigger, "active")
        patients.upsert_visit(txn, patient_ref, patient.visit_number, patient.patient_class, patient.location, status)
        if trigger in CANCEL_VISIT:
            patients.add_history(txn, patient_ref, "visit cancelled", patient.visit_number, journal_ref)
    stored = patients.by_ref(txn, patient_ref)
    if stored is not None:
        reconcile(txn, patient.identity.patient_id, patient.identity.issuer, stored, f"ADT^{trigger}", journal_ref)
    return [DomainEvent("patient.updated" if trigger == "A08" else "patient.registered", subject, trigger)]
