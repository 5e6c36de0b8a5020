"""HL7 ingest on any instance (issue 15): the duplicate check is the database's, so a message sent to
both instances at the same moment, or resent to the other one after a lost ACK, is applied once and
every copy gets the same ACK code."""
from __future__ import annotations

import threading

import psycopg

from tests.cluster.conftest import mllp_exchange
from tests.integration.test_mllp import msa, order


def journal_statuses(database_url: str, control_id: str) -> list[str]:
    with psycopg.connect(database_url) as connection:
        return sorted(row[0] for row in connection.execute(
            "SELECT status FROM journal WHERE control_id = %s", (control_id,)))


def orders_placed(database_url: str, placer: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT COUNT(*) FROM orders WHERE placer_order_number = %s",
                                  (placer,)).fetchone()[0]


def test_the_same_message_at_both_instances_at_once_is_applied_once(make_instances, database_url) -> None:
    a, b = make_instances(2)
    rounds = 12
    for n in range(rounds):
        control_id = f"TWIN{n}"
        frame = order(control_id)
        acks: dict[str, bytes] = {}
        barrier = threading.Barrier(2)

        def send(instance) -> None:
            barrier.wait(5)
            acks[instance.name] = mllp_exchange(instance.mllp_port, frame)

        threads = [threading.Thread(target=send, args=(i,)) for i in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        codes = {name: msa(ack)[1:3] for name, ack in acks.items()}
        assert codes == {a.name: ["AA", control_id], b.name: ["AA", control_id]}, codes
        assert journal_statuses(database_url, control_id) == ["applied", "duplicate"], control_id
        assert orders_placed(database_url, f"P-{control_id}") == 1, control_id


def test_a_resend_to_the_other_instance_gets_the_original_ack(make_instances, database_url) -> None:
    a, b = make_instances(2)
    first = mllp_exchange(a.mllp_port, order("LOST1"))
    resent = mllp_exchange(b.mllp_port, order("LOST1"))
    assert msa(first)[1:3] == ["AA", "LOST1"]
    assert resent == first                      # the ACK stored with the original, byte for byte
    changed = order("LOST1", placer="OTHER")    # the same control ID with other content: refused
    assert msa(mllp_exchange(b.mllp_port, changed))[1] == "AE"
    assert journal_statuses(database_url, "LOST1") == ["applied", "duplicate", "rejected"]
    assert orders_placed(database_url, "P-LOST1") == 1
