"""SQL of the orders (RAD-2 / RAD-4 / RAD-13): orders, their requested procedures, scheduled steps and
order history.

Every function takes the transaction and returns frozen records; attributes (DICOM keyword -> value)
are decoded here, once, when a record is built.  The worklist matching columns of procedures and steps
(SWF.md 5.8) are written beside the attributes they come from; the workflow decides every value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.matching_keys import normalise_name
from .database import Transaction
from .json_columns import dumps, loads
from .timestamps import now_iso


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    patient_ref: int
    placer_order_number: str
    filler_order_number: str


@dataclass(frozen=True, slots=True)
class RequestedProcedure:
    id: int
    order_ref: int
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    attributes: dict[str, Any]   # RequestedProcedureDescription, RequestedProcedureCodeSequence ...


@dataclass(frozen=True, slots=True)
class StepSchedule:
    """What an order message sets on a scheduled step: every column the workflow writes."""

    sps_id: str
    status: str
    station_ae_title: str
    station_name: str
    location: str
    modality: str
    start_datetime: str               # sortable "YYYYMMDDHHMMSS" (domain.matching_keys.sortable_datetime)
    performing_physician_norm: str
    attributes: dict[str, Any]        # the SPS sequence item by keyword, start date and time included


@dataclass(frozen=True, slots=True)
class ScheduledStep(StepSchedule):
    """A stored scheduled step (its schedule as the workflow wrote it), with its row ids and the keys of its
    requested procedure."""

    id: int
    requested_procedure_ref: int
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str


# -- orders ----------------------------------------------------------------------------------------
_ORDER_SELECT = "SELECT id, patient_ref, placer_order_number, filler_order_number FROM orders"


def _order(row: tuple | None) -> Order | None:
    return None if row is None else Order(*row)


def find(txn: Transaction, placer_order_number: str, filler_order_number: str) -> Order | None:
    """The most recent order with this filler number, else with this placer number.

    One statement for both keys (each searched on its own index); rows of the filler number sort first."""
    if filler_order_number and placer_order_number:
        return _order(txn.row(f"{_ORDER_SELECT} WHERE filler_order_number = ? OR placer_order_number = ?"
                              " ORDER BY filler_order_number = ? DESC, id DESC LIMIT 1",
                              (filler_order_number, placer_order_number, filler_order_number)))
    if filler_order_number:
        return _order(txn.row(f"{_ORDER_SELECT} WHERE filler_order_number = ? ORDER BY id DESC LIMIT 1",
                              (filler_order_number,)))
    if placer_order_number:
        return _order(txn.row(f"{_ORDER_SELECT} WHERE placer_order_number = ? ORDER BY id DESC LIMIT 1",
                              (placer_order_number,)))
    return None


def by_ref(txn: Transaction, order_ref: int) -> Order | None:
    return _order(txn.row(f"{_ORDER_SELECT} WHERE id = ?", (order_ref,)))


def insert(txn: Transaction, patient_ref: int, placer: str, filler: str, sending_application: str, mode: str,
           visit_number: str, outbound: tuple[str, ...] = ()) -> int:
    """A new order; ``outbound``: the destinations its later events go to (orders.outbound)."""
    stamp = now_iso()
    return txn.insert(
        "INSERT INTO orders (patient_ref, placer_order_number, filler_order_number, sending_application,"
        " deployment_mode, visit_number, outbound, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (patient_ref, placer, filler, sending_application, mode, visit_number, " ".join(outbound), stamp, stamp))


def refs_of_patient(txn: Transaction, patient_ref: int) -> list[int]:
    return [order_ref for order_ref, in txn.rows("SELECT id FROM orders WHERE patient_ref = ?", (patient_ref,))]


def newest_of_accession(txn: Transaction, accession_number: str) -> Order | None:
    """The newest order with a requested procedure of this accession number (operator actions)."""
    procedure = txn.row("SELECT order_ref FROM requested_procedures WHERE accession_number = ?"
                        " ORDER BY id DESC LIMIT 1", (accession_number,))
    return by_ref(txn, procedure[0]) if procedure else None


def touch(txn: Transaction, order_ref: int) -> None:
    """Mark the order changed now (its steps or procedures were)."""
    txn.execute("UPDATE orders SET updated_at = ? WHERE id = ?", (now_iso(), order_ref))


def add_history(txn: Transaction, order_ref: int, kind: str, detail: str, journal_ref: int | None) -> None:
    txn.execute("INSERT INTO order_history (order_ref, at, kind, detail, journal_ref) VALUES (?, ?, ?, ?, ?)",
                (order_ref, now_iso(), kind, detail, journal_ref))


# -- requested procedures --------------------------------------------------------------------------
_PROCEDURE_SELECT = ("SELECT id, order_ref, accession_number, requested_procedure_id, study_instance_uid, attributes"
                     " FROM requested_procedures")


def _procedure(row: tuple) -> RequestedProcedure:
    *head, attributes = row
    return RequestedProcedure(*head, loads(attributes))


def procedure_by_study(txn: Transaction, study_instance_uid: str) -> RequestedProcedure | None:
    row = txn.row(f"{_PROCEDURE_SELECT} WHERE study_instance_uid = ?", (study_instance_uid,))
    return None if row is None else _procedure(row)


def procedures_of(txn: Transaction, order_ref: int) -> list[RequestedProcedure]:
    return [_procedure(row) for row in txn.rows(f"{_PROCEDURE_SELECT} WHERE order_ref = ? ORDER BY id", (order_ref,))]


def _procedure_match_columns(attributes: dict[str, Any]) -> tuple[str, str, str, str]:
    codes = attributes.get("RequestedProcedureCodeSequence") or [{}]
    return (attributes.get("RequestedProcedurePriority", ""), normalise_name(attributes.get("RequestingPhysician", "")),
            codes[0].get("CodeValue", ""), codes[0].get("CodingSchemeDesignator", ""))


def insert_procedure(txn: Transaction, order_ref: int, accession: str, rp_id: str, study_uid: str,
                     attributes: dict[str, Any]) -> int:
    """A new requested procedure; a Study Instance UID in use raises ``DuplicateKey``.  Returns its id."""
    return txn.insert(
        "INSERT INTO requested_procedures (order_ref, accession_number, requested_procedure_id, study_instance_uid,"
        " priority, requesting_physician_norm, procedure_code_value, procedure_code_scheme, attributes, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (order_ref, accession, rp_id, study_uid, *_procedure_match_columns(attributes), dumps(attributes), now_iso()))


def update_procedure(txn: Transaction, procedure_ref: int, attributes: dict[str, Any]) -> None:
    txn.execute("UPDATE requested_procedures SET priority = ?, requesting_physician_norm = ?, procedure_code_value = ?,"
                " procedure_code_scheme = ?, attributes = ?, updated_at = ? WHERE id = ?",
                (*_procedure_match_columns(attributes), dumps(attributes), now_iso(), procedure_ref))


# -- scheduled steps -------------------------------------------------------------------------------
_STEP_SELECT = ("SELECT s.id, s.requested_procedure_ref, s.sps_id, s.status, s.station_ae_title, s.station_name,"
                " s.location, s.modality, s.start_datetime, s.performing_physician_norm, s.attributes,"
                " r.accession_number, r.requested_procedure_id, r.study_instance_uid FROM scheduled_steps s"
                " JOIN requested_procedures r ON r.id = s.requested_procedure_ref")


def _steps(txn: Transaction, where: str, ref: int) -> list[ScheduledStep]:
    return [ScheduledStep(sps_id, status, station, station_name, location, modality, start, physician,
                          loads(attributes), id, procedure_ref, accession, rp_id, study_uid)
            for (id, procedure_ref, sps_id, status, station, station_name, location, modality, start, physician,
                 attributes, accession, rp_id, study_uid) in txn.rows(f"{_STEP_SELECT} {where} ORDER BY s.id", (ref,))]


def steps_of_procedure(txn: Transaction, procedure_ref: int) -> list[ScheduledStep]:
    return _steps(txn, "WHERE s.requested_procedure_ref = ?", procedure_ref)


def steps_of_order(txn: Transaction, order_ref: int) -> list[ScheduledStep]:
    return _steps(txn, "WHERE r.order_ref = ?", order_ref)


def step_statuses_of_order(txn: Transaction, order_ref: int) -> list[str]:
    """The status of each of the order's steps (what the order status is computed from)."""
    return [status for status, in txn.rows(
        "SELECT s.status FROM scheduled_steps s JOIN requested_procedures r ON r.id = s.requested_procedure_ref"
        " WHERE r.order_ref = ? ORDER BY s.id", (order_ref,))]


