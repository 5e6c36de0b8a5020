#!/usr/bin/env python3
"""One and two engine instances on one PostgreSQL behind HAProxy (issue 15): HL7 ingest and MWL
throughput, and the failover time after a SIGKILL.

    .venv/bin/python bench/cluster.py [--messages N] [--queries N] [--kills N]      (make bench-cluster)

The same parts as tests/cluster/: a throwaway PostgreSQL (.ci/start-postgres), `swf serve` processes
sharing one data directory, HAProxy in TCP mode with /ready checks (also in front of one instance, so
both runs pay the same hop).  Ingest: 8 MLLP senders through the proxy, each waiting for its ACK.  MWL:
8 clients through the proxy, each query on its own association (as a modality does), over the orders
just ingested.  Failover: 8 senders through the proxy, one of two instances killed with SIGKILL and
started again; a sender's last ACK from the killed instance to its first ACK from the other.
Prints a table; the figures go into RESULTS.md by hand (the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]
sys.dont_write_bytecode = True

from tests.cluster.conftest import Backend, Instance, PostgresServer, haproxy_config, http_status  # noqa: E402
from tests.cluster.test_failover import Load, read_frame, sender, worklist_query  # noqa: E402
from tests.conftest import free_port, wait_for_port  # noqa: E402
from tests.integration.test_mllp import msa, order  # noqa: E402

CLIENTS = 8


def start_postgres(directory: str) -> PostgresServer:
    started = subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres"), directory, str(free_port())],
                             capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        raise SystemExit(f"cannot start PostgreSQL: {started.stderr}")
    return PostgresServer(directory, started.stdout.strip().splitlines()[-1])


def fresh_schema(server: PostgresServer) -> str:
    import psycopg
    schema = f"swf_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{server.url}?options=-csearch_path%3D{schema}"


class Cluster:
    """N instances on a fresh schema, one shared data directory, HAProxy in front."""

    def __init__(self, work: Path, server: PostgresServer, count: int):
        url = fresh_schema(server)
        shared = work / f"shared-{count}"
        self.instances = [Instance(f"swf-{chr(97 + i)}", shared, url, ROOT / "routes", work / f"{count}-{i}.log",
                                   ("--config", str(self._config(work, i))))
                          for i in range(count)]
        for instance in self.instances:
            instance.start(90)
        self.mllp_port, self.dicom_port = free_port(), free_port()
        config = work / f"haproxy-{count}.cfg"
        config.write_text(haproxy_config([Backend(i.name, "127.0.0.1", i.mllp_port, i.dicom_port, i.http_port)
                                          for i in self.instances], self.mllp_port, self.dicom_port))
        self.proxy = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)],
                                      stdout=open(work / f"haproxy-{count}.log", "w"), stderr=subprocess.STDOUT)
        wait_for_port(self.mllp_port, self.proxy)
        deadline = time.monotonic() + 30
        while not all(http_status(i.http_port) == 200 for i in self.instances):
            if time.monotonic() > deadline:
                raise SystemExit("instances not ready")
            time.sleep(0.2)
        time.sleep(1.5)   # the proxy's checks (rise 2 x 500 ms)

    @staticmethod
    def _config(work: Path, number: int) -> Path:
        path = work / f"engine-{number}.yaml"
        path.write_text(f"cluster:\n  instance: swf-{chr(97 + number)}\n")
        return path

    def stop(self) -> None:
        self.proxy.terminate()
        self.proxy.wait(10)
        for instance in self.instances:
            instance.stop()


def in_parallel(client: Callable[[int], None]) -> float:
    """Seconds for CLIENTS threads, each running ``client(number)``, to finish."""
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - began



def ingest(cluster: Cluster, messages: int, tag: str) -> float:
    """Messages per second through the proxy: CLIENTS senders, each on one connection, ACK by ACK."""
    per_client = messages // CLIENTS
    errors: list[str] = []

    def client(number: int) -> None:
        with socket.create_connection(("127.0.0.1", cluster.mllp_port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for n in range(per_client):
                sock.sendall(b"\x0b" + order(f"{tag}{number}-{n}") + b"\x1c\r")
                if msa(read_frame(sock))[1] != "AA":
                    errors.append(f"{tag}{number}-{n}")

    elapsed = in_parallel(client)
    if errors:
        raise SystemExit(f"{len(errors)} messages not answered AA")
    return per_client * CLIENTS / elapsed


def mwl(cluster: Cluster, queries: int, tag: str) -> float:
    """MWL queries per second through the proxy, each on its own association, one match each."""
    per_client = queries // CLIENTS
    missing: list[str] = []

    def client(number: int) -> None:
        for n in range(per_client):
            accession = f"A-{tag}{number}-{n}"
            if len(worklist_query(cluster.dicom_port, accession, timeout=30)) != 1:
                missing.append(accession)

    elapsed = in_parallel(client)
    if missing:
        raise SystemExit(f"{len(missing)} MWL queries without their one match")
    return per_client * CLIENTS / elapsed


def failover(cluster: Cluster, kills: int) -> list[float]:
    """Sender failover times over ``kills`` SIGKILLs of alternate instances, under CLIENTS senders."""
    load = Load()
    threads = [threading.Thread(target=sender, args=(load, cluster.mllp_port, n), daemon=True)
               for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for cycle in range(kills):
        time.sleep(3)
        victim = cluster.instances[cycle % len(cluster.instances)]
        victim.kill()
        time.sleep(1.5)
        victim.start(90)
        while http_status(victim.http_port) != 200:
            time.sleep(0.2)
        time.sleep(1.5)
    time.sleep(1)
    load.stop.set()
    for thread in threads:
        thread.join(15)
    return [after - before for before, after in load.sender_failovers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=800)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="swf-bench-cluster-"))
    os.chmod(work, 0o755)
    server = start_postgres(tempfile.mkdtemp(prefix="swf-bench-pg-"))
    rows: list[tuple[str, str, str]] = []
    try:
        for count in (1, 2):
            cluster = Cluster(work, server, count)
            try:
                rate = ingest(cluster, args.messages, f"I{count}-")
                queries = mwl(cluster, args.queries, f"I{count}-")
                rows.append((f"{count} instance{'s' if count > 1 else ''}", f"{rate:.0f} msg/s", f"{queries:.0f} q/s"))
                print(f"{count} instance(s): ingest {rate:.0f} msg/s, MWL {queries:.0f} queries/s", flush=True)
                if count == 2:
                    times = failover(cluster, args.kills)
            finally:
                cluster.stop()
        print(f"\n| instances behind HAProxy | HL7 ingest ({CLIENTS} senders, ACK by ACK) |"
              f" MWL ({CLIENTS} clients, one association per query) |\n|---|---|---|")
        for row in rows:
            print(f"| {' | '.join(row)} |")
        print(f"\nfailover over {args.kills} SIGKILLs, {len(times)} senders cut: median {statistics.median(times):.2f} s,"
              f" max {max(times):.2f} s (a sender's last ACK from the killed instance to its first from the other)")
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres"), "--stop", server.directory],
                       capture_output=True, timeout=60)
        shutil.rmtree(server.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
