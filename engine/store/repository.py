"""SQL for the workflow: every statement the domain needs, in one place, for both database engines."""
from __future__ import annotations

import json
import time
from typing import Any

from ..domain.matching_keys import normalise_name
from .database import Transaction


_last_second: tuple[int, str, str] = (-1, "", "")   # (second, "YYYY-MM-DDTHH:MM:SS", "+HH:MM")
_last_stamp: tuple[int, str] = (-1, "")             # (millisecond, its stamp)


def now_iso() -> str:
    """Local time with offset, ms precision.  A message writes several rows within one millisecond,
    and a busy engine stamps hundreds each second: the stamp is built once per millisecond, its date,
    time and offset once per second.  (Each cache is read once: the reactor thread stamps too.)"""
    global _last_second, _last_stamp
    millis = int(time.time() * 1000)
    stamp = _last_stamp
    if stamp[0] == millis:
        return stamp[1]
    second = millis // 1000
    cached = _last_second
    if cached[0] != second:
        local = time.localtime(second)
        offset = local.tm_gmtoff // 60
        sign = "+" if offset >= 0 else "-"
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", local),
                                 f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}")
    text = f"{cached[1]}.{millis % 1000:03d}{cached[2]}"
    _last_stamp = (millis, text)
    return text


# One encoder for every row: ``json.dumps`` with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def dumps(value: dict[str, Any]) -> str:
    return _JSON.encode(value)


def loads(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


# -- journal --------------------------------------------------------------------------------
def journal_insert(txn: Transaction, *, received_at: str, peer: str, sending_application: str,
                   sending_facility: str, control_id: str, message_code: str, hl7_version: str,
                   payload_hash: str, raw: bytes) -> int:
    return txn.insert(
        "INSERT INTO journal (received_at, peer, sending_application, sending_facility, control_id, message_code,"
        " hl7_version, payload_hash, raw, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing')",
        (received_at, peer, sending_application, sending_facility, control_id, message_code, hl7_version,
         payload_hash, raw))


def journal_finish(txn: Transaction, journal_id: int, status: str, ack_code: str, ack: bytes | None,
                   reason: str, rule: str) -> None:
    txn.execute("UPDATE journal SET status = ?, ack_code = ?, ack = ?, reason = ?, rule = ? WHERE id = ?",
                (status, ack_code, ack, reason, rule, journal_id))


def journal_processed(txn: Transaction, sending_application: str, sending_facility: str,
                      control_id: str, since: str) -> dict[str, Any] | None:
    """The first processed entry with this key received after ``since`` (failed and duplicate ones do not count)."""
    return txn.one(
        "SELECT id, payload_hash, ack, ack_code, status FROM journal WHERE sending_application = ?"
        " AND sending_facility = ? AND control_id = ? AND status NOT IN ('failed', 'duplicate', 'processing')"
        " AND received_at >= ? ORDER BY id LIMIT 1", (sending_application, sending_facility, control_id, since))


# -- counters -------------------------------------------------------------------------------
def next_counter(txn: Transaction, name: str) -> int:
    row = txn.one("SELECT value FROM counters WHERE name = ?", (name,))
    value = (row["value"] if row else 0) + 1
    if row:
        txn.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
    else:
        txn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))
    return value


# -- patients -------------------------------------------------------------------------------
def find_patient(txn: Transaction, patient_id: str, issuer: str) -> dict[str, Any] | None:
    return txn.one("SELECT * FROM patients WHERE patient_id = ? AND issuer = ?", (patient_id, issuer))


def patient_by_ref(txn: Transaction, patient_ref: int) -> dict[str, Any] | None:
    return txn.one("SELECT * FROM patients WHERE id = ?", (patient_ref,))


