"""The store on both engines: migrations, group commit, savepoints, the journal, patient and order SQL, the
ingest pipeline.

Every test taking ``store_url``/``store``/``make_store`` runs twice: on a SQLite file and on a real
PostgreSQL server (``-m postgres`` selects the second half).
"""
from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.store import reports
from engine.config import Config
from engine.hl7.profiles import load_profiles
from engine.rules.ruleset import load_ruleset
from engine.store import journal as journal_store
from engine.store import patients
from engine.store import orders as order_store
from engine.store.counters import next_value
from engine.store.database import POSTGRES, SQLITE, Store, StoreError, Transaction
from engine.store.schema import LATEST_VERSION
from engine.workflow.ingest import Ingestor
from tests.conftest import ROOT, Pipeline, hl7

TABLES = ("journal", "patients", "patient_identifiers", "visits", "orders", "requested_procedures",
          "scheduled_steps", "order_history", "patient_history", "counters")


class Boom(Exception):
    pass


def hold_writer(store: Store) -> threading.Event:
    """Occupy the writer thread until the returned event is set, so what is submitted meanwhile is one batch."""
    gate, running = threading.Event(), threading.Event()

    def block(txn: Transaction) -> str:
        running.set()
        assert gate.wait(20), "the test never released the writer"
        return "released"

    store.submit(block)
    assert running.wait(20)
    return gate


def counters(store: Store) -> dict[str, int]:
    return {r["name"]: r["value"] for r in store.read(lambda txn: txn.query("SELECT name, value FROM counters"))}


def put_counter(name: str, value: int = 1) -> Callable[[Transaction], str]:
    def work(txn: Transaction) -> str:
        txn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))
        return name
    return work


# -- migrations ----------------------------------------------------------------------------------
def test_migrations_create_the_schema_and_reopening_is_idempotent(make_store: Callable[..., Store]) -> None:
    store = make_store()
    for table in TABLES:
        assert store.read(lambda txn: txn.one(f"SELECT COUNT(*) AS n FROM {table}")) == {"n": 0}, table
    store.write(put_counter("kept", 7))
    store.close()
    for _ in range(2):
        again = make_store()
        versions = again.read(lambda txn: txn.query("SELECT version FROM schema_version ORDER BY version"))
        assert versions == [{"version": v} for v in range(1, LATEST_VERSION + 1)]
        assert counters(again) == {"kept": 7}
        again.close()


def test_stores_opened_at_once_migrate_once(make_store: Callable[..., Store]) -> None:
    stores: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(make_store())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(stores) == 4
    assert stores[0].read(lambda txn: txn.one("SELECT COUNT(*) AS n FROM schema_version")) == {"n": LATEST_VERSION}


# -- writes and reads ----------------------------------------------------------------------------
def test_write_commits_and_read_sees_it(store: Store) -> None:
    assert store.write(put_counter("a", 1)) == "a"
    assert counters(store) == {"a": 1}
    seen: list[dict[str, int]] = []
    reader = threading.Thread(target=lambda: seen.append(counters(store)))
    reader.start()
    reader.join(20)
    assert seen == [{"a": 1}]
    store.write(lambda txn: txn.execute("UPDATE counters SET value = value + 1 WHERE name = ?", ("a",)))
    assert counters(store) == {"a": 2}


def test_insert_returns_ids_and_blobs_read_back_as_bytes(store: Store) -> None:
    raw = b"MSH|^~\\&|\x00\xff\xe9\x0b\x1c\r"

    def journal(txn: Transaction) -> list[int]:
        return [journal_store.insert(txn, received_at="2025-03-04T08:00:00.000+01:00", peer="p",
                                     sending_application="RIS", sending_facility="H", control_id=f"C{n}",
                                     message_code="ADT^A04", hl7_version="2.5.1", payload_hash="h", raw=raw)
                for n in range(3)]

    ids = store.write(journal)
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
    rows = store.read(lambda txn: txn.query("SELECT id, raw, ack FROM journal ORDER BY id"))
    assert [r["id"] for r in rows] == ids
    assert all(type(r["raw"]) is bytes and r["raw"] == raw for r in rows)
    assert all(r["ack"] is None for r in rows)
    first, second = store.write(lambda txn: (patients.insert(txn, "P1", "", {}),
                                             patients.insert(txn, "P2", "", {})))
    assert isinstance(first, int) and second > first
    assert store.read(lambda txn: patients.by_ref(txn, second)).patient_id == "P2"


