"""The Q/R reads of engine/store/qr_query.py on both engines: level values, tallies (with a presentation
state counted in the study it references), first instances and retrieve order, as frozen records."""
from __future__ import annotations

import dataclasses

import pytest

from engine.store import qr_query as qr
from engine.store.database import Store, Transaction
from engine.store.matching import QueryError

CT, GSPS = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.11.1"


def instance(txn: Transaction, sop: str, study: str, series: str, number: str, *, modality: str = "CT",
             sop_class: str = CT, hidden: int = 0) -> int:
    return txn.insert(
        "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid, patient_id,"
        " modality, instance_number, transfer_syntax_uid, size_bytes, path, received_at, hidden, attributes)"
        " VALUES (?, ?, ?, ?, 'P1', ?, ?, '1.2.840.10008.1.2.1', 1, ?, '', ?, ?)",
        (sop, sop_class, study, series, modality, number, f"x/{sop}.dcm", hidden, '{"StudyTime": "0830"}'))


@pytest.fixture
def archive(store: Store) -> Store:
    def fill(txn: Transaction) -> None:
        instance(txn, "1.1.2", "1.1", "1.1.10", "10")
        instance(txn, "1.1.1", "1.1", "1.1.10", "9")
        instance(txn, "1.1.3", "1.1", "1.1.11", "1", hidden=1)
        ps = instance(txn, "3.1.1", "3.1", "3.1.10", "1", modality="PR", sop_class=GSPS)
        txn.execute("INSERT INTO instance_references (instance_ref, series_instance_uid) VALUES (?, ?)", (ps, "1.1.10"))
    store.write(fill)
    return store


def test_study_walk_tallies_and_first_instances(archive: Store) -> None:
    condition = qr.build_qr_condition(qr.STUDY_ROOT, "STUDY", {"StudyInstanceUID": "1.1"})
    values = archive.read(lambda txn: qr.matching_values(txn, condition, "STUDY"))
    assert values == ["1.1"]
    # ... and it holds its two CT images and the PR of study 3.1 that references series 1.1.10 (RAD-9)
    tally = archive.read(lambda txn: qr.level_tallies(txn, "STUDY", ["1.1"]))["1.1"]
    assert (tally.instances, tally.series, tally.modalities, tally.sop_classes) == (3, 2, ("CT", "PR"), tuple(sorted((CT, GSPS))))
    with pytest.raises(dataclasses.FrozenInstanceError):
        tally.instances = 0  # type: ignore[misc]
    first = archive.read(lambda txn: qr.instances_by_id(txn, [tally.first]))[tally.first]
    assert (first.sop_instance_uid, first.attributes) == ("1.1.2", {"StudyTime": "0830"})


def test_images_and_retrieve_in_instance_number_order(archive: Store) -> None:
    keys = {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.10"}
    images = archive.read(lambda txn: qr.matching_instances(txn, qr.build_qr_condition(qr.STUDY_ROOT, "IMAGE", keys)))
    assert [i.sop_instance_uid for i in images] == ["1.1.1", "1.1.2"]   # 9 before 10; hidden never offered
    items = archive.read(lambda txn: qr.retrieve_items(txn, qr.build_qr_condition(
        qr.STUDY_ROOT, "STUDY", {"StudyInstanceUID": "1.1"}, retrieve=True)))
    assert [(i.sop_instance_uid, i.path) for i in items] == [
        ("1.1.1", "x/1.1.1.dcm"), ("1.1.2", "x/1.1.2.dcm"), ("3.1.1", "x/3.1.1.dcm")]
    with pytest.raises(QueryError):
        qr.build_qr_condition(qr.STUDY_ROOT, "IMAGE", {"StudyInstanceUID": "1.1"})
