"""Worklist housekeeping (issue 16) against the real engine: orders over MLLP, the worklist read with DCMTK
findscu, stand-in RIS and archive receivers, and /metrics.  Age-out with a scheduled date in the past
(discontinue: the RIS and the archive told; remove: the step keeps its status, leaves the worklist, and a
destination with ``notify_aged_out: false`` hears nothing); retention with rows backdated in the
engine's SQLite file while it runs."""
from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import ROOT, EngineProcess, free_port, run_swf
from tests.integration.test_commitment import wait_for
from tests.integration.test_metrics import scrape
from tests.integration.test_mpps import ACCESSION, ORDER, Modality, in_progress, worklist_matches
from tests.mllp_receiver import Receiver

FUTURE_ACCESSION = "ACC20990101"
FUTURE_ORDER = (ORDER.replace(b"RIS0000457", b"RIS0000458").replace(b"PLC-88812", b"PLC-99901")
                .replace(b"FIL-55120", b"FIL-99901").replace(ACCESSION.encode(), FUTURE_ACCESSION.encode())
                .replace(b"20250304100000", b"20990101100000").replace(b"RP-0417-1", b"RP-9901-1")
                .replace(b"SPS-0417-1", b"SPS-9901-1").replace(b"2.25.196472841560937218203340981652004917121",
                                                               b"2.25.9901"))


