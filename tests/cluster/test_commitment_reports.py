"""Storage commitment reports with two instances on one PostgreSQL (issue 15): the reports to one requesting
AE are sent by the one instance holding its lease ``commitment:<AE>``, so each arrives once and in request
order whichever instance took the N-ACTION; a requester without host/port gets its report on the N-ACTION
association it keeps open on the instance that does not hold the lease (the lease is handed over to it)
instead of having it parked as dead by the holder, which lacks that association."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
from pydicom.uid import generate_uid
from pynetdicom.sop_class import Verification

from tests.cluster.conftest import Instance
from tests.conftest import free_port
from tests.integration.test_commitment import Modality, request_keeping_the_association

NOT_STORAGE = str(Verification)   # a reference the evaluation fails at once (0x0122): no C-STORE needed
REQUESTS = 10


def config(tmp_path: Path, modality: Modality) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text("dicom:\n"
                    "  aes:\n"
                    f"    {modality.title}: {{host: 127.0.0.1, port: {modality.port}}}\n"
                    "  commitment_retry_seconds: 0.3\n"
                    "  commitment_max_retry_seconds: 0.6\n")
    return path


def engine_name(instance: Instance) -> str:
    """The instance's name in the cluster (the default: host name and MLLP port)."""
    return f"{socket.gethostname()}:{instance.mllp_port}"


def statuses(database_url: str) -> dict[str, tuple[str, int, str]]:
    with psycopg.connect(database_url) as connection:
        return {row[0]: (row[1], row[2], row[3]) for row in connection.execute(
            "SELECT transaction_uid, status, attempts, received_by FROM commitments")}


def test_reports_to_one_requester_arrive_once_in_request_order_from_the_lease_holder(make_instances, database_url,
                                                                                     tmp_path) -> None:
    modality = Modality("MODALITY1", free_port())
    modality.listen()
    try:
        a, b = make_instances(2, extra=("--config", str(config(tmp_path, modality))))   # a: the leader

        # A requester without host/port keeps its N-ACTION association open: on A first (A then holds the
        # lease commitment:OPENAE), then on B, while A still holds it.
        for instance in (a, b):
            uid = generate_uid()
            status, received = request_keeping_the_association(instance, Modality("OPENAE", 0), uid,
                                                               [(NOT_STORAGE, generate_uid())], keep=8)
            assert status == 0x0000
            assert len(received) == 1, f"no report on OPENAE's association with {instance.name}: " \
                                       f"{statuses(database_url)[uid]}"
            assert received[0].event_information.TransactionUID == uid
            assert statuses(database_url)[uid][0] == "delivered"
        assert "lease commitment:OPENAE handed over by instance" in a.log()

        # MODALITY1 (with host/port) asks through both instances in turn, quickly
        sent = []
        for number in range(REQUESTS):
            uid = generate_uid()
            assert modality.request((a, b)[number % 2], uid, [(NOT_STORAGE, generate_uid())]) == 0x0000
            sent.append(uid)
        arrived = [str(modality.next_report(15).information.TransactionUID) for _ in sent]
        time.sleep(1.5)
        assert modality.reports.empty(), "a report reached MODALITY1 twice"
        assert arrived == sent, "the reports reached MODALITY1 out of request order"
        rows = statuses(database_url)
        assert {rows[uid][:2] for uid in sent} == {("delivered", 1)}
        assert {rows[uid][2] for uid in sent} == {engine_name(a), engine_name(b)}   # received by both
        senders = [instance.name for instance in (a, b) if "delivered to MODALITY1" in instance.log()]
        assert len(senders) == 1, f"both instances sent reports to MODALITY1 at once: {senders}"
    finally:
        modality.stop()
