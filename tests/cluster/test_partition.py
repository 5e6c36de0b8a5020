"""A partition from the database (issue 15): the test's PostgreSQL server is stopped for 10 s under two
instances behind HAProxy.  Meanwhile no message is answered AA (nothing is ACKed that is not committed),
/ready says 503, a new DICOM association is refused cleanly (A-ASSOCIATE-RJ, transient) and the proxy
sends nothing to either; once the server is back, both recover without anyone touching them: the
message resent is applied once, MWL answers through the proxy."""
from __future__ import annotations

import time

import psycopg
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from tests.cluster.conftest import http_status, mllp_exchange, wait_until
from tests.cluster.test_failover import worklist_query
from tests.integration.test_mllp import msa, order

OUTAGE_SECONDS = 10


def associate(port: int) -> tuple[bool, tuple[int, int, int] | None]:
    """Ask for an association and release it: (established, the A-ASSOCIATE-RJ's result, source, reason)."""
    answers: list = []
    ae = AE(ae_title="CT1_AE")
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE",
                         evt_handlers=[(evt.EVT_ACSE_RECV, lambda event: answers.append(event.primitive))])
    if assoc.is_established:
        assoc.release()
        return True, None
    rejected = [(p.result, p.result_source, p.diagnostic) for p in answers if getattr(p, "result", None) in (1, 2)]
    return False, rejected[0] if assoc.is_rejected and rejected else None


def test_database_stopped_for_10_s(make_instances, make_proxy, postgres, database_url) -> None:
    a, b = make_instances(2)
    proxy = make_proxy([a, b])
    assert msa(mllp_exchange(proxy.mllp_port, order("BEFORE")))[1] == "AA"
    postgres.stop()
    stopped = time.monotonic()
    try:
        answers = [mllp_exchange(instance.mllp_port, order("DURING"), timeout=15) for instance in (a, b)]
        assert all(not ack or msa(ack)[1] != "AA" for ack in answers), answers
        for instance in (a, b):
            # transient, service provider (presentation): temporary congestion
            assert associate(instance.dicom_port) == (False, (2, 3, 1)), instance.name
            assert "refused: the database does not answer" in instance.log()
        wait_until(lambda: http_status(a.http_port) == 503 and http_status(b.http_port) == 503, 8, "not ready")
        time.sleep(1.5)                          # the proxy's checks mark both down (fall 2 x 500 ms)
        assert associate(proxy.dicom_port) == (False, None)   # no server up: the proxy closes the connection
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    finally:
        postgres.start()
    back = time.monotonic()
    wait_until(lambda: http_status(a.http_port) == 200 and http_status(b.http_port) == 200, 20, "ready again")
    resent = wait_until(lambda: (lambda ack: ack if ack and msa(ack)[1] == "AA" else None)(
        mllp_exchange(proxy.mllp_port, order("DURING"), timeout=5)), 20, "DURING answered AA through the proxy")
    assert msa(resent)[1:3] == ["AA", "DURING"]
    wait_until(lambda: associate(proxy.dicom_port)[0], 10, "associations accepted again")
    assert worklist_query(proxy.dicom_port, "A-BEFORE")
    print(f"\npartition: database stopped {OUTAGE_SECONDS} s; both ready {time.monotonic() - back:.1f} s after it was back")
    with psycopg.connect(database_url) as connection:
        applied = connection.execute("SELECT control_id, COUNT(*) FROM journal WHERE status = 'applied'"
                                     " GROUP BY control_id ORDER BY control_id").fetchall()
    assert applied == [("BEFORE", 1), ("DURING", 1)]
