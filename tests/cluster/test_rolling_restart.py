"""A rolling restart under load (issue 15): two instances behind a real HAProxy on one PostgreSQL; stop A
gracefully (SIGTERM), start it again while B holds the cluster (so its start goes through the schema check
with another instance running), then the same for B.

Four MLLP senders send orders through the proxy (each resends a message until it is answered AA, as a
sender does after a lost connection); a modality sends MPPS IN PROGRESS / COMPLETED through the proxy, so a
stand-in RIS receives status messages; a stand-in archive, answering a little slowly so that a delivery is
in flight when an instance stops, receives every new order.  Then: every ACK a sender got is the original
ACK of a message applied exactly once; every status and order message reached its receiver exactly once
(a graceful stop lets the delivery in flight finish: no repeat, no extra attempt), in change order; the
stopped instance's leases were released, and the time until the other instance held them (takeover) is
printed.  A lease that was not released would only be taken over after ``cluster.lease_seconds`` (30 s).
A receiver that never ACKs holds a stop up for ``FINISH_SECONDS`` only.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import generate_uid

from engine.outbound.delivery import FINISH_SECONDS
from tests.cluster.conftest import Instance, http_status, mllp_exchange, wait_until
from tests.cluster.test_failover import database_rows, mpps, read_frame, worklist_query
from tests.integration.test_mllp import msa, order
from tests.integration.test_mpps import final, in_progress
from tests.mllp_receiver import Receiver

SENDERS = 4
PERFORMED = 8          # orders the modality performs: two status messages each for the RIS
LEASE_SECONDS = 30.0   # the default: a lease left to expire would hold up the takeover this long


@dataclass
class Load:
    """What the clients saw: the ACK each sender got per control ID, how often it had to send it."""
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acks: dict[str, bytes] = field(default_factory=dict)
    sends: dict[str, int] = field(default_factory=dict)
    performed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sender(load: Load, port: int, number: int) -> None:
    """Sends R<n>-0, R<n>-1, ... one at a time; a message unanswered or not AA is sent again."""
    sock: socket.socket | None = None
    sequence = 0
    while not load.stop.is_set():
        control_id = f"R{number}-{sequence}"
        frame = b"\x0b" + order(control_id) + b"\x1c\r"
        sends = 0
        while True:   # not stopped halfway: a message is sent until it is ACKed
            sends += 1
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(frame)
                ack = read_frame(sock)
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
                continue
            if msa(ack)[1] == "AA":
                break
            time.sleep(0.2)
        with load.lock:
            load.acks[control_id], load.sends[control_id] = ack, sends
        sequence += 1
        time.sleep(0.15)
    if sock is not None:
        sock.close()


def modality(load: Load, port: int, studies: dict[str, str]) -> None:
    """MPPS IN PROGRESS then COMPLETED for each order, through the proxy, retried until answered."""
    for k, (accession, study) in enumerate(studies.items()):
        performed = generate_uid()
        steps = (("create", in_progress(accession=accession, rp=f"RP-M{k}", sps=f"S-M{k}", study=study),
                  (0x0000, 0x0111)),   # 0x0111: a retry whose first N-CREATE was kept, its answer lost
                 ("set", final(), (0x0000, 0x0110)))   # 0x0110: a retry of an N-SET that was kept (completed)
        for operation, dataset, retry_answers in steps:
            deadline = time.monotonic() + 30
            attempt = 0
            while True:
                try:
                    status = mpps(port, operation, dataset, performed)
                    if status == 0x0000 or (attempt and status in retry_answers):
                        break
                    raise RuntimeError(f"N-{operation.upper()} {accession}: 0x{status:04X}")
                except Exception as exc:  # noqa: BLE001 - the instance went away mid-step: try again
                    attempt += 1
                    if time.monotonic() > deadline:
                        load.errors.append(f"modality: {exc}")
                        return
                    time.sleep(0.3)
            time.sleep(0.5)
        with load.lock:
            load.performed.append(accession)


def instance_name(instance: Instance) -> str:
    """The name the instance registers under by default: host name + ":" + MLLP port."""
    return f"{socket.gethostname()}:{instance.mllp_port}"


def live_leases(database_url: str, holder: str) -> set[str]:
    return {name for (name,) in database_rows(database_url, "SELECT name FROM cluster_leases WHERE holder = %s"
                                              " AND expires_at > %s", (holder, time.time()))}


def pending_destinations(database_url: str) -> set[str]:
    return {f"outbox:{d}" for (d,) in database_rows(database_url, "SELECT DISTINCT destination FROM outbox"
                                                    " WHERE status = 'pending'")}


def graceful_stop(instance: Instance, other: Instance, database_url: str) -> tuple[float, dict[str, float]]:
    """SIGTERM ``instance``: (seconds until it exited, and for each lease it held that ``other`` needs, the
    seconds from SIGTERM until ``other`` held it).  An outbox lease is taken when there is something to
    deliver: one whose queue stays empty is only checked to be released."""
    assert instance.process is not None
    held = live_leases(database_url, instance_name(instance))
    began = time.monotonic()
    instance.process.terminate()
    assert instance.process.wait(20) == 0, f"{instance.name} did not stop cleanly:\n{instance.log()[-3000:]}"
    stopped = time.monotonic() - began
    assert live_leases(database_url, instance_name(instance)) == set(), "leases not released at the stop"
    taken: dict[str, float] = {}

    def taken_over() -> bool:
        now = live_leases(database_url, instance_name(other))
        taken.update({name: time.monotonic() - began for name in held & now if name not in taken})
        waiting = held - set(taken)
        return not waiting or not (waiting & ({"leader"} | pending_destinations(database_url)))

    wait_until(taken_over, 20, f"{instance_name(other)} holds what {instance_name(instance)} held", step=0.02)
    return stopped, taken


def test_rolling_restart_under_load_loses_nothing_and_repeats_nothing(make_instances, make_proxy, database_url,
                                                                      tmp_path: Path) -> None:
    began = time.monotonic()
    ris = Receiver()
    archive = Receiver(answer=lambda message: time.sleep(0.03) or "AA")   # a delivery is in flight at a stop
    load = Load()
    threads: list[threading.Thread] = []
    config = tmp_path / "engine.yaml"
    config.write_text(f"cluster:\n  lease_seconds: {LEASE_SECONDS}\n  heartbeat_seconds: 1\n")
    try:
        a, b = make_instances(2, extra=("--config", str(config)),
                              env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
        proxy = make_proxy([a, b])
        studies = {}
        for k in range(PERFORMED):   # the modality's orders, scheduled before the load starts
            assert msa(mllp_exchange(a.mllp_port, order(f"M{k}")))[1] == "AA"
            [entry] = worklist_query(a.dicom_port, f"A-M{k}")
            studies[f"A-M{k}"] = str(entry.StudyInstanceUID)
        wait_until(lambda: http_status(a.http_port) == 200 and http_status(b.http_port) == 200, 10, "both ready")
        threads = [threading.Thread(target=sender, args=(load, proxy.mllp_port, n), daemon=True)
                   for n in range(SENDERS)]
        performing = threading.Thread(target=modality, args=(load, proxy.dicom_port, studies), daemon=True)
        for thread in [*threads, performing]:
            thread.start()
        schema = database_rows(database_url, "SELECT version FROM schema_version ORDER BY version")

        takeovers = []
        for victim, other in ((a, b), (b, a)):
            time.sleep(2)
            stopped, taken = graceful_stop(victim, other, database_url)
            takeovers.append((victim.name, stopped, taken))
            assert all(seconds < LEASE_SECONDS / 3 for seconds in taken.values()), taken
            # it starts while the other instance holds the cluster (the leader lease and every queue)
            assert "leader" in live_leases(database_url, instance_name(other))
            victim.start(60)
            wait_until(lambda: http_status(victim.http_port) == 200, 30, f"{victim.name} ready again")
            time.sleep(1.5)   # the proxy's health check (rise 2 x 500 ms) takes it back
        assert database_rows(database_url, "SELECT version FROM schema_version ORDER BY version") == schema
        assert all("schema migrated" not in instance.log().split(f"--- start 2 of {instance.name}")[1]
                   for instance in (a, b))   # the restarts found the schema current and changed nothing
        assert any(taken for *_, taken in takeovers), "no lease was taken over"

        performing.join(40)
        load.stop.set()
        for thread in threads:
            thread.join(15)
        assert not load.errors, load.errors
        assert load.performed == list(studies)

        # every ACK a sender got is the original ACK of a message applied exactly once
        assert len(load.acks) > SENDERS * 4, f"only {len(load.acks)} messages ACKed"
        journal = database_rows(database_url, "SELECT control_id, status, ack FROM journal"
                                " WHERE control_id LIKE 'R_-%%'")
        applied = {cid: bytes(ack) for cid, status, ack in journal if status == "applied"}
        assert sum(1 for _, status, _ in journal if status == "applied") == len(applied)
        assert {cid: ack for cid, ack in load.acks.items() if applied.get(cid) != ack} == {}
        assert set(applied) == set(load.acks)
        placed = dict(database_rows(database_url, "SELECT placer_order_number, COUNT(*) FROM orders"
                                    " GROUP BY placer_order_number"))
        assert [cid for cid in load.acks if placed.get(f"P-{cid}") != 1] == []

        # every change reached its receiver exactly once, in change order per order, in one attempt
        for receiver, destination, least in ((ris, "ris", 2 * PERFORMED), (archive, "archive", len(load.acks))):
            rows = database_rows(database_url, "SELECT control_id, accession_number FROM outbox"
                                 " WHERE destination = %s ORDER BY id", (destination,))
            assert len(rows) >= least, destination
            wait_until(lambda: len(receiver.attempts) >= len(rows), 30, f"every message at {destination}")
            time.sleep(0.3)   # a repeat would come now
            assert sorted(receiver.attempts) == sorted(cid for cid, _ in rows), f"{destination}: not once each"
            arrived = {cid: n for n, cid in enumerate(receiver.attempts)}
            for accession in {acc for _, acc in rows}:
                changes = [cid for cid, acc in rows if acc == accession]
                assert sorted(changes, key=arrived.__getitem__) == changes, f"{destination}: {accession} out of order"
            assert database_rows(database_url, "SELECT status, attempts, COUNT(*) FROM outbox WHERE destination = %s"
                                 " GROUP BY status, attempts", (destination,)) == [("delivered", 1, len(rows))]

        resent = sorted(cid for cid, sends in load.sends.items() if sends > 1)
        print(f"\nrolling restart: {len(load.acks)} messages ACKed by {SENDERS} senders ({len(resent)} resent after a"
              f" stop), {len(ris.attempts)} statuses at the RIS, {len(archive.attempts)} orders at the archive; "
              + "; ".join(f"{name} stopped in {stopped:.2f} s, its leases taken over after SIGTERM in "
                          + (", ".join(f"{lease} {s:.2f} s" for lease, s in sorted(taken.items())) or "none")
                          for name, stopped, taken in takeovers)
              + f"; whole test {time.monotonic() - began:.0f} s")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(5)
        ris.close()
        archive.close()


def test_a_stop_waits_for_an_ack_only_so_long(make_instances, database_url) -> None:
    """A receiver that never ACKs the message in flight holds a stop up ``FINISH_SECONDS``, not longer: the
    delivery is cut off, the message stays pending for the next holder, the leases are released."""
    silent = Receiver(answer=lambda message: "silent")
    try:
        [a] = make_instances(1, env={"SWF_ARCHIVE_ADDRESS": silent.address})
        assert msa(mllp_exchange(a.mllp_port, order("SLOW1")))[1] == "AA"
        wait_until(lambda: silent.attempts, 10, "the order in flight to the archive")
        assert a.process is not None
        began = time.monotonic()
        a.process.terminate()
        assert a.process.wait(FINISH_SECONDS + 10) == 0
        stopped = time.monotonic() - began
        assert FINISH_SECONDS - 0.5 < stopped < FINISH_SECONDS + 8, stopped
        assert "deliveries in flight to archive not ended within 5 s of the stop: cut off" in a.log()
        assert database_rows(database_url, "SELECT status FROM outbox WHERE destination = 'archive'") == [("pending",)]
        assert live_leases(database_url, instance_name(a)) == set()
    finally:
        silent.close()