def insert_step(txn: Transaction, procedure_ref: int, schedule: StepSchedule) -> int:
    return txn.insert(
        "INSERT INTO scheduled_steps (requested_procedure_ref, sps_id, status, station_ae_title, station_name,"
        " location, modality, start_datetime, performing_physician_norm, attributes, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (procedure_ref, schedule.sps_id, schedule.status, schedule.station_ae_title, schedule.station_name,
         schedule.location, schedule.modality, schedule.start_datetime, schedule.performing_physician_norm,
         dumps(schedule.attributes), now_iso()))


def update_step(txn: Transaction, step_ref: int, schedule: StepSchedule) -> None:
    """Write the whole schedule of a step (a RAD-13 change); a new start brings an aged-out step back."""
    txn.execute(
        "UPDATE scheduled_steps SET sps_id = ?, status = ?, station_ae_title = ?, station_name = ?, location = ?,"
        " modality = ?, start_datetime = ?, performing_physician_norm = ?, attributes = ?, updated_at = ?,"
        f" {_AGED_OUT_UNLESS_SAME_START} WHERE id = ?",
        (schedule.sps_id, schedule.status, schedule.station_ae_title, schedule.station_name, schedule.location,
         schedule.modality, schedule.start_datetime, schedule.performing_physician_norm, dumps(schedule.attributes),
         now_iso(), schedule.start_datetime, step_ref))


# age_out.mode remove (engine/store/aging.py): a step given a new start is offered in the worklist again
_AGED_OUT_UNLESS_SAME_START = "aged_out_at = CASE WHEN start_datetime = ? THEN aged_out_at ELSE '' END"


def set_step_status(txn: Transaction, step_ref: int, status: str) -> None:
    txn.execute("UPDATE scheduled_steps SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(), step_ref))


def reschedule_step(txn: Transaction, step_ref: int, *, start_datetime: str, station_ae_title: str,
                    attributes: dict[str, Any]) -> None:
    """New start and station of a step (the operator's ``swf reschedule``); ``attributes`` hold both too."""
    txn.execute("UPDATE scheduled_steps SET start_datetime = ?, station_ae_title = ?, attributes = ?, updated_at = ?,"
                f" {_AGED_OUT_UNLESS_SAME_START} WHERE id = ?",
                (start_datetime, station_ae_title, dumps(attributes), now_iso(), start_datetime, step_ref))