def _patient_match_columns(attributes: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """The worklist matching columns derived from a patient's attributes (SWF.md 5.8)."""
    return (normalise_name(attributes.get("PatientName", "")), attributes.get("PatientBirthDate", ""),
            attributes.get("PatientSex", ""), normalise_name(attributes.get("ReferringPhysicianName", "")),
            attributes.get("AdmissionID", ""))


def insert_patient(txn: Transaction, patient_id: str, issuer: str, attributes: dict[str, Any]) -> int:
    stamp = now_iso()
    return txn.insert(
        "INSERT INTO patients (patient_id, issuer, name_norm, birth_date, sex, referring_physician_norm, admission_id,"
        " attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (patient_id, issuer, *_patient_match_columns(attributes), dumps(attributes), stamp, stamp))


def update_patient(txn: Transaction, patient_ref: int, attributes: dict[str, Any]) -> None:
    txn.execute("UPDATE patients SET name_norm = ?, birth_date = ?, sex = ?, referring_physician_norm = ?,"
                " admission_id = ?, attributes = ?, updated_at = ? WHERE id = ?",
                (*_patient_match_columns(attributes), dumps(attributes), now_iso(), patient_ref))


def add_identifier(txn: Transaction, patient_ref: int, patient_id: str, issuer: str, identifier_type: str,
                   source: str) -> None:
    txn.execute("INSERT INTO patient_identifiers (patient_ref, patient_id, issuer, identifier_type, source)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (patient_ref, patient_id, issuer) DO NOTHING",
                (patient_ref, patient_id, issuer, identifier_type, source))


def identifiers_of(txn: Transaction, patient_ref: int) -> list[dict[str, Any]]:
    return txn.query("SELECT patient_id, issuer, identifier_type, source FROM patient_identifiers"
                     " WHERE patient_ref = ? ORDER BY id", (patient_ref,))


def merge_patient(txn: Transaction, prior_ref: int, survivor_ref: int) -> int:
    """Move orders, visits and identifiers of the prior patient to the survivor; returns orders moved."""
    moved = txn.execute("UPDATE orders SET patient_ref = ? WHERE patient_ref = ?", (survivor_ref, prior_ref)).rowcount
    for row in identifiers_of(txn, prior_ref):
        add_identifier(txn, survivor_ref, row["patient_id"], row["issuer"], row["identifier_type"], "merged")
    txn.execute("DELETE FROM patient_identifiers WHERE patient_ref = ?", (prior_ref,))
    for visit in txn.query("SELECT * FROM visits WHERE patient_ref = ?", (prior_ref,)):
        if not txn.one("SELECT id FROM visits WHERE patient_ref = ? AND visit_number = ?",
                       (survivor_ref, visit["visit_number"])):
            txn.execute("UPDATE visits SET patient_ref = ? WHERE id = ?", (survivor_ref, visit["id"]))
    txn.execute("UPDATE patients SET merged_into = ?, updated_at = ? WHERE id = ?", (survivor_ref, now_iso(), prior_ref))
    txn.execute("UPDATE patients SET merged_into = ? WHERE merged_into = ?", (survivor_ref, prior_ref))
    return moved


def upsert_visit(txn: Transaction, patient_ref: int, visit_number: str, patient_class: str, location: str,
                 status: str) -> None:
    row = txn.one("SELECT id FROM visits WHERE patient_ref = ? AND visit_number = ?", (patient_ref, visit_number))
    if row:
        txn.execute("UPDATE visits SET patient_class = ?, location = ?, status = ?, updated_at = ? WHERE id = ?",
                    (patient_class, location, status, now_iso(), row["id"]))
    else:
        txn.execute("INSERT INTO visits (patient_ref, visit_number, patient_class, location, status, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (patient_ref, visit_number, patient_class, location, status, now_iso()))


def add_patient_history(txn: Transaction, patient_ref: int, kind: str, detail: str, journal_ref: int | None) -> None:
    txn.execute("INSERT INTO patient_history (patient_ref, at, kind, detail, journal_ref) VALUES (?, ?, ?, ?, ?)",
                (patient_ref, now_iso(), kind, detail, journal_ref))


# -- orders ---------------------------------------------------------------------------------
def find_order(txn: Transaction, placer_order_number: str, filler_order_number: str) -> dict[str, Any] | None:
    """The most recent order with this filler number, else with this placer number.

    One statement for both keys (each searched on its own index); rows of the filler number sort first."""
    if filler_order_number and placer_order_number:
        return txn.one("SELECT * FROM orders WHERE filler_order_number = ? OR placer_order_number = ?"
                       " ORDER BY filler_order_number = ? DESC, id DESC LIMIT 1",
                       (filler_order_number, placer_order_number, filler_order_number))
    if filler_order_number:
        return txn.one("SELECT * FROM orders WHERE filler_order_number = ? ORDER BY id DESC LIMIT 1",
                       (filler_order_number,))
    if placer_order_number:
        return txn.one("SELECT * FROM orders WHERE placer_order_number = ? ORDER BY id DESC LIMIT 1",
                       (placer_order_number,))
    return None


def insert_order(txn: Transaction, patient_ref: int, placer: str, filler: str, sending_application: str,
                 mode: str, visit_number: str, outbound: tuple[str, ...] = ()) -> int:
    stamp = now_iso()
    return txn.insert(
        "INSERT INTO orders (patient_ref, placer_order_number, filler_order_number, sending_application,"
        " deployment_mode, visit_number, outbound, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (patient_ref, placer, filler, sending_application, mode, visit_number, " ".join(outbound), stamp, stamp))


def order_by_ref(txn: Transaction, order_ref: int) -> dict[str, Any] | None:
    return txn.one("SELECT * FROM orders WHERE id = ?", (order_ref,))


def order_refs_of_patient(txn: Transaction, patient_ref: int) -> list[int]:
    return [order_ref for order_ref, in txn.rows("SELECT id FROM orders WHERE patient_ref = ?", (patient_ref,))]


def newest_order_of_accession(txn: Transaction, accession_number: str) -> dict[str, Any] | None:
    """The newest order with a requested procedure of this accession number (operator actions)."""
    procedure = txn.one("SELECT order_ref FROM requested_procedures WHERE accession_number = ? ORDER BY id DESC LIMIT 1",
                        (accession_number,))
    return order_by_ref(txn, procedure["order_ref"]) if procedure else None


def touch_order(txn: Transaction, order_ref: int) -> None:
    txn.execute("UPDATE orders SET updated_at = ? WHERE id = ?", (now_iso(), order_ref))


def find_procedure_by_study(txn: Transaction, study_instance_uid: str) -> dict[str, Any] | None:
    return txn.one("SELECT * FROM requested_procedures WHERE study_instance_uid = ?", (study_instance_uid,))


def procedures_of(txn: Transaction, order_ref: int) -> list[dict[str, Any]]:
    return txn.query("SELECT * FROM requested_procedures WHERE order_ref = ? ORDER BY id", (order_ref,))


def _procedure_match_columns(attributes: dict[str, Any]) -> tuple[str, str, str, str]:
    codes = attributes.get("RequestedProcedureCodeSequence") or [{}]
    return (attributes.get("RequestedProcedurePriority", ""), normalise_name(attributes.get("RequestingPhysician", "")),
            codes[0].get("CodeValue", ""), codes[0].get("CodingSchemeDesignator", ""))


def insert_procedure(txn: Transaction, order_ref: int, accession: str, rp_id: str, study_uid: str,
                     attributes: dict[str, Any]) -> int:
    return txn.insert(
        "INSERT INTO requested_procedures (order_ref, accession_number, requested_procedure_id, study_instance_uid,"
        " priority, requesting_physician_norm, procedure_code_value, procedure_code_scheme, attributes, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (order_ref, accession, rp_id, study_uid, *_procedure_match_columns(attributes), dumps(attributes), now_iso()))


def update_procedure(txn: Transaction, procedure_ref: int, attributes: dict[str, Any]) -> None:
    txn.execute("UPDATE requested_procedures SET priority = ?, requesting_physician_norm = ?, procedure_code_value = ?,"
                " procedure_code_scheme = ?, attributes = ?, updated_at = ? WHERE id = ?",
                (*_procedure_match_columns(attributes), dumps(attributes), now_iso(), procedure_ref))


def steps_of_procedure(txn: Transaction, procedure_ref: int) -> list[dict[str, Any]]:
    return txn.query("SELECT * FROM scheduled_steps WHERE requested_procedure_ref = ? ORDER BY id", (procedure_ref,))


def steps_of_order(txn: Transaction, order_ref: int) -> list[dict[str, Any]]:
    return txn.query(
        "SELECT s.*, r.accession_number, r.requested_procedure_id, r.study_instance_uid FROM scheduled_steps s"
        " JOIN requested_procedures r ON r.id = s.requested_procedure_ref WHERE r.order_ref = ? ORDER BY s.id",
        (order_ref,))


STEP_COLUMNS = ("sps_id", "status", "station_ae_title", "station_name", "location", "modality", "start_datetime",
                "performing_physician_norm", "attributes")


def insert_step(txn: Transaction, procedure_ref: int, values: dict[str, Any]) -> int:
    columns = ", ".join(STEP_COLUMNS)
    params = [values[c] if c != "attributes" else dumps(values[c]) for c in STEP_COLUMNS]
    return txn.insert(
        f"INSERT INTO scheduled_steps (requested_procedure_ref, {columns}, updated_at)"
        f" VALUES (?, {', '.join('?' for _ in STEP_COLUMNS)}, ?)", [procedure_ref, *params, now_iso()])


def update_step(txn: Transaction, step_ref: int, values: dict[str, Any]) -> None:
    assignments = ", ".join(f"{c} = ?" for c in values)
    params = [dumps(v) if c == "attributes" else v for c, v in values.items()]
    txn.execute(f"UPDATE scheduled_steps SET {assignments}, updated_at = ? WHERE id = ?", [*params, now_iso(), step_ref])


def add_order_history(txn: Transaction, order_ref: int, kind: str, detail: str, journal_ref: int | None) -> None:
    txn.execute("INSERT INTO order_history (order_ref, at, kind, detail, journal_ref) VALUES (?, ?, ?, ?, ?)",
                (order_ref, now_iso(), kind, detail, journal_ref))


# -- domain events --------------------------------------------------------------------------
def record_event(txn: Transaction, kind: str, subject: str, detail: str, order_ref: int | None = None,
                 journal_ref: int | None = None, destinations: tuple[str, ...] | list[str] = ()) -> None:
    """Keep a domain event (order.scheduled, mpps.completed ...) for the outbound side to turn into messages.

    ``destinations`` are those the rules named for the message that caused it; without them the event
    goes where its order reports to (``orders.outbound``).  The outbox is filled before the same commit.
    """
    txn.execute("INSERT INTO events (at, kind, subject, detail, order_ref, journal_ref, destinations)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now_iso(), kind, subject, detail, order_ref, journal_ref, " ".join(destinations)))
