"""SQL of ``swf explain``: one scheduled step as stored, with its order's and patient's journaled messages
and the operator's changes, so engine/workflow/explain.py can re-derive each worklist value and say
where it came from.  Read-only; JSON columns decoded here, once."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .database import Transaction


def _decoded(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


@dataclass(frozen=True)
class StoredStep:
    """A scheduled step with its requested procedure, order and patient, as the worklist serves it."""

    sps_id: str
    status: str
    station_ae_title: str
    station_name: str
    location: str
    modality: str
    step_attributes: dict[str, Any]
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    procedure_attributes: dict[str, Any]
    placer_order_number: str
    filler_order_number: str
    patient_id: str
    issuer: str
    patient_attributes: dict[str, Any]
    order_ref: int
    patient_ref: int
    other_sps_ids: tuple[str, ...]     # the other steps of this accession (``--step`` picks one)


@dataclass(frozen=True)
class JournaledMessage:
    """An applied message that changed the step's order or patient, with what was received."""

    id: int
    received_at: str
    control_id: str
    message_code: str
    rule: str                          # the names of the rules that matched at ingest
    raw: bytes


@dataclass(frozen=True)
class OperatorChange:
    """An order history entry no message caused (``swf cancel``/``swf reschedule``)."""

    at: str
    kind: str
    detail: str


_STEP = ("SELECT s.sps_id, s.status, s.station_ae_title, s.station_name, s.location, s.modality, s.attributes,"
         " r.accession_number, r.requested_procedure_id, r.study_instance_uid, r.attributes,"
         " o.placer_order_number, o.filler_order_number, p.patient_id, p.issuer, p.attributes, o.id, p.id, r.id"
         " FROM scheduled_steps s JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
         " JOIN orders o ON o.id = r.order_ref JOIN patients p ON p.id = o.patient_ref")


def stored_step(txn: Transaction, accession_number: str, sps_id: str | None) -> StoredStep | None:
    """The step of the newest requested procedure with this accession number (its first step unless
    ``sps_id`` names one), or None."""
    where, params = " WHERE r.accession_number = ?", [accession_number]
    if sps_id:
        where, params = where + " AND s.sps_id = ?", [*params, sps_id]
    row = txn.row(f"{_STEP}{where} ORDER BY r.id DESC, s.id LIMIT 1", params)
    if row is None:
        return None
    (sps, status, station, station_name, location, modality, step_attributes, accession, rp_id, study_uid,
     procedure_attributes, placer, filler, patient_id, issuer, patient_attributes, order_ref, patient_ref,
     procedure_ref) = row
    others = tuple(other for other, in txn.rows(
        "SELECT sps_id FROM scheduled_steps WHERE requested_procedure_ref = ? AND sps_id <> ? ORDER BY id",
        (procedure_ref, sps)))
    return StoredStep(sps, status, station, station_name, location, modality, _decoded(step_attributes), accession,
                      rp_id, study_uid, _decoded(procedure_attributes), placer, filler, patient_id, issuer,
                      _decoded(patient_attributes), order_ref, patient_ref, others)


def step_messages(txn: Transaction, step: StoredStep) -> list[JournaledMessage]:
    """The applied messages the order's and the patient's history name, oldest first."""
    return [JournaledMessage(id, received_at, control_id, message_code, rule, bytes(raw))
            for id, received_at, control_id, message_code, rule, raw in txn.rows(
                "SELECT id, received_at, control_id, message_code, rule, raw FROM journal WHERE status = 'applied'"
                " AND id IN (SELECT journal_ref FROM order_history WHERE order_ref = ?"
                " UNION SELECT journal_ref FROM patient_history WHERE patient_ref = ?) ORDER BY id",
                (step.order_ref, step.patient_ref))]


def operator_changes(txn: Transaction, step: StoredStep) -> list[OperatorChange]:
    """The order's history entries no message caused, oldest first."""
    return [OperatorChange(*row) for row in txn.rows(
        "SELECT at, kind, detail FROM order_history WHERE order_ref = ? AND journal_ref IS NULL ORDER BY id",
        (step.order_ref,))]