def test_query_one_rowcount_and_literal_percent_and_question_marks(store: Store) -> None:
    store.write(lambda txn: [patients.insert(txn, f"P{n}", "H", {"PatientName": "what?", "n": n}) for n in range(3)])

    def look(txn: Transaction) -> dict[str, Any]:
        return {
            "like": txn.query("SELECT patient_id FROM patients WHERE patient_id LIKE ? AND name_norm = 'WHAT?'"
                              " ORDER BY id", ("P%",)),
            "percent": txn.one("SELECT '100%' AS pct, 'a?b' AS q"),
            "none": txn.one("SELECT id FROM patients WHERE patient_id = ?", ("nobody",)),
            "empty": txn.query("SELECT id FROM patients WHERE patient_id = ?", ("nobody",)),
            "count": txn.one("SELECT COUNT(*) AS n, MAX(patient_id) AS last FROM patients"),
        }

    seen = store.read(look)
    assert seen["like"] == [{"patient_id": "P0"}, {"patient_id": "P1"}, {"patient_id": "P2"}]
    assert seen["percent"] == {"pct": "100%", "q": "a?b"}
    assert seen["none"] is None and seen["empty"] == []
    assert seen["count"] == {"n": 3, "last": "P2"}
    changed = store.write(lambda txn: txn.execute("UPDATE patients SET name_norm = ? WHERE patient_id <> ?",
                                                  ("X", "P0")).rowcount)
    assert changed == 2


# -- group commit --------------------------------------------------------------------------------
def test_many_submits_from_several_threads_all_resolve(store: Store) -> None:
    futures: list[Future] = []
    lock = threading.Lock()

    def producer(thread: int) -> None:
        for n in range(50):
            future = store.submit(lambda txn, name=f"t{thread}-{n}": (
                txn.insert("INSERT INTO patients (patient_id, created_at, updated_at) VALUES (?, '', '')", (name,))))
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [future.result(30) for future in futures]
    assert len(ids) == 300 and len(set(ids)) == 300
    assert store.read(lambda txn: txn.one("SELECT COUNT(*) AS n FROM patients")) == {"n": 300}
    assert 1 <= store.batches_committed <= 300


def test_a_failing_work_rolls_back_only_its_own_effects(store: Store) -> None:
    store.write(lambda txn: patients.insert(txn, "TAKEN", "", {}))
    before = store.batches_committed

    def python_error(txn: Transaction) -> None:
        put_counter("python-error")(txn)
        raise Boom("no")

    def sql_error(txn: Transaction) -> None:
        put_counter("sql-error")(txn)
        patients.insert(txn, "TAKEN", "", {})   # unique (patient_id, issuer): the statement fails

    gate = hold_writer(store)
    futures = [store.submit(put_counter("ok-1")), store.submit(python_error), store.submit(put_counter("ok-2")),
               store.submit(sql_error), store.submit(put_counter("ok-3"))]
    gate.set()
    assert futures[0].result(20) == "ok-1" and futures[2].result(20) == "ok-2" and futures[4].result(20) == "ok-3"
    with pytest.raises(Boom):
        futures[1].result(20)
    with pytest.raises(Exception) as raised:
        futures[3].result(20)
    assert not isinstance(raised.value, StoreError)
    assert "unique" in str(raised.value).lower()
    assert store.batches_committed == before + 1   # the five joined the blocker's batch: one commit
    assert counters(store) == {"ok-1": 1, "ok-2": 1, "ok-3": 1}


