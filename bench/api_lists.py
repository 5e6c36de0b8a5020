"""Latency of the /api/v1 list endpoints at scale (issue 13: p99 < 100 ms with 100,000 orders and
1,000,000 journal rows).

A database is filled with synthetic rows straight through SQL (orders with one procedure and one step
each, their patients and history, journal rows of several types, statuses and senders), an engine is
started on it (`swf serve`, its HTTP port only matters), and each listed request is sent ROUNDS times
on one keep-alive connection; p50 / p99 / max per request are printed, with the row counts.

    .venv/bin/python bench/api_lists.py [--orders 100000] [--journal 1000000] [--rounds 100] [--keep DIR]
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.domain.matching_keys import normalise_name  # noqa: E402
from engine.store.database import Store  # noqa: E402

NOW = "2026-12-07T09:00:00.000+00:00"
MODALITIES = ("CT", "MR", "CR", "US", "XA")
STATUSES = ("SCHEDULED",) * 6 + ("COMPLETED", "COMPLETED", "STARTED", "CANCELED")
FAMILIES = ("SMITH", "MÜLLER", "DUBOIS", "CHEN", "OKAFOR", "LINDQVIST", "GARCIA", "NOWAK", "TANAKA", "SILVA")
JOURNAL_KINDS = (("ORM^O01", "RIS", "applied", ""), ("ADT^A08", "HIS", "applied", ""),
                 ("ADT^A01", "HIS", "applied", ""), ("ORM^O01", "RIS", "rejected", "no OBR segment: order refused"),
                 ("ORU^R01", "LAB", "dropped", "no rule routes ORU^R01 from LAB"),
                 ("ORM^O01", "RIS", "duplicate", "resent within the duplicate window"))


def fill(path: Path, orders: int, journal: int) -> dict[str, str]:
    """The synthetic rows; returns sample values for the filtered requests."""
    Store(f"sqlite:///{path}").close()   # the engine's schema
    rng = random.Random(13)
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    patients = max(orders // 2, 1)
    db.executemany("INSERT INTO patients (id, patient_id, issuer, name_norm, birth_date, attributes, created_at,"
                   " updated_at) VALUES (?, ?, 'H', ?, ?, ?, ?, ?)",
                   ((n, f"P{n}", normalise_name(f"{FAMILIES[n % 10]}^G{n}"), f"19{50 + n % 50}0101",
                     json.dumps({"PatientName": f"{FAMILIES[n % 10]}^G{n}"}), NOW, NOW) for n in range(1, patients + 1)))
    journal_kinds = [JOURNAL_KINDS[rng.randrange(len(JOURNAL_KINDS))] for _ in range(64)]
    db.executemany("INSERT INTO journal (id, received_at, peer, sending_application, sending_facility, control_id,"
                   " message_code, hl7_version, payload_hash, raw, status, ack_code, reason)"
                   " VALUES (?, ?, '10.0.0.1:4000', ?, 'HOSP', ?, ?, '2.5.1', ?, ?, ?, ?, ?)",
                   ((n, f"2026-{1 + n * 11 // (journal + 1):02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00.000+00:00",
                     kind[1], f"C{n}", kind[0], f"{n:064x}", b"MSH|^~\\&|" + kind[1].encode() + b"|HOSP",
                     kind[2], "AA" if kind[2] == "applied" else "AE", kind[3])
                    for n, kind in ((n, journal_kinds[n % 64]) for n in range(1, journal + 1))))
    db.executemany("INSERT INTO orders (id, patient_ref, placer_order_number, filler_order_number,"
                   " sending_application, created_at, updated_at) VALUES (?, ?, ?, ?, 'RIS', ?, ?)",
                   ((n, 1 + n % patients, f"PL{n}", f"FI{n}", NOW, NOW) for n in range(1, orders + 1)))
    db.executemany("INSERT INTO requested_procedures (id, order_ref, accession_number, requested_procedure_id,"
                   " study_instance_uid, updated_at) VALUES (?, ?, ?, 'RP1', ?, ?)",
                   ((n, n, f"ACC{n}", f"2.25.{n}", NOW) for n in range(1, orders + 1)))
    db.executemany("INSERT INTO scheduled_steps (requested_procedure_ref, sps_id, status, station_ae_title, modality,"
                   " start_datetime, updated_at) VALUES (?, 'SPS1', ?, ?, ?, ?, ?)",
                   ((n, STATUSES[n % 10], f"{MODALITIES[n % 5]}{1 + n % 3}_AE", MODALITIES[n % 5],
                     f"202612{1 + n % 28:02d}{8 + n % 10:02d}0000.000000", NOW) for n in range(1, orders + 1)))
    db.executemany("INSERT INTO order_history (order_ref, at, kind, detail, journal_ref) VALUES (?, ?, ?, '', ?)",
                   ((n, NOW, kind, 1 + (n * 7 + offset) % journal) for n in range(1, orders + 1)
                    for kind, offset in (("order NW", 0), ("SPS SCHEDULED", 0))))
    db.executemany("INSERT INTO events (id, at, kind, order_ref, journal_ref) VALUES (?, ?, 'order.status', ?, ?)",
                   ((n, NOW, n, 1 + (n * 7) % journal) for n in range(1, orders + 1)))   # each order's NW
    db.executemany("INSERT INTO outbox (destination, created_at, event_ref, kind, control_id, accession_number,"
                   " message, status, attempts, last_error) VALUES ('ris', ?, ?, 'order.status', ?, ?, ?, ?, 3, ?)",
                   ((NOW, n, f"O{n}", f"ACC{n}", b"MSH|", "dead" if n % 50 == 0 else "delivered",
                     "refused" if n % 50 == 0 else "") for n in range(1, orders + 1)))
    db.commit()
    db.execute("ANALYZE")
    db.close()
    middle = orders // 2
    return {"accession": f"ACC{middle}", "patient": f"P{1 + middle % patients}", "control": f"C{journal // 2}",
            "cursor": str(middle), "journal_cursor": str(journal // 2)}


def requests(sample: dict[str, str]) -> list[str]:
    return [
        "/api/v1/orders",
        f"/api/v1/orders?cursor={sample['cursor']}",
        "/api/v1/orders?modality=CT",
        "/api/v1/orders?status=CM",
        "/api/v1/orders?status=IP",
        "/api/v1/orders?station=MR2_AE&scheduled_from=20261210&scheduled_to=20261212",
        f"/api/v1/orders?accession={sample['accession']}",
        f"/api/v1/orders?patient_id={sample['patient']}",
        "/api/v1/orders?placer=PL77",
        "/api/v1/orders?modality=NM",                      # no match: the worst case of a step filter
        "/api/v1/orders?status=DC",                        # no match: the worst case of the status filter
        f"/api/v1/orders/{sample['accession']}",
        "/api/v1/journal",
        f"/api/v1/journal?cursor={sample['journal_cursor']}",
        "/api/v1/journal?status=rejected",
        "/api/v1/journal?message_type=ORU%5ER01",
        "/api/v1/journal?sending_application=LAB&status=dropped",
        f"/api/v1/journal?control_id={sample['control']}",
        "/api/v1/journal?reason=duplicate",
        "/api/v1/journal?status=failed",                   # no match: every row read
        "/api/v1/journal?reason=no%20such%20text",         # no match: every reason read
        f"/api/v1/journal?accession={sample['accession']}",
        f"/api/v1/journal?patient_id={sample['patient']}",
        "/api/v1/journal?received_from=2026-06-01&received_to=2026-06-02",
        "/api/v1/journal/12345",
        f"/api/v1/journal/{1 + 777 * 7}",   # a message with an order, its event and outbox row
        "/api/v1/outbox?status=dead",
        "/api/v1/patients?name=M%C3%9CLLER*",
        "/api/v1/patients?birth_date=19770101",
        "/metrics",                                        # target < 50 ms: memory only, the snapshot off-thread
    ]


def measure(port: int, path: str, rounds: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        times.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    connection.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--journal", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="data directory to fill (kept); default a temporary one")
    args = parser.parse_args()
    data = args.keep or Path(tempfile.mkdtemp(prefix="swf-api-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sample = fill(data / "swf.sqlite", args.orders, args.journal)
    print(f"filled {args.orders} orders, {args.journal} journal rows in {time.monotonic() - started:.0f} s")
    sock_port = 18_000 + random.randrange(2000)
    engine = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(data), "--mllp-port",
                               str(sock_port + 1), "--dicom-port", "-1", "--http-port", str(sock_port),
                               "--log-level", "WARNING"], cwd=ROOT)
    try:
        for _ in range(600):
            try:
                measure(sock_port, "/ready", 1)
                break
            except (OSError, RuntimeError):
                time.sleep(0.1)
        print(f"{'request':<72} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
        for path in requests(sample):
            measure(sock_port, path, 3)   # warm the page cache
            times = sorted(measure(sock_port, path, args.rounds))
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"{path:<72} {statistics.median(times) * 1000:7.1f} {p99 * 1000:7.1f} {times[-1] * 1000:7.1f}")
    finally:
        engine.terminate()
        engine.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
