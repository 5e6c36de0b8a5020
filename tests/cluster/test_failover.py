"""Failover under load (issue 15): two instances behind a real HAProxy, one PostgreSQL, one storage dir.

Eight MLLP senders send orders through the proxy (each waits for its ACK and, on a lost connection or
a non-AA answer, resends the same message, as a sender does); a modality does MWL + MPPS + C-STORE +
storage commitment through the proxy; a stand-in RIS (tests/mllp_receiver.py) receives the status
messages; an MWL probe queries through the proxy all along.  One instance is killed with SIGKILL and
started again, three times.  Then: every ACKed message is in the journal and applied exactly once;
every status change reached the RIS, and every new order the archive, once and in change order; every committed instance is on disk and
indexed; MWL answers resumed after each kill.  The failover time (a sender's last ACK from the killed
instance to its first ACK from the other) and the MWL gap are printed.
"""
from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep, ModalityWorklistInformationFind

from tests.cluster.conftest import http_status, mllp_exchange, wait_until
from tests.conftest import free_port
from tests.integration.test_commitment import Modality as CommitmentModality, store_instances
from tests.integration.test_mllp import msa, order
from tests.integration.test_mpps import final, in_progress
from tests.mllp_receiver import Receiver

SENDERS = 8
KILLS = 3
MODALITY_ORDERS = 4
ENGINE_AE = "SWF_ENGINE"


def cluster_config(tmp_path: Path, modality: CommitmentModality) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(
        "dicom:\n"
        "  aes:\n"
        f"    {modality.title}: {{host: 127.0.0.1, port: {modality.port}}}\n"
        "  commitment_grace_seconds: 2\n"
        "  commitment_retry_seconds: 0.3\n"
        "  commitment_max_retry_seconds: 1\n")
    return path


@dataclass
class Load:
    """What the clients saw: ACKed control IDs, failovers, MWL answers, and the modality's work."""
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[str] = field(default_factory=list)
    sender_failovers: list[tuple[float, float]] = field(default_factory=list)  # (last ACK before, first after)
    mwl_answers: list[float] = field(default_factory=list)
    commitments: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    modality_done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_frame(sock: socket.socket) -> bytes:
    buffer = b""
    while b"\x1c\r" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        buffer += chunk
    return buffer.split(b"\x1c\r")[0].lstrip(b"\x0b")


def sender(load: Load, port: int, number: int) -> None:
    """One sender on one connection at a time: a message is resent until it is answered AA."""
    sock: socket.socket | None = None
    last_ack, broken = time.monotonic(), False
    sequence = 0
    while not load.stop.is_set():
        control_id = f"S{number}-{sequence}"
        frame = b"\x0b" + order(control_id) + b"\x1c\r"
        while not load.stop.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(frame)
                code = msa(read_frame(sock))[1]
            except (OSError, ConnectionError, AssertionError):
                if sock is not None:
                    sock.close()
                sock, broken = None, True
                time.sleep(0.05)
                continue
            if code != "AA":
                time.sleep(0.2)
                continue
            now = time.monotonic()
            with load.lock:
                load.acked.append(control_id)
                if broken:
                    load.sender_failovers.append((last_ack, now))
            last_ack, broken = now, False
            break
        sequence += 1
        time.sleep(0.05)
    if sock is not None:
        sock.close()


