"""The stored-instance SQL of engine/store/instances.py on both engines: index rows added, replaced and
removed with their references, the linking look-ups of RAD-8, late linking, and withdrawal (110514)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from engine.store import instances
from engine.store import repository as repo
from engine.store.database import DuplicateKey, Store, Transaction
from engine.store.instances import InstanceEntry, LinkedProcedure, StoredInstance

CT = "1.2.840.10008.5.1.4.1.1.2"
AT = "2026-12-07T10:00:00.000+01:00"


def entry(sop: str, study: str = "1.2.3", series: str = "1.2.3.1", **changes: object) -> InstanceEntry:
    values = dict(sop_instance_uid=sop, sop_class_uid=CT, study_instance_uid=study, series_instance_uid=series,
                  patient_id="PAT1", patient_name_norm="MULLER^ANNA", accession_number="ACC1", modality="CT",
                  study_date="20250304", study_time="101500.000000", study_id="S1", referring_physician_norm="HOUSE",
                  series_number="1", instance_number="1", transfer_syntax_uid="1.2.840.10008.1.2.1", size_bytes=100,
                  path=f"{study}/{series}/{sop}.dcm", received_from="CT1", attributes={"SeriesDescription": "Ä first"},
                  requested_procedure_ref=None, hidden=False, received_at=AT, referenced_series=())
    values.update(changes)
    return InstanceEntry(**values)  # type: ignore[arg-type]


def procedures(txn: Transaction) -> dict[str, int]:
    """Two orders: ACC1 (RP1, SPS1, study 1.2.3) and ACC2 twice (RP2 with SPS2 and SPS3, RP2 again)."""
    patient = repo.insert_patient(txn, "PAT1", "H", {})
    order = repo.insert_order(txn, patient, "PL1", "FI1", "RIS", "filler", "", ())
    first = repo.insert_procedure(txn, order, "ACC1", "RP1", "1.2.3", {})
    second = repo.insert_procedure(txn, order, "ACC2", "RP2", "1.2.4", {})
    third = repo.insert_procedure(txn, order, "ACC2", "RP2", "1.2.5", {})
    for procedure, sps in ((first, "SPS1"), (second, "SPS2"), (third, "SPS3")):
        repo.insert_step(txn, procedure, {"sps_id": sps, "status": "SCHEDULED", "station_ae_title": "CT1",
                                          "station_name": "", "location": "", "modality": "CT",
                                          "start_datetime": "", "performing_physician_norm": "", "attributes": {}})
    return {"order": order, "ACC1": first, "ACC2-a": second, "ACC2-b": third}


def row(store: Store, sop: str) -> tuple | None:
    return store.read(lambda txn: txn.row("SELECT requested_procedure_ref, hidden, modality, attributes, path"
                                          " FROM instances WHERE sop_instance_uid = ?", (sop,)))


def references(store: Store) -> list[tuple]:
    return store.read(lambda txn: txn.rows("SELECT instance_ref, series_instance_uid FROM instance_references"
                                           " ORDER BY instance_ref, series_instance_uid"))


def test_an_instance_is_added_replaced_and_removed_with_its_references(store: Store) -> None:
    assert store.read(lambda txn: instances.by_sop_instance_uid(txn, "2.25.1")) is None
    assert not store.read(lambda txn: instances.series_indexed(txn, "1.2.3.1"))
    first = store.write(lambda txn: instances.add(txn, entry("2.25.1", referenced_series=("9.1", "9.2"))))
    second = store.write(lambda txn: instances.add(txn, entry("2.25.2", hidden=True, size_bytes=7)))
    assert store.read(lambda txn: instances.series_indexed(txn, "1.2.3.1"))
    found = store.read(lambda txn: instances.by_sop_instance_uid(txn, "2.25.2"))
    assert found == StoredInstance(second, None, True, "1.2.3/1.2.3.1/2.25.2.dcm", 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.hidden = False  # type: ignore[misc]
    procedure_ref, hidden, modality, attributes, path = row(store, "2.25.1")
    assert (procedure_ref, hidden, modality, path) == (None, 0, "CT", "1.2.3/1.2.3.1/2.25.1.dcm")
    assert json.loads(attributes) == {"SeriesDescription": "Ä first"}
    assert references(store) == [(first, "9.1"), (first, "9.2")]
    with pytest.raises(DuplicateKey):
        store.write(lambda txn: instances.add(txn, entry("2.25.1")))

    linked = store.write(procedures)["ACC1"]
    store.write(lambda txn: instances.replace(txn, first, entry("2.25.1", modality="MR", requested_procedure_ref=linked,
                                                                attributes={}, referenced_series=("9.3",))))
    assert row(store, "2.25.1")[:4] == (linked, 0, "MR", "{}")
    assert references(store) == [(first, "9.3")]
    assert store.read(lambda txn: instances.by_sop_instance_uid(txn, "2.25.1")).requested_procedure_ref == linked
    store.write(lambda txn: instances.remove(txn, first))
    assert row(store, "2.25.1") is None and references(store) == []
    assert row(store, "2.25.2") is not None


def test_the_linking_look_ups_of_rad8(store: Store) -> None:
    refs = store.write(procedures)
    read = store.read
    assert read(lambda txn: instances.procedure_by_study(txn, "1.2.3")) == refs["ACC1"]
    assert read(lambda txn: instances.procedure_by_study(txn, "9.9.9")) is None
    # RP ID + SPS ID, with or without the accession number; the latest procedure wins
    assert read(lambda txn: instances.procedure_by_step(txn, "RP2", "SPS2")) == refs["ACC2-a"]
    assert read(lambda txn: instances.procedure_by_step(txn, "RP2", "SPS2", "ACC2")) == refs["ACC2-a"]
    assert read(lambda txn: instances.procedure_by_step(txn, "RP2", "SPS2", "ACC1")) is None
    assert read(lambda txn: instances.procedure_by_step(txn, "RP2", "NOPE")) is None
    assert read(lambda txn: instances.procedure_by_procedure_id(txn, "RP2")) == refs["ACC2-b"]
    assert read(lambda txn: instances.procedure_by_procedure_id(txn, "RP2", "ACC2")) == refs["ACC2-b"]
    assert read(lambda txn: instances.procedure_by_procedure_id(txn, "RP1", "ACC2")) is None
    assert read(lambda txn: instances.procedures_by_accession(txn, "ACC1")) == [refs["ACC1"]]
    assert read(lambda txn: instances.procedures_by_accession(txn, "ACC2")) == [refs["ACC2-b"], refs["ACC2-a"]]
    assert read(lambda txn: instances.procedures_by_accession(txn, "ACC9")) == []
    assert read(lambda txn: instances.linked_procedure(txn, refs["ACC2-a"])) == LinkedProcedure(refs["order"], "ACC2")
    assert read(lambda txn: instances.linked_procedure(txn, 999999)) is None


def test_instances_stored_before_their_order_are_linked_by_study_then_accession(store: Store) -> None:
    store.write(lambda txn: [instances.add(txn, e) for e in (
        entry("2.25.1", study="7.7.1"), entry("2.25.2", study="7.7.2", accession_number="ACC7"),
        entry("2.25.3", study="7.7.3", accession_number="ACC8"))])
    refs = store.write(procedures)
    assert store.write(lambda txn: instances.link_waiting(txn, refs["ACC1"], "7.7.1")) == 1
    assert store.write(lambda txn: instances.link_waiting(txn, refs["ACC2-a"], "7.7.9", "ACC7")) == 1
    assert store.write(lambda txn: instances.link_waiting(txn, refs["ACC2-b"], "7.7.1", "ACC7")) == 0  # linked
    assert [row(store, uid)[0] for uid in ("2.25.1", "2.25.2", "2.25.3")] == [refs["ACC1"], refs["ACC2-a"], None]


def test_withdrawn_uids_hide_instances_now_and_later(store: Store) -> None:
    store.write(lambda txn: [instances.add(txn, e) for e in (
        entry("2.25.1", series="1.2.3.1"), entry("2.25.2", series="1.2.3.1"), entry("2.25.3", series="1.2.3.2"))])
    hidden = store.write(lambda txn: instances.withdraw(txn, ["2.25.3", "2.25.9"], ["1.2.3.1"], "110514", None, AT))
    assert hidden == 3
    assert [row(store, uid)[1] for uid in ("2.25.1", "2.25.2", "2.25.3")] == [1, 1, 1]
    assert sorted(store.read(lambda txn: txn.rows("SELECT uid, reason, at FROM hidden_references"))) == [
        ("1.2.3.1", "110514", AT), ("2.25.3", "110514", AT), ("2.25.9", "110514", AT)]
    assert store.write(lambda txn: instances.withdraw(txn, [], ["1.2.3.1"], "110514", None, AT)) == 0  # hidden already
    assert store.read(lambda txn: instances.is_withdrawn(txn, "2.25.9", "5.5.5"))        # not received yet
    assert store.read(lambda txn: instances.is_withdrawn(txn, "2.25.50", "1.2.3.1"))     # its series
    assert not store.read(lambda txn: instances.is_withdrawn(txn, "2.25.50", "1.2.3.3"))