def send(engine: EngineProcess, tmp_path: Path, *messages: bytes) -> None:
    sample = tmp_path / "orders.hl7"
    sample.write_bytes(b"".join(message.replace(b"\n", b"\r") + b"\n" for message in messages))
    replay = run_swf("replay", str(sample), "--to", engine.address, "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def db(engine: EngineProcess, sql: str, params: tuple = ()) -> list[tuple]:
    """The engine's own SQLite file, read or written (backdating) while it runs."""
    with sqlite3.connect(engine.data_dir / "swf.sqlite", timeout=10) as connection:
        return connection.execute(sql, params).fetchall()


def days_ago(days: float) -> str:
    return (datetime.now().astimezone() - timedelta(days=days)).isoformat()


def routes_with(tmp_path: Path, archive_extra: str = "") -> Path:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    if archive_extra:
        path = routes / "05-destinations.yaml"
        text = path.read_text()
        marker = "    receiving_application: PACS\n"
        assert marker in text
        path.write_text(text.replace(marker, marker + archive_extra, 1))
    return routes


def step_of(engine: EngineProcess, sps_id: str) -> tuple[str, str]:
    [(status, aged_out_at)] = db(engine, "SELECT status, aged_out_at FROM scheduled_steps WHERE sps_id = ?", (sps_id,))
    return status, aged_out_at


def test_a_step_never_started_is_discontinued_and_the_ris_and_archive_are_told(start_engine, tmp_path: Path) -> None:
    ris, archive = Receiver(), Receiver()
    config = tmp_path / "engine.yaml"
    config.write_text("age_out: {days: 1, mode: discontinue, scan_seconds: 0.2}\ncluster: {heartbeat_seconds: 0.2}\n")
    engine = start_engine("--config", str(config), routes=routes_with(tmp_path),
                          env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    send(engine, tmp_path, ORDER, FUTURE_ORDER)
    [status] = ris.wait_for(1, timeout=8)
    assert status.message_code == "ORM^O01" and (status.get("ORC-1"), status.get("ORC-5")) == ("SC", "DC")
    assert (status.get("OBR-18"), status.get("OBR-25"), status.get("MSH-5")) == (ACCESSION, "X", "RIS")
    told = wait_for(lambda: [m for m in archive.messages if m.get("ORC-1") == "DC"], 8, "the archive told DC/CA")
    assert [(m.get("ORC-5"), m.get("IPC-1")) for m in told] == [("CA", ACCESSION)]
    assert step_of(engine, "SPS-0417-1")[0] == "DISCONTINUED" and step_of(engine, "SPS-9901-1")[0] == "SCHEDULED"
    [(kind, detail)] = db(engine, "SELECT kind, detail FROM order_history WHERE kind LIKE '%aged out%'")
    assert "SPS-0417-1 aged out (discontinue)" in detail and "2025-03-04" in detail
    assert worklist_matches(engine, ACCESSION) == 0 and worklist_matches(engine, FUTURE_ACCESSION) == 1
    assert scrape(engine.http_port)[("swf_aged_out_steps_total", (("mode", "discontinue"),))] == 1.0
    assert "SPS SPS-0417-1 of accession ACC25030417 aged out (discontinue)" in engine.log()
    assert len(ris.messages) == 1     # aged out once: later scans find nothing more
    ris.close(), archive.close()


def test_remove_mode_and_retention_keep_what_is_still_needed(start_engine, tmp_path: Path) -> None:
    archive = Receiver()
    config = tmp_path / "engine.yaml"
    config.write_text("age_out: {days: 1, mode: remove, scan_seconds: 0.2}\ncluster: {heartbeat_seconds: 0.2}\n"
                      "hl7: {duplicate_window_days: 2}\n"
                      "retention: {journal_days: 1, outbox_days: 1, history_days: 1, audit_days: 1, run_seconds: 0.2}\n")
    down = free_port()   # a RIS that is down: the aged-out status stays pending in the outbox
    engine = start_engine("--config", str(config), routes=routes_with(tmp_path, "    notify_aged_out: false\n"),
                          env={"SWF_RIS_ADDRESS": f"127.0.0.1:{down}", "SWF_ARCHIVE_ADDRESS": archive.address})
    send(engine, tmp_path, ORDER, ORDER)                     # the second copy is a duplicate
    archive.wait_for(1, timeout=8)                           # order.scheduled (NW) delivered
    wait_for(lambda: step_of(engine, "SPS-0417-1")[1], 8, "the step aged out")
    assert step_of(engine, "SPS-0417-1")[0] == "SCHEDULED"  # remove: its status stays, an MPPS still finds it
    assert worklist_matches(engine, ACCESSION) == 0
    pending = wait_for(lambda: db(engine, "SELECT id FROM outbox WHERE kind = 'order.aged_out' AND destination = 'ris'"
                                          " AND status = 'pending'"), 8, "the aged-out status queued to the RIS")
    assert db(engine, "SELECT COUNT(*) FROM outbox WHERE kind = 'order.aged_out' AND destination = 'archive'") == [(0,)]
    journal = db(engine, "SELECT id, status FROM journal ORDER BY id")
    assert [status for _id, status in journal] == ["applied", "duplicate"], journal
    first = journal[0][0]
    # backdated: both copies past journal_days (1) but the first still in the duplicate window (2), the
    # history, the delivered NW and the pending status past their ages
    db(engine, "UPDATE journal SET received_at = ?", (days_ago(1.5),))
    db(engine, "UPDATE journal_keys SET received_at = ?", (days_ago(1.5),))
    db(engine, "UPDATE order_history SET at = ?", (days_ago(5),))
    db(engine, "UPDATE outbox SET delivered_at = ? WHERE status = 'delivered'", (days_ago(5),))
    db(engine, "UPDATE outbox SET created_at = ?", (days_ago(5),))
    wait_for(lambda: db(engine, "SELECT id FROM journal") == [(first,)], 8, "the duplicate's journal row purged")
    wait_for(lambda: db(engine, "SELECT COUNT(*) FROM order_history") == [(0,)], 8, "the old history purged")
    wait_for(lambda: db(engine, "SELECT status FROM outbox") == [("pending",)], 8, "the delivered NW purged")
    assert db(engine, "SELECT id FROM outbox") == pending                                # pending: kept
    send(engine, tmp_path, ORDER)                            # inside the window: still a duplicate
    assert db(engine, "SELECT status FROM journal WHERE id <> ?", (first,)) == [("duplicate",)]
    # past the window the first copy goes too, and a resend of its control ID is a new message
    db(engine, "UPDATE journal SET received_at = ?", (days_ago(3),))
    db(engine, "UPDATE journal_keys SET received_at = ?", (days_ago(3),))
    wait_for(lambda: db(engine, "SELECT COUNT(*) FROM journal") == [(0,)], 8, "the first copy purged")
    assert db(engine, "SELECT COUNT(*) FROM journal_keys") == [(0,)]
    send(engine, tmp_path, ORDER)
    assert db(engine, "SELECT control_id, status FROM journal") == [("RIS0000457", "applied")]
    samples = scrape(engine.http_port)
    assert samples[("swf_retention_purged_rows_total", (("table", "journal"),))] == 3.0
    assert samples[("swf_retention_purged_rows_total", (("table", "order_history"),))] >= 2.0
    assert samples[("swf_aged_out_steps_total", (("mode", "remove"),))] == 1.0
    log = engine.log()
    assert "retention: 1 row(s) of journal purged" in log and "row(s) of outbox purged" in log
    modality = Modality(engine.dicom_port)                   # a modality that fetched the item before it aged out
    assert modality.create(in_progress(), "2.25.777001")[0].Status == 0x0000
    modality.close()
    assert step_of(engine, "SPS-0417-1")[0] == "STARTED"
    # notify_aged_out: false: no DC; the resend applied as new reached the archive as a change (XO)
    assert [m.get("ORC-1") for m in wait_for(lambda: archive.messages[1:] and archive.messages, 8, "the XO")] == [
        "NW", "XO"]
    archive.close()


def test_an_unknown_age_out_mode_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("age_out: {days: 1, mode: delete}\n")
    refused = run_swf("serve", "--config", str(config), "--data-dir", str(tmp_path / "var"), timeout=30)
    assert refused.returncode == 2 and "age_out.mode 'delete': use one of discontinue, remove" in refused.stderr
    assert not (tmp_path / "var").exists()                  # refused before the database was opened