def worklist_query(port: int, accession: str, timeout: float = 5) -> list[Dataset]:
    """C-FIND MWL for one accession through ``port``; raises when there is no Success answer."""
    query = Dataset()
    query.AccessionNumber = accession
    query.PatientID = ""
    query.StudyInstanceUID = ""
    query.RequestedProcedureID = ""
    step = Dataset()
    step.ScheduledProcedureStepID = ""
    step.Modality = ""
    query.ScheduledProcedureStepSequence = [step]
    ae = AE(ae_title="CT1_AE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title=ENGINE_AE)
    if not assoc.is_established:
        raise ConnectionError("MWL association not established")
    try:
        found, final_status = [], None
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            if status is None or "Status" not in status:
                raise ConnectionError("MWL C-FIND without an answer")
            final_status = int(status.Status)
            if final_status in (0xFF00, 0xFF01):
                found.append(identifier)
        if final_status != 0x0000:
            raise ConnectionError(f"MWL C-FIND ended 0x{final_status or 0:04X}")
        return found
    finally:
        assoc.release()


def mwl_probe(load: Load, port: int) -> None:
    while not load.stop.is_set():
        try:
            worklist_query(port, "A-MOD0", timeout=3)
            with load.lock:
                load.mwl_answers.append(time.monotonic())
        except Exception:  # noqa: BLE001 - an unanswered query is what the probe measures
            pass
        time.sleep(0.2)


def mpps(port: int, operation: str, dataset: Dataset, uid: str) -> int:
    ae = AE(ae_title="CT1_AE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title=ENGINE_AE)
    if not assoc.is_established:
        raise ConnectionError("MPPS association not established")
    try:
        send = assoc.send_n_create if operation == "create" else assoc.send_n_set
        status, _ = send(dataset, ModalityPerformedProcedureStep, uid)
        if status is None or "Status" not in status:
            raise ConnectionError(f"MPPS N-{operation.upper()} without an answer")
        return int(status.Status)
    finally:
        assoc.release()


def retrying(load: Load, what: str, step: Callable[[int], Any], deadline: float) -> Any:
    """Run ``step(attempt)`` until it returns without raising, or the deadline (then record an error)."""
    attempt = 0
    while time.monotonic() < deadline:
        try:
            return step(attempt)
        except Exception:  # noqa: BLE001 - the instance went away mid-step: the modality tries again
            attempt += 1
            time.sleep(0.3)
    load.errors.append(f"modality: {what} did not succeed in time")
    return None


class ProxyTarget:
    """What tests.integration helpers need of an engine: the DICOM port (here the proxy's)."""

    def __init__(self, dicom_port: int):
        self.dicom_port = dicom_port


def modality_day(load: Load, port: int, commitment: CommitmentModality, deadline: float) -> None:
    """For each order: MWL, MPPS IN PROGRESS, two C-STOREs, MPPS COMPLETED, storage commitment."""
    target = ProxyTarget(port)
    for k in range(MODALITY_ORDERS):
        accession = f"A-MOD{k}"
        def scheduled(_attempt: int) -> list[Dataset]:
            found = worklist_query(port, accession)
            if not found:
                raise LookupError(f"{accession} not in the worklist yet")
            return found

        entries = retrying(load, f"MWL {accession}", scheduled, deadline)
        if not entries:
            return
        study = str(entries[0].StudyInstanceUID)
        performed = generate_uid()
        created = in_progress(accession=accession, rp=f"RP-MOD{k}", sps=f"S-MOD{k}", study=study)

        def create(attempt: int) -> int:
            status = mpps(port, "create", created, performed)
            if status not in ((0x0000,) if attempt == 0 else (0x0000, 0x0111)):
                raise RuntimeError(f"N-CREATE 0x{status:04X}")
            return status

        if retrying(load, f"N-CREATE {accession}", create, deadline) is None:
            return
        stored = retrying(load, f"C-STORE {accession}", lambda _: store_instances(target, 2, title="CT1_AE",
                                                                                   study=study), deadline)
        if not stored:
            return

        def complete(attempt: int) -> int:
            status = mpps(port, "set", final(), performed)
            if status != 0x0000 and attempt == 0:
                raise RuntimeError(f"N-SET 0x{status:04X}")
            return status   # a retry after a lost answer may find the step completed already

        if retrying(load, f"N-SET {accession}", complete, deadline) is None:
            return
        transaction = generate_uid()
        def commit(_attempt: int) -> int:
            status = commitment.request(target, transaction, stored)
            if status != 0x0000:
                raise RuntimeError(f"N-ACTION 0x{status:04X}")
            return status

        if retrying(load, f"N-ACTION {accession}", commit, deadline) is None:
            return
        with load.lock:
            load.commitments.append((transaction, stored))
            load.modality_done.append(accession)


def database_rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()


def gaps(answers: list[float], after: float) -> float:
    """From the last answer before ``after`` to the first one after it."""
    before = [t for t in answers if t <= after]
    later = [t for t in answers if t > after]
    if not later:
        return float("inf")
    return later[0] - (before[-1] if before else after)


def test_sigkill_one_instance_three_times_under_load(make_instances, make_proxy, database_url, tmp_path) -> None:
    began = time.monotonic()
    ris, archive = Receiver(), Receiver()
    commitment = CommitmentModality("MODALITY1", free_port())
    commitment.listen()
    load = Load()
    threads: list[threading.Thread] = []
    try:
        a, b = make_instances(2, extra=("--config", str(cluster_config(tmp_path, commitment))),
                              env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
        proxy = make_proxy([a, b])
        for k in range(MODALITY_ORDERS):        # the modality's orders, scheduled before the load starts
            assert msa(mllp_exchange(a.mllp_port, order(f"MOD{k}")))[1] == "AA"
        wait_until(lambda: http_status(a.http_port) == 200 and http_status(b.http_port) == 200, 10, "both ready")
        deadline = time.monotonic() + 75
        threads = [threading.Thread(target=sender, args=(load, proxy.mllp_port, n), daemon=True)
                   for n in range(SENDERS)]
        threads.append(threading.Thread(target=mwl_probe, args=(load, proxy.dicom_port), daemon=True))
        modality = threading.Thread(target=modality_day, args=(load, proxy.dicom_port, commitment, deadline),
                                    daemon=True)
        for thread in [*threads, modality]:
            thread.start()

        kills: list[float] = []
        for cycle in range(KILLS):
            time.sleep(3)
            victim = (a, b)[cycle % 2]
            kills.append(time.monotonic())
            victim.kill()
            time.sleep(1.5)
            victim.start(60)
            wait_until(lambda: http_status(victim.http_port) == 200, 30, f"{victim.name} ready again")
            time.sleep(1.5)                      # the proxy's health check (rise 2 x 500 ms) takes it back
        modality.join(max(1.0, deadline - time.monotonic()))
        time.sleep(1)
        load.stop.set()
        for thread in threads:
            thread.join(15)
        assert not load.errors, load.errors
        assert load.modality_done == [f"A-MOD{k}" for k in range(MODALITY_ORDERS)]

        # every ACKed message is in the journal and applied exactly once (a resend is a duplicate)
        assert len(load.acked) > SENDERS * KILLS, f"only {len(load.acked)} messages ACKed"
        applied = dict(database_rows(database_url, "SELECT control_id, COUNT(*) FROM journal"
                                     " WHERE status = 'applied' GROUP BY control_id"))
        assert [cid for cid in load.acked if applied.get(cid) != 1] == []
        placed = dict(database_rows(database_url, "SELECT placer_order_number, COUNT(*) FROM orders"
                                    " GROUP BY placer_order_number"))
        assert [cid for cid in load.acked if placed.get(f"P-{cid}") != 1] == []

        # every commitment was answered, each instance committed is on disk and indexed
        reports = {}
        while len(reports) < len(load.commitments):
            report = commitment.next_report(30)
            reports[str(report.information.TransactionUID)] = report
        for transaction, stored in load.commitments:
            report = reports[transaction]
            assert report.event_type == 1, report.information
            committed = sorted(str(item.ReferencedSOPInstanceUID) for item in report.information.ReferencedSOPSequence)
            assert committed == sorted(sop for _, sop in stored)
            for sop in committed:
                [(path,)] = database_rows(database_url, "SELECT path FROM instances WHERE sop_instance_uid = %s", (sop,))
                full = Path(path) if Path(path).is_absolute() else a.data_dir / "dicom" / path
                assert full.is_file(), (sop, path)

        repeated: dict[str, int] = {}
        # every change reached each destination once, in change order: the RIS the statuses (IN PROGRESS,
        # COMPLETED) of the modality's orders, the archive every new order.  Change order is per order: changes
        # of two orders committed at once by two instances have no order between them (their outbox ids are
        # taken before their commits).  A message sent just before a kill may arrive twice (the killed instance
        # sent it but died before it kept the ACK; the same MSH-10, so a receiver's duplicate check drops it):
        # at most one per kill.  Order and once need one deliverer per destination at a time across instances.
        for receiver, destination, least in ((ris, "ris", 2 * MODALITY_ORDERS), (archive, "archive", len(load.acked))):
            rows = database_rows(database_url, "SELECT control_id, accession_number FROM outbox"
                                 " WHERE destination = %s ORDER BY id", (destination,))
            assert len(rows) >= least, destination
            accession_of = dict(rows)
            wait_until(lambda: {m.control_id for m in receiver.messages} >= set(accession_of), 45,
                       f"every message at {destination}")
            received = [m.control_id for m in receiver.messages]
            repeats = len(received) - len(set(received))
            assert repeats <= KILLS, f"{destination}: {len(received)} messages for {len(rows)} changes"
            for accession in set(accession_of.values()):
                changes = [cid for cid, acc in rows if acc == accession]
                arrived = [cid for cid in dict.fromkeys(received) if accession_of.get(cid) == accession]
                assert arrived == changes, f"{destination}: the changes of {accession} out of order"
            repeated[destination] = repeats

        # MWL answered through the proxy after each kill; failover times
        mwl_gaps = [gaps(load.mwl_answers, kill) for kill in kills]
        assert all(gap < 15 for gap in mwl_gaps), mwl_gaps
        assert load.mwl_answers[-1] > kills[-1]
        failovers = [after - before for before, after in load.sender_failovers]
        assert failovers, "no sender's connection was cut by a kill"
        print(f"\nfailover: {len(load.acked)} messages ACKed by {SENDERS} senders, {KILLS} SIGKILLs;"
              f" sender failover (last ACK from the killed instance to first from the other)"
              f" median {statistics.median(failovers):.2f} s, max {max(failovers):.2f} s over {len(failovers)};"
              f" repeated deliveries {repeated}; MWL gap per kill {', '.join(f'{g:.2f}' for g in mwl_gaps)} s;"
              f" whole test {time.monotonic() - began:.0f} s")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(5)
        commitment.stop()
        ris.close()
        archive.close()
