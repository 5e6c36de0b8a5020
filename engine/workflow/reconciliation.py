"""IHE Patient Information Reconciliation (RAD-12) on what the engine stored as Image Manager.

An ADT A08 (update) or A40 (merge) changes who the stored instances belong to.  Their files stay as
received; the index takes the surviving patient's ID, issuer and demographics in the transaction of
the ADT message, so Q/R C-FIND matches and answers with them, and each instance keeps them as its
``corrections``, which a C-MOVE / C-GET applies over the file it sends.  The patient's history says
which instances of which studies were reconciled.  An instance stored later under a merged patient's
ID is reconciled as it is indexed.
"""
from __future__ import annotations

import logging
from typing import Any

from ..domain.matching_keys import normalise_name
from ..store import instances as indexed
from ..store import patients
from ..store.database import Transaction

log = logging.getLogger(__name__)

DEMOGRAPHICS = ("PatientName", "PatientBirthDate", "PatientSex")
# Corrected keywords kept as index columns (the others go to the ``attributes`` JSON).
INDEX_COLUMNS = ("PatientID", "AccessionNumber")


def _issuer_fits(instance: indexed.CorrectableInstance, issuer: str) -> bool:
    """An instance without an Issuer of Patient ID belongs to the patient ID of any issuer."""
    stored = str(instance.attributes.get("IssuerOfPatientID") or "")
    return not stored or not issuer or stored == issuer


def patient_keys(survivor: patients.Patient) -> dict[str, Any]:
    """The attributes the survivor's instances carry: its ID, and its issuer and demographics when known."""
    keys: dict[str, Any] = {"PatientID": survivor.patient_id}
    if survivor.issuer:
        keys["IssuerOfPatientID"] = survivor.issuer
    keys.update({k: survivor.attributes[k] for k in DEMOGRAPHICS if survivor.attributes.get(k)})
    return keys


def _current(instance: indexed.CorrectableInstance) -> dict[str, Any]:
    return {**instance.attributes, "PatientID": instance.patient_id, "AccessionNumber": instance.accession_number}


def correct(txn: Transaction, instance: indexed.CorrectableInstance, wanted: dict[str, Any],
            requested_procedure_ref: int | None = None) -> bool:
    """Index ``wanted`` (keyword -> value) for the instance, so Q/R matches and answers with it, and keep
    it among the corrections a retrieve applies over the file; whether anything changed."""
    if all(_current(instance).get(k) == v for k, v in wanted.items()) and requested_procedure_ref is None:
        return False
    attributes = {**instance.attributes, **{k: v for k, v in wanted.items() if k not in INDEX_COLUMNS}}
    name_norm = normalise_name(str(attributes.get("PatientName", ""))).rstrip("^")
    indexed.set_corrected(txn, instance.id, str(wanted.get("PatientID", instance.patient_id)), name_norm,
                          str(wanted.get("AccessionNumber", instance.accession_number)), attributes,
                          {**instance.corrections, **wanted}, requested_procedure_ref)
    return True


def reapply(txn: Transaction, instance_ref: int) -> None:
    """A copy that replaced an indexed instance (duplicate policy ``overwrite``) keeps its corrections."""
    instance = indexed.by_ref_correctable(txn, instance_ref)
    if instance is not None and instance.corrections:
        correct(txn, instance, instance.corrections)


def reconcile(txn: Transaction, patient_id: str, issuer: str, survivor: patients.Patient, cause: str,
              journal_ref: int | None) -> int:
    """Give the instances stored under ``patient_id`` (of ``issuer``, or of none) the survivor's ID,
    issuer and demographics; how many changed.  Instances already carrying them are left alone."""
    wanted = patient_keys(survivor)
    studies: set[str] = set()
    changed = 0
    for instance in indexed.of_patient_id(txn, patient_id):
        if _issuer_fits(instance, issuer) and correct(txn, instance, wanted):
            studies.add(instance.study_instance_uid)
            changed += 1
    if changed:
        was = f" (stored as {patient_id})" if patient_id != survivor.patient_id else ""
        detail = (f"{cause}: {changed} stored instance(s) of study {', '.join(sorted(studies))} now carry "
                  f"{survivor.patient_id}^{survivor.issuer}{was}")
        patients.add_history(txn, survivor.id, "instances reconciled", detail, journal_ref)
        log.info("patient %s^%s: %s", survivor.patient_id, survivor.issuer, detail)
    return changed


def _survivor_of(txn: Transaction, merged: patients.Patient) -> patients.Patient | None:
    """The patient a merged one ended in, through merges of merges."""
    patient: patients.Patient | None = merged
    seen: set[int] = set()
    while patient is not None and patient.merged_into is not None and patient.id not in seen:
        seen.add(patient.id)
        patient = patients.by_ref(txn, patient.merged_into)
    return patient if patient is not None and patient.merged_into is None else None


def reconcile_arrival(txn: Transaction, patient_id: str, issuer: str) -> int:
    """An instance just indexed under the ID of a merged patient takes the survivor's (A40 before the
    images came); how many instances changed."""
    changed = 0
    for merged in patients.merged_with_id(txn, patient_id):
        if issuer and merged.issuer and merged.issuer != issuer:
            continue
        survivor = _survivor_of(txn, merged)
        if survivor is not None:
            changed += reconcile(txn, patient_id, merged.issuer, survivor,
                                 f"stored after {merged.patient_id}^{merged.issuer} was merged", None)
    return changed