def test_work_queued_during_a_batch_joins_it_and_resolves_only_after_the_commit(store: Store) -> None:
    futures: list[Future] = []
    seen_at_commit: list[list[bool]] = []
    store.after_commit.append(lambda: seen_at_commit.append([future.done() for future in futures]))
    before = store.batches_committed
    gate = hold_writer(store)
    futures.extend(store.submit(put_counter(f"late-{n}")) for n in range(3))
    assert not any(future.done() for future in futures)
    gate.set()
    assert [future.result(20) for future in futures] == ["late-0", "late-1", "late-2"]
    assert store.batches_committed == before + 1          # one COMMIT for the blocker and the late three
    assert seen_at_commit == [[False, False, False]]       # none was resolved before that COMMIT ended
    assert counters(store) == {"late-0": 1, "late-1": 1, "late-2": 1}


def test_a_commit_failure_fails_every_future_of_the_batch(store: Store) -> None:
    # A deferred foreign key is checked at COMMIT on both engines: the batch commits nothing.
    store.write(lambda txn: txn.execute(
        f"CREATE TABLE deferred_child (id {store.dialect.pk},"
        " parent INTEGER REFERENCES patients (id) DEFERRABLE INITIALLY DEFERRED)"))

    def orphan(txn: Transaction) -> int:
        return txn.insert("INSERT INTO deferred_child (parent) VALUES (?)", (999999,))

    gate = hold_writer(store)
    futures = [store.submit(put_counter("a")), store.submit(orphan), store.submit(put_counter("b"))]
    gate.set()
    for future in futures:
        with pytest.raises(StoreError, match="commit failed"):
            future.result(20)
    assert counters(store) == {}
    assert store.read(lambda txn: txn.one("SELECT COUNT(*) AS n FROM deferred_child")) == {"n": 0}
    assert store.write(put_counter("after")) == "after"   # the writer goes on
    assert counters(store) == {"after": 1}


def test_savepoints_nest(store: Store) -> None:
    def work(txn: Transaction) -> None:
        put_counter("a")(txn)
        with txn.savepoint():
            put_counter("b")(txn)
            with pytest.raises(Boom):
                with txn.savepoint():
                    put_counter("c")(txn)
                    raise Boom
            with txn.savepoint():
                put_counter("d")(txn)
            with pytest.raises(Exception, match="(?i)unique"):
                with txn.savepoint():
                    put_counter("e")(txn)
                    put_counter("a")(txn)          # primary key taken: the statement fails
            put_counter("f")(txn)                   # PostgreSQL: the transaction is usable again
        with pytest.raises(Boom):
            with txn.savepoint():
                put_counter("g")(txn)
                with txn.savepoint():
                    put_counter("h")(txn)
                raise Boom

    store.write(work)
    assert sorted(counters(store)) == ["a", "b", "d", "f"]


def test_closed_store_refuses_work(make_store: Callable[..., Store]) -> None:
    store = make_store()
    store.write(put_counter("a"))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.submit(put_counter("b")).result(5)
    with pytest.raises(StoreError, match="closed"):
        counters(store)


# -- counters, patients, orders, journal ---------------------------------------------------------
def test_next_counter(store: Store) -> None:
    assert store.write(lambda txn: [next_value(txn, "acc") for _ in range(3)]) == [1, 2, 3]
    assert store.write(lambda txn: (next_value(txn, "acc"), next_value(txn, "other"))) == (4, 1)
    assert counters(store) == {"acc": 4, "other": 1}


def test_insert_and_find_patient(store: Store) -> None:
    ref = store.write(lambda txn: patients.insert(txn, "PAT1", "GENHOSP", {"PatientName": "MÜLLER^ANNA", "n": 1}))
    found = store.read(lambda txn: patients.find(txn, "PAT1", "GENHOSP"))
    name_norm = store.read(lambda txn: txn.row("SELECT name_norm FROM patients WHERE id = ?", (ref,)))[0]
    assert found is not None and found.id == ref
    assert (found.patient_id, found.issuer, name_norm, found.merged_into) == \
        ("PAT1", "GENHOSP", "MULLER^ANNA", None)
    assert found.attributes == {"PatientName": "MÜLLER^ANNA", "n": 1}
    assert store.read(lambda txn: patients.find(txn, "PAT1", "OTHER")) is None
    assert store.read(lambda txn: patients.by_ref(txn, ref)).patient_id == "PAT1"
    with pytest.raises(Exception, match="(?i)unique"):
        store.write(lambda txn: patients.insert(txn, "PAT1", "GENHOSP", {}))


