"""Outbound HL7 through the durable outbox, against real MLLP receivers on 127.0.0.1 (SWF.md 4.3/4.4, 8.6)."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from engine.hl7.validate import validate
from tests.conftest import run_swf
from tests.mllp_receiver import Receiver

ORDER = (b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{cid}|P|2.3.1||||||8859/1\n"
         b"PID|1||PAT4711^^^GENHOSP^MR||M\xdcLLER^ANNA^MARIA^^DR.||19780214|F\n"
         b"PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V17\n"
         b"ORC|NW|{placer}^HIS|F{placer}^RIS||SC||1^once^^20250304100000^^R\n"
         b"OBR|1|{placer}^HIS|F{placer}^RIS|CTCHESTC^CT chest^99RAD^CTCH-P1^Chest CT routine^99RAD||||||||||||||"
         b"{acc}|RP-{acc}|SPS-{acc}||||CT\n"
         b"ZDS|1.2.826.0.1.{n}^RIS^Application^DICOM\n\n")


def orders(tmp_path: Path, count: int, start: int = 0) -> Path:
    path = tmp_path / f"orders-{start}.hl7"
    path.write_bytes(b"".join(ORDER.replace(b"{cid}", f"C{n}".encode()).replace(b"{placer}", f"P{n}".encode())
                              .replace(b"{acc}", f"ACC{n}".encode()).replace(b"{n}", str(n).encode())
                              for n in range(start, start + count)))
    return path


def outbox(engine, *args: str) -> str:
    return run_swf("outbox", "--data-dir", str(engine.data_dir), *args).stdout


def test_scheduled_orders_reach_the_archive_in_order_as_valid_rad4(start_engine, tmp_path: Path) -> None:
    archive = Receiver()
    engine = start_engine(env={"SWF_ARCHIVE_ADDRESS": archive.address})
    assert "destination ris is off" in engine.log()
    assert run_swf("replay", str(orders(tmp_path, 3)), "--to", engine.address).returncode == 0
    received = archive.wait_for(3)
    assert [m.get("ORC-2.1") for m in received] == ["P0", "P1", "P2"]
    first = received[0]
    assert first.message_code == "OMI^O23" and first.get("ORC-1") == "NW" and first.get("ORC-5") == "SC"
    assert (first.get("IPC-1"), first.get("IPC-3"), first.get("IPC-4")) == ("ACC0", "1.2.826.0.1.0", "SPS-ACC0")
    assert first.get("IPC-9") == "CT1_AE" and first.get("PID-5.1") == "MÜLLER"
    assert validate(archive.raw[0]).problems == []
    archive.close()


def test_operator_cancel_is_reported_to_ris_and_archive(start_engine, tmp_path: Path) -> None:
    ris, archive = Receiver(), Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    run_swf("replay", str(orders(tmp_path, 1)), "--to", engine.address)
    archive.wait_for(1)
    result = run_swf("cancel", "ACC0", "--data-dir", str(engine.data_dir), "--reason", "patient declined")
    assert result.returncode == 0, result.stderr
    [status] = ris.wait_for(1)
    assert (status.message_code, status.get("ORC-1"), status.get("ORC-5")) == ("ORM^O01", "OC", "CA")
    assert (status.get("OBR-18"), status.get("ZDS-1.1")) == ("ACC0", "1.2.826.0.1.0")
    cancel = archive.wait_for(2)[1]
    assert (cancel.get("ORC-1"), cancel.get("ORC-5")) == ("CA", "CA")
    assert validate(ris.raw[0]).problems == []
    assert "SCHEDULED" not in run_swf("orders", "ACC0", "--data-dir", str(engine.data_dir)).stdout.split("history:")[0]
    ris.close(), archive.close()


def test_receiver_down_then_up_gets_everything_in_order(start_engine, tmp_path: Path) -> None:
    from tests.conftest import free_port

    port = free_port()
    engine = start_engine(env={"SWF_ARCHIVE_ADDRESS": f"127.0.0.1:{port}"}, routes=_fast_retry_routes(tmp_path))
    run_swf("replay", str(orders(tmp_path, 4)), "--to", engine.address)
    time.sleep(1.5)
    assert "connection" in outbox(engine).lower() or "refused" in engine.log().lower()
    archive = Receiver(port)
    received = archive.wait_for(4, timeout=20)
    assert [m.get("ORC-2.1") for m in received] == ["P0", "P1", "P2", "P3"]
    time.sleep(0.5)
    assert len(archive.attempts) == 4  # nothing sent twice once acknowledged
    archive.close()


def test_ae_answers_are_retried_then_parked_and_can_be_resent(start_engine, tmp_path: Path) -> None:
    refuse = {"on": True}
    archive = Receiver(answer=lambda message: "AE" if refuse["on"] else "AA")
    engine = start_engine(env={"SWF_ARCHIVE_ADDRESS": archive.address}, routes=_fast_retry_routes(tmp_path))
    run_swf("replay", str(orders(tmp_path, 1)), "--to", engine.address)
    deadline = time.monotonic() + 20
    while "dead" not in outbox(engine, "--dead") and time.monotonic() < deadline:
        time.sleep(0.3)
    dead = outbox(engine, "--dead")
    assert "AE" in dead and "order.scheduled" in dead
    assert len(archive.attempts) == 3  # first try + max_ae_retries (2)
    message_id = dead.strip().splitlines()[1].split()[0]
    refuse["on"] = False
    assert run_swf("outbox", "resend", message_id, "--data-dir", str(engine.data_dir)).returncode == 0
    assert archive.wait_for(1)[0].get("ORC-2.1") == "P0"
    assert "delivered" in outbox(engine, "--all")
    archive.close()


def test_pending_messages_survive_a_crash_and_go_out_once(start_engine, tmp_path: Path) -> None:
    from tests.conftest import free_port

    port = free_port()
    env = {"SWF_ARCHIVE_ADDRESS": f"127.0.0.1:{port}"}
    routes = _fast_retry_routes(tmp_path)
    engine = start_engine(env=env, routes=routes)
    run_swf("replay", str(orders(tmp_path, 3)), "--to", engine.address)
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait(10)
    archive = Receiver(port)
    start_engine(env=env, routes=routes, data_dir=engine.data_dir)
    received = archive.wait_for(3, timeout=20)
    assert [m.get("ORC-2.1") for m in received] == ["P0", "P1", "P2"]
    time.sleep(1)
    assert len(archive.attempts) == 3
    archive.close()


def _fast_retry_routes(tmp_path: Path) -> Path:
    """The shipped rules with an archive that retries quickly (tests must not wait minutes)."""
    import shutil

    from tests.conftest import ROOT

    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    text = (routes / "05-destinations.yaml").read_text()
    text = text.replace("    receiving_application: PACS\n",
                        "    receiving_application: PACS\n    retry_seconds: 0.2\n    max_retry_seconds: 0.5\n"
                        "    max_ae_retries: 2\n    ack_timeout: 3\n")
    (routes / "05-destinations.yaml").write_text(text)
    return routes


def test_operator_reschedule_is_reported_with_the_new_start(start_engine, tmp_path: Path) -> None:
    ris, archive = Receiver(), Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    run_swf("replay", str(orders(tmp_path, 1)), "--to", engine.address)
    archive.wait_for(1)
    moved = run_swf("reschedule", "ACC0", "--start", "202503051430", "--station", "CT2_AE",
                    "--data-dir", str(engine.data_dir))
    assert moved.returncode == 0, moved.stderr
    [status] = ris.wait_for(1)
    assert (status.get("ORC-1"), status.get("ORC-5")) == ("XO", "SC")
    change = archive.wait_for(2)[1]
    assert (change.get("ORC-1"), change.get("ORC-5"), change.get("TQ1-7"), change.get("IPC-9")) == (
        "XO", "SC", "202503051430", "CT2_AE")
    refused = run_swf("reschedule", "NOPE", "--start", "202503051430", "--data-dir", str(engine.data_dir))
    assert refused.returncode == 1 and "no order with accession number NOPE" in refused.stderr
    ris.close(), archive.close()
