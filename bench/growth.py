"""Benchmark 5, growth: engine memory and query time as the worklist and the journal grow.

Databases: 1k, 10k and 100k worklist items (the worklist benchmark's, loaded through the engine's
Ingestor), and a copy of the largest with 1,000,000 journaled messages added (rows inserted straight into
the journal through the store: bulk, ~0.7 KB raw message + ACK each).  One engine per database, all
running at once, so every measurement alternates between them under the same machine load:

1. RSS after start (VmRSS);
2. the selective queries (station + date, accession) on one association per engine (pynetdicom), the
   engines taking turns query by query; median per engine; RSS again;
3. 2,000 ORM^O01 over 8 connections per engine, in turns of 250 (the ingest's duplicate check reads the
   journal); msg/s, ACK p99; RSS and peak (VmHWM) at the end.

Memory must not grow with the journal, and queries must not slow with it.
"""
from __future__ import annotations

import itertools
import shutil
import time

import gen
import hl7_ingest
import loader
import mllpload
from common import (ENGINE_AET, BenchFailure, Context, Section, Stats, fmt_ms, md_table, rss_kb, sqlite_count,
                    start_engine)
from mwl import Scu, Server

TITLE = "Growth: engine RSS and query time with 1k / 10k / 100k items and after 1,000,000 journaled messages"
_RUNS = itertools.count(1)


def run(ctx: Context) -> Section:
    section = Section("growth", TITLE)
    sizes = [1000, 10000] if ctx.quick else [1000, 10000, 100000]
    journal_rows = 200_000 if ctx.quick else 1_000_000
    reps = ctx.rounds or (20 if ctx.quick else 40)
    databases = []   # (label, data dir, selective queries)
    for n in sizes:
        items = gen.make_items(n)
        queries = [q for q in gen.make_queries(items) if q.kind == "selective"]
        data_dir = ctx.fresh_dir(f"growth-{n}") / "engine"
        how = loader.loaded_engine(ctx.cache, f"mwl-n{n}", data_dir, lambda: (gen.omi_message(i) for i in items))
        print(f"  N={n}: {how}", flush=True)
        databases.append((f"{n:,} items", data_dir, queries))
    label, largest, queries = databases[-1]
    journaled = ctx.fresh_dir("growth-journal") / "engine"
    journaled.mkdir()
    shutil.copyfile(largest / "swf.sqlite", journaled / "swf.sqlite")
    sample, _control, _accession = gen.orm_message(1, "JRN")
    seconds = loader.load_journal(journaled / "swf.sqlite", journal_rows, sample.replace(b"JRNM000000001", b"CONTROLID"))
    size_mb = (journaled / "swf.sqlite").stat().st_size / 1e6
    print(f"  {journal_rows:,} journal rows inserted in {seconds:.0f} s (database {size_mb:,.0f} MB)", flush=True)
    databases.append((f"{label} + {journal_rows:,} journaled messages (db {size_mb:,.0f} MB)", journaled, queries))

    engines, scus = [], []
    results = {name: {"queries": {}} for name, _, _ in databases}
    try:
        for i, (name, data_dir, _q) in enumerate(databases):
            engines.append(start_engine(f"engine-growth-{i}", data_dir, ctx.logs))
        time.sleep(1.0)
        for (name, _d, _q), engine in zip(databases, engines):
            results[name]["rss_start"] = rss_kb(engine.pid)[0]
            scus.append(Scu(Server("engine", ENGINE_AET, engine.dicom_port)))
        for kind in ("station", "accession"):
            samples: dict[str, list[float]] = {name: [] for name, _, _ in databases}
            order = list(range(len(databases)))
            for rep in range(reps + 1):   # the first round is a warm-up
                for i in order[rep % len(order):] + order[:rep % len(order)]:
                    name, _d, qs = databases[i]
                    query = next(q for q in qs if q.name.startswith(kind))
                    t0 = time.perf_counter()
                    found = scus[i].find(query)
                    elapsed = time.perf_counter() - t0
                    if len(found) != len(query.expected):
                        raise BenchFailure(f"{name} '{query.name}': {len(found)} answers, {len(query.expected)} expected")
                    if rep:
                        samples[name].append(elapsed)
            for name in samples:
                results[name]["queries"][kind] = Stats.of(samples[name])
        for (name, _d, _q), engine in zip(databases, engines):
            results[name]["rss_queries"] = rss_kb(engine.pid)[0]
        count, turn = 2000, 250
        batches = [(f"G{next(_RUNS)}", engine) for engine in engines]
        frames = {prefix: hl7_ingest.frames(prefix, count) for prefix, _ in batches}
        walls = {prefix: 0.0 for prefix, _ in batches}
        latencies = {prefix: [] for prefix, _ in batches}
        for start in range(0, count, turn):
            for prefix, engine in batches:
                wall, lat = mllpload.closed_loop(engine.mllp_port, frames[prefix][start:start + turn], 8)
                walls[prefix] += wall
                latencies[prefix] += lat
        for (name, _d, _q), (prefix, engine) in zip(databases, batches):
            hl7_ingest.check_engine(engine, prefix, count)
            rss, peak = rss_kb(engine.pid)
            results[name].update(rss_end=rss, peak=peak, ingest=count / walls[prefix],
                                 ack_p99=Stats.of(latencies[prefix]).p99,
                                 journal=sqlite_count(engine.database, "SELECT COUNT(*) FROM journal"))
    finally:
        for scu in scus:
            scu.close()
        for engine in engines:
            engine.stop()

    table = []
    for name, _d, qs in databases:
        r = results[name]
        matches = next(len(q.expected) for q in qs if q.name.startswith("station"))
        table.append([name, f"{r['journal']:,}", f"{r['rss_start'] / 1024:.0f}", f"{r['rss_queries'] / 1024:.0f}",
                      f"{r['rss_end'] / 1024:.0f}", f"{r['peak'] / 1024:.0f}",
                      f"{fmt_ms(r['queries']['station'].median)} ({matches})",
                      fmt_ms(r["queries"]["accession"].median), f"{r['ingest']:.0f}", fmt_ms(r["ack_p99"])])
    section.add(f"All {len(databases)} engines running at once, measurements alternating between them. RSS in MiB: "
                f"after start, after the queries ({reps} of each per engine on one association), after 2,000 "
                "ORM^O01 over 8 connections, and the peak (VmHWM). Query times: median ms on one association "
                "(pynetdicom), station+date with its match count.", "",
                md_table(["database", "journal rows at the end", "RSS start", "RSS after queries", "RSS after ingest",
                          "peak", "station+date ms (matches)", "accession ms", "ingest msg/s", "ACK p99 ms"], table),
                "")
    before, after = results[databases[-2][0]], results[databases[-1][0]]
    section.target(f"memory does not grow with the journal (+{journal_rows:,} rows)",
                   f"RSS after ingest {before['rss_end'] / 1024:.0f} -> {after['rss_end'] / 1024:.0f} MiB, peak "
                   f"{before['peak'] / 1024:.0f} -> {after['peak'] / 1024:.0f} MiB",
                   after["peak"] <= before["peak"] * 1.10 + 5 * 1024)
    slow = {k: after["queries"][k].median / before["queries"][k].median for k in ("station", "accession")}
    section.target(f"queries do not slow with the journal (+{journal_rows:,} rows)",
                   f"median with / without journal: station+date {slow['station']:.2f}x, accession "
                   f"{slow['accession']:.2f}x; ingest {before['ingest']:.0f} -> {after['ingest']:.0f} msg/s",
                   max(slow.values()) <= 1.25)
    return section