def merge_scenario(txn: Transaction) -> dict[str, Any]:
    """Prior patient with 2 orders, 2 identifiers, visits V1+V2 and an earlier merged patient; survivor has V1."""
    prior = patients.insert(txn, "PRIOR", "H", {})
    survivor = patients.insert(txn, "SURV", "H", {})
    older = patients.insert(txn, "OLDER", "H", {})
    txn.execute("UPDATE patients SET merged_into = ? WHERE id = ?", (prior, older))
    for placer in ("PL1", "PL2"):
        order_store.insert(txn, prior, placer, "", "RIS", "broker", "V1")
    patients.add_identifier(txn, prior, "PRIOR", "H", "MR", "pid")
    patients.add_identifier(txn, prior, "ALT", "X", "PI", "pid")
    patients.add_identifier(txn, prior, "ALT", "X", "PI", "pid")   # already there: ignored
    patients.add_identifier(txn, survivor, "SURV", "H", "MR", "pid")
    patients.upsert_visit(txn, prior, "V1", "O", "RAD", "active")
    patients.upsert_visit(txn, prior, "V2", "I", "WARD", "active")
    patients.upsert_visit(txn, survivor, "V1", "O", "RAD", "active")
    moved = patients.merge(txn, prior, survivor)
    names = {r["id"]: r["patient_id"] for r in txn.query("SELECT id, patient_id FROM patients")}
    return {
        "moved": moved,
        "orders": [(names[r["patient_ref"]], r["placer_order_number"])
                   for r in txn.query("SELECT patient_ref, placer_order_number FROM orders ORDER BY id")],
        "survivor_ids": [(i.patient_id, i.issuer, i.identifier_type, i.source)
                         for i in patients.identifiers_of(txn, survivor)],
        "prior_ids": patients.identifiers_of(txn, prior),
        "visits": sorted((names[r["patient_ref"]], r["visit_number"])
                         for r in txn.query("SELECT patient_ref, visit_number FROM visits")),
        "merged_into": {names[r["id"]]: names.get(r["merged_into"])
                        for r in txn.query("SELECT id, merged_into FROM patients")},
    }


EXPECTED_MERGE = {
    "moved": 2,
    "orders": [("SURV", "PL1"), ("SURV", "PL2")],
    "survivor_ids": [("SURV", "H", "MR", "pid"), ("PRIOR", "H", "MR", "merged"), ("ALT", "X", "PI", "merged")],
    "prior_ids": [],
    "visits": [("PRIOR", "V1"), ("SURV", "V1"), ("SURV", "V2")],
    "merged_into": {"PRIOR": "SURV", "SURV": None, "OLDER": "SURV"},
}


def test_merge_patient(store: Store) -> None:
    assert store.write(merge_scenario) == EXPECTED_MERGE


