"""Bulk loaders that go through the engine's own code in-process (no MLLP round trip per message).

``load_orders``: each message runs through the engine's ``Ingestor`` (journal, duplicate check, rules,
profile mapping, order/step writes) on its ``Store`` with group commit, exactly as ``swf serve`` does for
a message received over MLLP; only the socket is skipped.  Every result must be AA / applied.

``load_journal``: rows inserted straight into the journal through the store's write transactions
(status applied, with an ACK), for the growth benchmark's 1,000,000 journaled messages.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, Iterable

from common import ROOT, BenchFailure


def _pipeline(data_dir: Path):
    from engine.config import Config
    from engine.hl7.profiles import load_profiles
    from engine.outbound.dispatch import EventDispatcher
    from engine.rules.ruleset import load_ruleset
    from engine.store.database import Store
    from engine.workflow.ingest import Ingestor

    config = Config(data_dir=str(data_dir))
    config.routes_dir = str(ROOT / "routes")
    config.profiles_dir = str(ROOT / "profiles")
    store = Store(config.database)
    ruleset = load_ruleset(ROOT / "routes")
    profiles = load_profiles(ROOT / "profiles")
    ingestor = Ingestor(config, profiles, lambda: ruleset)
    store.before_commit.append(EventDispatcher(lambda: ruleset.destinations, profiles, ingestor.identity))
    return store, ingestor


def load_orders(data_dir: Path, messages: Iterable[bytes], window: int = 2000) -> tuple[int, float]:
    """Ingest every message; returns (count, seconds).  Futures are collected in windows of ``window`` so
    the writer commits up to its batch size at a time (group commit), as under concurrent MLLP load."""
    from engine.workflow.ingest import Received

    store, ingestor = _pipeline(data_dir)
    store.start()
    count = 0
    t0 = time.perf_counter()
    try:
        pending = []

        def drain() -> None:
            for future in pending:
                result = future.result(300)
                if result.ack_code != "AA" or result.status != "applied":
                    raise BenchFailure(f"loader: message {result.control_id} got {result.ack_code} "
                                       f"({result.status}): {result.reason}")
            pending.clear()

        for raw in messages:
            received = Received(raw, "bench-loader")
            pending.append(store.submit(lambda txn, r=received: ingestor(txn, r)))
            count += 1
            if len(pending) >= window:
                drain()
        drain()
    finally:
        store.close()
    return count, time.perf_counter() - t0


def load_journal(database: Path, count: int, sample: bytes, chunk: int = 20000) -> float:
    """``count`` journal rows (applied, with an ACK), each with its own control ID and payload hash."""
    from engine.store.database import Store

    store = Store(f"sqlite:///{database}")
    store.start()
    ack = b"MSH|^~\\&|SWF_ENGINE|RADIOLOGY|RIS|BENCHHOSP|20250301080000||ACK^O01|A1|P|2.3.1\rMSA|AA|X\r"
    t0 = time.perf_counter()
    try:
        done = 0
        while done < count:
            n = min(chunk, count - done)
            start = done

            def work(txn, start=start, n=n):
                rows = []
                for i in range(start, start + n):
                    control = f"JRN{i:010d}"
                    raw = sample.replace(b"CONTROLID", control.encode())
                    rows.append(("2025-02-01T08:00:00.000+00:00", "bench-journal", "JOURNALRIS", "BENCHHOSP", control,
                                 "ORM^O01", "2.3.1", hashlib.sha256(raw).hexdigest(), raw, "applied", "AA", ack))
                txn.connection.executemany(
                    "INSERT INTO journal (received_at, peer, sending_application, sending_facility, control_id,"
                    " message_code, hl7_version, payload_hash, raw, status, ack_code, ack)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

            store.write(work, timeout=600)
            done += n
    finally:
        store.close()
    return time.perf_counter() - t0


def engine_code_key() -> str:
    """A hash of everything that decides what the loader writes: engine code, routes, profiles, generator."""
    digest = hashlib.sha256()
    for folder, pattern in ((ROOT / "engine", "*.py"), (ROOT / "routes", "*.y*ml"), (ROOT / "profiles", "*.y*ml")):
        for path in sorted(folder.rglob(pattern)):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    digest.update((Path(__file__).parent / "gen.py").read_bytes())
    return digest.hexdigest()[:16]


def loaded_engine(cache: Path, name: str, data_dir: Path, messages: Callable[[], Iterable[bytes]]) -> str:
    """``data_dir`` holding the engine database after loading ``messages``; the loaded database is kept in
    ``cache`` under the hash of the engine code, so a second run with the same code copies it instead."""
    import shutil
    import sqlite3

    kept = cache / f"{name}-{engine_code_key()}.sqlite"
    data_dir.mkdir(parents=True, exist_ok=True)
    if kept.exists():
        shutil.copyfile(kept, data_dir / "swf.sqlite")
        return f"copied from the cache ({kept.name}; loaded earlier with the same engine code)"
    count, seconds = load_orders(data_dir, messages())
    for old in cache.glob(f"{name}-*.sqlite"):
        old.unlink()
    source = sqlite3.connect(data_dir / "swf.sqlite")
    try:
        source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        source.close()
    shutil.copyfile(data_dir / "swf.sqlite", kept)
    return f"{count} orders loaded through the engine's Ingestor in {seconds:.1f} s ({count / seconds:.0f}/s)"
