"""Two real engine processes on one real PostgreSQL delivering one outbox to a stand-in archive (issue 15):
each message reaches it once, in the destination's queue order, whichever instance took the order in;
when the instance delivering is killed (SIGKILL: its lease is not released) the other takes the
destination over once the lease has run out, and delivers what waits, once."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from engine.store import cluster, queues
from engine.store.database import Store
from tests.conftest import run_swf
from tests.integration.test_outbound import orders
from tests.mllp_receiver import Receiver

LEASE_SECONDS = 3


def config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"cluster:\n  instance: {name}\n  lease_seconds: {LEASE_SECONDS}\n  heartbeat_seconds: 1\n")
    return path


def queue_order(store: Store) -> list[str]:
    return [row[0] for row in store.read(lambda txn: txn.rows(
        "SELECT control_id FROM outbox WHERE destination = 'archive' ORDER BY id"))]


def holder(store: Store) -> cluster.Lease:
    return next(lease for lease in store.read(cluster.leases) if lease.name == queues.outbox_lease("archive"))


@pytest.mark.postgres
def test_two_engines_deliver_once_in_order_and_one_takes_over_when_the_other_is_killed(
        start_engine, postgres_url: str, tmp_path: Path) -> None:
    archive = Receiver()
    env = {"SWF_ARCHIVE_ADDRESS": archive.address}
    engines = {name: start_engine("--config", str(config(tmp_path, name)), "--database-url", postgres_url,
                                  data_dir=tmp_path / name, env=env) for name in ("A", "B")}
    store = Store(postgres_url)
    try:
        assert run_swf("replay", str(orders(tmp_path, 6, start=0)), "--to", engines["A"].address).returncode == 0
        assert run_swf("replay", str(orders(tmp_path, 6, start=6)), "--to", engines["B"].address).returncode == 0
        received = archive.wait_for(12, timeout=15)
        assert sorted(m.get("ORC-2.1") for m in received) == sorted(f"P{n}" for n in range(12))   # each once
        assert [m.control_id for m in received] == queue_order(store)     # in the destination's queue order
        delivering = holder(store)
        assert delivering.holder in engines
        listing = run_swf("cluster", "--database-url", postgres_url).stdout
        assert "A " in listing and "B " in listing and "outbox:archive" in listing

        engines[delivering.holder].process.send_signal(signal.SIGKILL)
        engines[delivering.holder].process.wait(10)
        survivor = engines["B" if delivering.holder == "A" else "A"]
        killed_at = time.monotonic()
        assert run_swf("replay", str(orders(tmp_path, 4, start=12)), "--to", survivor.address).returncode == 0
        received = archive.wait_for(16, timeout=LEASE_SECONDS + 10)
        took_over = time.monotonic() - killed_at
        assert took_over < LEASE_SECONDS + 5, took_over
        assert sorted(m.get("ORC-2.1") for m in received) == sorted(f"P{n}" for n in range(16))
        assert [m.control_id for m in received] == queue_order(store)
        after = holder(store)
        assert (after.holder, after.generation) == ("B" if delivering.holder == "A" else "A", delivering.generation + 1)
        assert f"lease outbox:archive taken by instance {after.holder}" in survivor.log()
        time.sleep(0.5)
        assert len(archive.attempts) == 16                                # nothing sent twice
        print(f"takeover after SIGKILL: {took_over:.1f} s (lease {LEASE_SECONDS} s)")
    finally:
        store.close()
        archive.close()