def journal_scenario(txn: Transaction) -> dict[str, Any]:
    def entry(control_id: str, at: str = "2025-03-04T08:00:00.000+01:00") -> int:
        return journal_store.insert(txn, received_at=at, peer="p", sending_application="RIS", sending_facility="H",
                                    control_id=control_id, message_code="ORM^O01", hl7_version="2.3.1",
                                    payload_hash="h", raw=b"MSH|raw\xff")

    def claim(ref: int, control_id: str = "C1", facility: str = "H", at: str = "2025-03-04T08:00:00.000+01:00",
              since: str = "2025-03-01T00:00:00.000+01:00") -> Any:
        return journal_store.claim(txn, "RIS", facility, control_id, ref, at, since)

    seen: dict[str, Any] = {}
    failed = entry("C1")
    seen["first_claim"] = claim(failed)
    journal_store.finish(txn, failed, "failed", "AR", b"MSA|AR", "", "")
    journal_store.release(txn, "RIS", "H", "C1", failed)
    first = entry("C1")
    seen["after_release"] = claim(first)
    journal_store.finish(txn, first, "applied", "AA", b"MSA|AA|C1\r\xe9", "", "")
    found = claim(entry("C1"))
    assert found is not None and type(found.ack) is bytes
    seen["found"] = {**dataclasses.asdict(found), "id": found.id == first}
    seen["other_key"] = claim(entry("C1"), facility="OTHER")
    later = "2025-04-04T08:00:00.000+01:00"
    seen["outside_window"] = claim(entry("C1", later), at=later, since="2025-03-05T00:00:00.000+01:00")
    seen["renewed_holds"] = claim(entry("C1", later), at=later, since="2025-03-05T00:00:00.000+01:00") is not None
    return seen


EXPECTED_JOURNAL = {
    "first_claim": None,
    "after_release": None,
    "found": {"id": True, "payload_hash": "h", "ack": b"MSA|AA|C1\r\xe9", "ack_code": "AA", "status": "applied"},
    "other_key": None,
    "outside_window": None,
    "renewed_holds": True,
}


def test_journal_keys_claimed_and_released(store: Store) -> None:
    assert store.write(journal_scenario) == EXPECTED_JOURNAL


@pytest.mark.postgres
def test_the_store_gives_the_same_results_on_both_engines(tmp_path: Path, postgres_url: str) -> None:
    results = []
    for url in (f"sqlite:///{tmp_path / 'same.sqlite'}", postgres_url):
        store = Store(url)
        try:
            results.append(store.write(lambda txn: (merge_scenario(txn), journal_scenario(txn),
                                                    [next_value(txn, "n") for _ in range(3)])))
        finally:
            store.close()
    assert results[0] == results[1]


# -- the whole ingest pipeline -------------------------------------------------------------------
ADT_A04 = hl7(
    "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304081502||ADT^A04^ADT_A01|HIS0001|P|2.5.1||||||UNICODE UTF-8",
    "EVN|A04|20250304081500",
    "PID|1||PAT4711^^^GENHOSP&2.999.1.1&ISO^MR~ALT-1^^^OTHER^PI||MÜLLER^ANNA^MARIA^^DR.||19780214|F",
    "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V17")
ORM_O01 = (
    b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|RIS0000457|P|2.3.1||||||8859/1\r"
    b"PID|1||PAT4711^^^GENHOSP^MR||M\xdcLLER^ANNA^MARIA^^DR.||19780214|F\r"
    b"ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||1^once^^20250304100000^^R\r"
    b"OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest^99RAD||||||||||||||ACC25030417|RP-0417-1|SPS-0417-1"
    b"||||CT\r"
    b"ZDS|2.25.1964728415609372182033409816520049^RIS^Application^DICOM")


