"""Age-out SQL (engine/store/aging.py) on both engines: which steps are due, and a removed step offered
again once a change gives it a new start (the same start keeps it out)."""
from __future__ import annotations

from engine.store import aging, orders, patients
from engine.store.database import Store, Transaction


def schedule(sps_id: str, start: str, status: str = "SCHEDULED") -> orders.StepSchedule:
    return orders.StepSchedule(sps_id=sps_id, status=status, station_ae_title="CT1", station_name="", location="",
                               modality="CT", start_datetime=start, performing_physician_norm="", attributes={})


def test_due_steps_and_a_new_start_bringing_a_removed_step_back(store: Store) -> None:
    def setup(txn: Transaction) -> dict[str, int]:
        patient = patients.insert(txn, "PAT1", "H", {})
        order = orders.insert(txn, patient, "PL1", "FI1", "RIS", "broker", "")
        procedure = orders.insert_procedure(txn, order, "ACC1", "RP1", "1.2.3", {})
        return {sps: orders.insert_step(txn, procedure, schedule(sps, start, status)) for sps, start, status in (
            ("OLD", "20250101080000.000000", "SCHEDULED"), ("OLDER", "20240101080000.000000", "SCHEDULED"),
            ("STARTED", "20240101080000.000000", "STARTED"), ("NO-START", "", "SCHEDULED"),
            ("LATER", "20990101080000.000000", "SCHEDULED"))}
    steps = store.write(setup)
    due = store.read(lambda txn: aging.due_steps(txn, "20260101000000", 10))
    assert [(step.sps_id, step.accession_number) for step in due] == [("OLDER", "ACC1"), ("OLD", "ACC1")]
    assert [step.sps_id for step in store.read(lambda txn: aging.due_steps(txn, "20260101000000", 1))] == ["OLDER"]
    store.write(lambda txn: [aging.mark_aged_out(txn, steps[sps]) for sps in ("OLD", "OLDER")])
    assert store.read(lambda txn: aging.due_steps(txn, "20260101000000", 10)) == []
    store.write(lambda txn: orders.update_step(txn, steps["OLD"], schedule("OLD", "20250101080000.000000")))
    store.write(lambda txn: orders.update_step(txn, steps["OLDER"], schedule("OLDER", "20270101080000.000000")))
    aged = dict(store.read(lambda txn: txn.rows("SELECT sps_id, aged_out_at FROM scheduled_steps")))
    assert aged["OLD"] != "" and aged["OLDER"] == ""        # the same start stays out, a new one is offered
    store.write(lambda txn: orders.reschedule_step(txn, steps["OLD"], start_datetime="20270202080000.000000",
                                                   station_ae_title="CT1", attributes={}))
    assert store.read(lambda txn: txn.row("SELECT aged_out_at FROM scheduled_steps WHERE sps_id = 'OLD'")) == ("",)
