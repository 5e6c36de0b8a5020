"""``GET /metrics`` over HTTP, read with prometheus-client's own parser: the counters and gauges move with
real traffic (HL7 over MLLP, an unreachable destination filling the outbox, a refused rules edit)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, free_port
from tests.hostile import END, START, mllp_connect, msa, read_frame
from tests.integration.test_direct_storage import ct_instance, dcmtk, write
from tests.integration.test_http_health import config, http_get
from tests.integration.test_mpps import Modality, final, in_progress, replay_order
from tests.integration.test_outbound import ORDER
from tests.integration.test_worklist import findscu


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value of every sample."""
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def order(n: int) -> bytes:
    return (ORDER.replace(b"{cid}", f"C{n}".encode()).replace(b"{placer}", f"P{n}".encode())
            .replace(b"{acc}", f"ACC{n}".encode()).replace(b"{n}", str(n).encode()).replace(b"\n", b"\r"))


def wait_for(port: int, key: tuple, value: float) -> dict:
    deadline = time.monotonic() + 10
    while (samples := scrape(port)).get(key) != value and time.monotonic() < deadline:
        time.sleep(0.1)
    assert samples.get(key) == value, (key, {k: v for k, v in samples.items() if k[0] == key[0]})
    return samples


def test_counters_and_gauges_move_with_traffic(start_engine, tmp_path: Path) -> None:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    closed = f"127.0.0.1:{free_port()}"   # nothing listens: the archive's messages wait in the outbox
    engine = start_engine("--config", config(tmp_path, "http: {health_max_age: 0.1}\nrules_reload_seconds: 0.2\n"),
                          routes=routes, env={"SWF_ARCHIVE_ADDRESS": closed})
    before = scrape(engine.http_port)
    assert before[("swf_hl7_ingest_seconds_count", ())] == 0
    assert before[("swf_rules_reload_failures_total", ())] == 0

    with mllp_connect(engine.mllp_port) as sock:
        for n in range(2):
            sock.sendall(START + order(n) + END)
            assert msa(read_frame(sock))[1] == "AA"
        sock.sendall(START + b"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304||ORM^O01|BAD1|P|2.3.1\r" + END)
        assert msa(read_frame(sock))[1] in ("AE", "AR")

    samples = wait_for(engine.http_port, ("swf_journal_messages", (("status", "applied"),)), 2)
    assert samples[("swf_hl7_messages_total", (("ack_code", "AA"), ("message_type", "ORM^O01")))] == 2
    assert sum(v for (name, labels), v in samples.items()
               if name == "swf_hl7_messages_total" and dict(labels)["ack_code"] in ("AE", "AR")) == 1
    assert samples[("swf_hl7_ingest_seconds_count", ())] == 3
    assert samples[("swf_hl7_ingest_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("swf_mllp_connections_open", ())] >= 0
    depth = wait_for(engine.http_port, ("swf_queue_depth", (("destination", "archive"), ("queue", "outbox"),
                                                            ("status", "pending"))), 2)
    assert depth[("swf_queue_oldest_age_seconds", (("destination", "archive"), ("queue", "outbox"),
                                                    ("status", "pending")))] >= 0

    (routes / "99-broken.yaml").write_text("rules:\n  - name: broken\n    when: [unclosed\n")
    wait_for(engine.http_port, ("swf_rules_reload_failures_total", ()), 1)


def test_dicom_counters_move_with_real_associations(start_engine, tmp_path: Path) -> None:
    """DCMTK findscu (MWL) and storescu (C-STORE), a pynetdicom MPPS N-CREATE / N-SET, and DCMTK echoscu
    to a called AE title that is not ours."""
    engine = start_engine()
    replay_order(engine, tmp_path)
    assert findscu(engine.dicom_port, ["AccessionNumber", "ScheduledProcedureStepSequence[0].Modality"],
                   tmp_path / "mwl").returncode == 0
    files = [write(ct_instance(n), tmp_path / f"ct{n}.dcm") for n in range(3)]
    stored = dcmtk("storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "127.0.0.1", str(engine.dicom_port),
                   *map(str, files))
    assert stored.returncode == 0, stored.stderr
    wrong = dcmtk("echoscu", "-aet", "CT1_AE", "-aec", "NOT_US", "127.0.0.1", str(engine.dicom_port))
    assert wrong.returncode != 0
    modality = Modality(engine.dicom_port)
    uid = "1.2.826.0.1.3680043.9.7777.50.1"
    assert modality.create(in_progress(), uid)[0].Status == 0x0000
    assert modality.set(final(), uid)[0].Status == 0x0000
    modality.close()

    samples = scrape(engine.http_port)
    assert samples[("swf_mwl_queries_total", (("outcome", "success"),))] == 1
    assert samples[("swf_mwl_query_seconds_count", ())] == 1
    assert samples[("swf_dicom_stored_instances_total", (("outcome", "accepted"),))] == 3
    assert samples[("swf_dicom_stored_bytes_total", ())] >= 3 * 2048
    assert samples[("swf_mpps_total", (("status", "IN PROGRESS"),))] == 1
    assert samples[("swf_mpps_total", (("status", "COMPLETED"),))] == 1
    assert samples[("swf_dicom_associations_total", (("service", "worklist"),))] == 1
    assert samples[("swf_dicom_associations_total", (("service", "storage"),))] == 1
    assert samples[("swf_dicom_associations_total", (("service", "mpps"),))] == 1
    assert samples[("swf_dicom_associations_refused_total", (("reason", "rejected"),))] == 1