def test_ingest_pipeline(store_url: str, tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path / "var"), database_url=store_url)
    config.hl7.default_charset = "latin-1"
    ruleset = load_ruleset(ROOT / "routes")
    pipeline = Pipeline(Store(config.database), Ingestor(config, load_profiles(ROOT / "profiles"), lambda: ruleset),
                        config)
    try:
        registered = pipeline.send(ADT_A04)
        assert (registered.ack_code, registered.status) == ("AA", "applied"), registered.reason
        ordered = pipeline.send(ORM_O01)
        assert (ordered.ack_code, ordered.status) == ("AA", "applied"), ordered.reason
        again = pipeline.send(ORM_O01)
        assert (again.status, again.ack) == ("duplicate", ordered.ack)

        patients = pipeline.read("SELECT id, patient_id, issuer, attributes FROM patients")
        assert [(p["patient_id"], p["issuer"]) for p in patients] == [("PAT4711", "GENHOSP")]
        assert json.loads(patients[0]["attributes"])["PatientName"] == "MÜLLER^ANNA^MARIA^DR."
        orders = pipeline.read("SELECT * FROM orders")
        assert [(o["placer_order_number"], o["filler_order_number"], o["patient_ref"]) for o in orders] == \
            [("PLC-88812", "FIL-55120", patients[0]["id"])]
        steps = pipeline.store.read(lambda txn: order_store.steps_of_order(txn, orders[0]["id"]))
        assert [(s.sps_id, s.status, s.modality, s.accession_number, s.study_instance_uid)
                for s in steps] == [("SPS-0417-1", "SCHEDULED", "CT", "ACC25030417",
                                     "2.25.1964728415609372182033409816520049")]
        assert steps[0].station_ae_title == "CT1_AE"
        assert pipeline.read("SELECT COUNT(*) AS n FROM order_history WHERE order_ref = ?", (orders[0]["id"],)) \
            != [{"n": 0}]
        journal = pipeline.read("SELECT control_id, status, ack_code, raw, ack FROM journal ORDER BY id")
        assert [(j["control_id"], j["status"], j["ack_code"]) for j in journal] == [
            ("HIS0001", "applied", "AA"), ("RIS0000457", "applied", "AA"), ("RIS0000457", "duplicate", "AA")]
        assert journal[1]["raw"] == ORM_O01 and type(journal[1]["ack"]) is bytes
        assert journal[1]["ack"] == journal[2]["ack"] == ordered.ack
        # the CLI's read-only views run the same SQL on both engines
        listed = pipeline.store.read(lambda txn: reports.order_list(txn, 10))
        assert [(o.placer_order_number, list(o.accessions), o.patient_name) for o in listed] == \
            [("PLC-88812", ["ACC25030417"], "MÜLLER^ANNA^MARIA^DR.")]
        detail = pipeline.store.read(lambda txn: reports.order_detail(txn, "ACC25030417"))
        assert detail is not None and detail.history and detail.history[0].control_id == "RIS0000457"
        people = pipeline.store.read(lambda txn: reports.patient_detail(txn, "ALT-1", None))
        assert [p.patient.patient_id for p in people] == ["PAT4711"]
        entries = pipeline.store.read(lambda txn: reports.journal_list(txn, "duplicate", 5))
        assert [e.control_id for e in entries] == ["RIS0000457"]
    finally:
        pipeline.store.close()


# -- the dialect -----------------------------------------------------------------------------------
def test_placeholders_are_translated_outside_quotes_and_comments() -> None:
    text = "SELECT '?', \"a?\", x FROM t WHERE a = ? AND b LIKE '50%' -- why?\n AND c = ? /* ?% */"
    assert SQLITE.sql(text) == text
    assert POSTGRES.sql(text) == ("SELECT '?', \"a?\", x FROM t WHERE a = %s AND b LIKE '50%%' -- why?\n"
                                  " AND c = %s /* ?%% */")
    assert POSTGRES.sql("SELECT 'it''s ?' WHERE x = ?") == "SELECT 'it''s ?' WHERE x = %s"
    assert POSTGRES.sql("SELECT 10 % 3, ?") == "SELECT 10 %% 3, %s"


def test_a_bad_database_url_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        Store("mysql://u:secret@host/db")
    with pytest.raises(StoreError, match="cannot open") as raised:
        Store("postgresql://swf:secret@127.0.0.1:1/nothing?connect_timeout=2")
    assert "secret" not in str(raised.value)


@pytest.mark.postgres
def test_postgres_connections_lost_while_idle_are_reopened(postgres_url: str) -> None:
    import psycopg

    store = Store(postgres_url)
    try:
        store.write(put_counter("before"))
        assert counters(store) == {"before": 1}
        pids = [store._write_connection.info.backend_pid, store._local.connection.info.backend_pid]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        assert store.write(put_counter("after")) == "after"
        assert counters(store) == {"before": 1, "after": 1}
        assert store._write_connection.info.backend_pid not in pids
    finally:
        store.close()
