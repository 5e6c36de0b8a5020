"""The order and patient SQL of engine/store on both engines: orders found by filler before placer number,
procedures and steps read back as frozen records with their attributes decoded, and the step writes."""
from __future__ import annotations

import dataclasses

import pytest

from engine.store import orders, patients
from engine.store.database import Store, Transaction
from engine.store.orders import StepSchedule

SCHEDULE = StepSchedule(sps_id="SPS1", status="SCHEDULED", station_ae_title="CT1", station_name="CT one",
                        location="RAD", modality="CT", start_datetime="20260304100000",
                        performing_physician_norm="GREY^MEREDITH",
                        attributes={"ScheduledProcedureStepStartDate": "20260304",
                                    "ScheduledProcedureStepStartTime": "100000", "Modality": "CT"})


def two_orders(txn: Transaction) -> dict[str, int]:
    """Patient P1 with order A (placer PL1, filler FI1: two procedures, three steps) and order B (placer PL1)."""
    patient = patients.insert(txn, "P1", "H", {"PatientName": "DOE^JANE"})
    first = orders.insert(txn, patient, "PL1", "FI1", "RIS", "filler", "V1", ("archive",))
    second = orders.insert(txn, patient, "PL1", "", "RIS", "broker", "V1")
    ct = orders.insert_procedure(txn, first, "ACC1", "RP1", "1.2.1", {
        "RequestedProcedureDescription": "CT chest", "RequestedProcedureCodeSequence": [{"CodeValue": "CTC"}]})
    mr = orders.insert_procedure(txn, first, "ACC2", "RP2", "1.2.2", {})
    steps = [orders.insert_step(txn, ct, SCHEDULE),
             orders.insert_step(txn, ct, dataclasses.replace(SCHEDULE, sps_id="SPS2")),
             orders.insert_step(txn, mr, dataclasses.replace(SCHEDULE, sps_id="SPS3", modality="MR", attributes={}))]
    return {"patient": patient, "first": first, "second": second, "ct": ct, "mr": mr,
            **{f"step{n}": ref for n, ref in enumerate(steps, 1)}}


def test_orders_are_found_by_filler_number_first_then_the_newest_by_placer(store: Store) -> None:
    refs = store.write(two_orders)
    found = store.read(lambda txn: [orders.find(txn, "PL1", "FI1"), orders.find(txn, "PL1", ""),
                                    orders.find(txn, "", "FI1"), orders.find(txn, "NONE", "NONE"),
                                    orders.find(txn, "", "")])
    assert [o.id if o else None for o in found] == [refs["first"], refs["second"], refs["first"], None, None]
    assert found[0] == orders.Order(refs["first"], refs["patient"], "PL1", "FI1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].placer_order_number = "changed"  # type: ignore[misc]
    assert store.read(lambda txn: orders.by_ref(txn, refs["second"])).filler_order_number == ""
    assert store.read(lambda txn: orders.newest_of_accession(txn, "ACC2")).id == refs["first"]
    assert store.read(lambda txn: orders.newest_of_accession(txn, "ACC9")) is None
    assert sorted(store.read(lambda txn: orders.refs_of_patient(txn, refs["patient"]))) == \
        [refs["first"], refs["second"]]


def test_procedures_and_steps_come_with_their_attributes_decoded(store: Store) -> None:
    refs = store.write(two_orders)
    procedures = store.read(lambda txn: orders.procedures_of(txn, refs["first"]))
    assert [(p.id, p.order_ref, p.accession_number, p.requested_procedure_id, p.study_instance_uid)
            for p in procedures] == [(refs["ct"], refs["first"], "ACC1", "RP1", "1.2.1"),
                                     (refs["mr"], refs["first"], "ACC2", "RP2", "1.2.2")]
    assert procedures[0].attributes == {"RequestedProcedureDescription": "CT chest",
                                        "RequestedProcedureCodeSequence": [{"CodeValue": "CTC"}]}
    assert store.read(lambda txn: orders.procedure_by_study(txn, "1.2.2")) == procedures[1]
    assert store.read(lambda txn: orders.procedure_by_study(txn, "9.9")) is None
    steps = store.read(lambda txn: orders.steps_of_order(txn, refs["first"]))
    assert [(s.id, s.sps_id, s.modality, s.accession_number, s.requested_procedure_id, s.study_instance_uid)
            for s in steps] == [(refs["step1"], "SPS1", "CT", "ACC1", "RP1", "1.2.1"),
                                (refs["step2"], "SPS2", "CT", "ACC1", "RP1", "1.2.1"),
                                (refs["step3"], "SPS3", "MR", "ACC2", "RP2", "1.2.2")]
    first = steps[0]
    assert (first.requested_procedure_ref, first.status, first.station_ae_title, first.station_name, first.location,
            first.start_datetime, first.performing_physician_norm, first.attributes) == \
        (refs["ct"], "SCHEDULED", "CT1", "CT one", "RAD", "20260304100000", "GREY^MEREDITH", SCHEDULE.attributes)
    assert store.read(lambda txn: orders.steps_of_procedure(txn, refs["mr"])) == steps[2:]
    assert store.read(lambda txn: orders.steps_of_order(txn, refs["second"])) == []


def test_step_writes(store: Store) -> None:
    refs = store.write(two_orders)

    def change(txn: Transaction) -> None:
        orders.set_step_status(txn, refs["step2"], "STARTED")
        orders.update_step(txn, refs["step1"], dataclasses.replace(
            SCHEDULE, station_ae_title="CT2", location="ER", attributes={"Modality": "CT", "n": 2}))
        orders.reschedule_step(txn, refs["step3"], start_datetime="20260305080000", station_ae_title="MR1",
                               attributes={"ScheduledStationAETitle": "MR1"})

    store.write(change)
    assert store.read(lambda txn: orders.step_statuses_of_order(txn, refs["first"])) == \
        ["SCHEDULED", "STARTED", "SCHEDULED"]
    one, two, three = store.read(lambda txn: orders.steps_of_order(txn, refs["first"]))
    assert (one.station_ae_title, one.location, one.station_name, one.attributes) == \
        ("CT2", "ER", "CT one", {"Modality": "CT", "n": 2})
    assert (two.status, two.station_ae_title, two.attributes) == ("STARTED", "CT1", SCHEDULE.attributes)
    assert (three.start_datetime, three.station_ae_title, three.modality, three.attributes) == \
        ("20260305080000", "MR1", "MR", {"ScheduledStationAETitle": "MR1"})


def test_a_patient_update_rewrites_the_matching_columns(store: Store) -> None:
    ref = store.write(lambda txn: patients.insert(txn, "P1", "H", {"PatientName": "Doe^Jane"}))
    store.write(lambda txn: patients.update(txn, ref, {"PatientName": "Müller^Anna", "PatientSex": "F"}))
    patient = store.read(lambda txn: patients.by_ref(txn, ref))
    assert patient == patients.Patient(ref, "P1", "H", None, {"PatientName": "Müller^Anna", "PatientSex": "F"})
    assert store.read(lambda txn: txn.row("SELECT name_norm, sex FROM patients WHERE id = ?", (ref,))) == \
        ("MULLER^ANNA", "F")
