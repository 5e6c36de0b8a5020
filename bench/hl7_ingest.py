"""Benchmark 2, HL7 ingest (RAD-2): ORM^O01 new orders over MLLP, engine vs txHL7 and raw Twisted servers.

Three servers in the same run, alternating round by round: the engine (journals every message durably,
SQLite WAL + synchronous=FULL with group commit, then maps and writes the order before the ACK), a txHL7 +
python-hl7 server that parses and ACKs but stores nothing, and a raw Twisted server that ACKs without
parsing (peers/).  The load generator (mllpload.py, asyncio) sends M distinct ORM^O01 over 1 and over 8
connections, each connection waiting for its ACK; every ACK is checked (AA, MSA-2 = control ID), and
after each engine run the engine's journal and order tables must hold every message of that run.

Then latency at a fixed offered load (500 msg/s over 8 connections, measured from each message's due
time), and a py-spy profile of the engine during one extra 8-connection run.
"""
from __future__ import annotations


import gen
import mllpload
import peers
from common import (Context, Section, Stats, BenchFailure, fmt_ms, md_table, ratio, rss_kb, sqlite_count,
                    start_engine)

TITLE = "HL7 ingest (RAD-2): ORM^O01 over MLLP, engine vs txHL7 + python-hl7 vs raw Twisted"


def frames(prefix: str, count: int) -> list[mllpload.Frame]:
    out = []
    for seq in range(1, count + 1):
        message, control_id, _accession = gen.orm_message(seq, prefix)
        out.append(mllpload.frame(message, control_id))
    return out


def check_engine(engine, prefix: str, count: int) -> None:
    journaled = sqlite_count(engine.database, "SELECT COUNT(*) FROM journal WHERE control_id >= ? AND control_id < ?"
                             " AND status = 'applied'", (f"{prefix}M", f"{prefix}N"))
    orders = sqlite_count(engine.database, "SELECT COUNT(*) FROM requested_procedures WHERE accession_number >= ?"
                          " AND accession_number < ?", (f"{prefix}A", f"{prefix}B"))
    if journaled != count or orders != count:
        raise BenchFailure(f"engine run {prefix}: {journaled} applied journal entries and {orders} requested "
                           f"procedures for {count} messages")


def run(ctx: Context) -> Section:
    section = Section("hl7", TITLE)
    count = 5000 if ctx.quick else 20000
    rounds = ctx.rounds or 2    # 3 full rounds take ~12 min here (the engine's 1-connection runs ~90 s each)
    conn_counts = [1, 8]
    peer_frames = frames("PEER", count)
    procs = []
    results: dict[tuple[str, int], list[tuple[float, list[float]]]] = {}
    try:
        engine = start_engine("engine-hl7", ctx.fresh_dir("hl7") / "engine", ctx.logs)
        procs.append(engine.proc)
        txhl7 = peers.start_mllp_peer("txhl7", ctx.logs)
        procs.append(txhl7)
        raw = peers.start_mllp_peer("raw", ctx.logs)
        procs.append(raw)
        servers = [("engine", engine.mllp_port), ("txHL7", txhl7.ports["mllp"]), ("raw Twisted", raw.ports["mllp"])]
        warm = frames("WARM", 300)
        for name, port in servers:
            mllpload.closed_loop(port, warm, 2)
        for r in range(rounds):
            for conns in conn_counts:
                for name, port in servers[r % 3:] + servers[:r % 3]:
                    prefix = f"R{r}C{conns}X"
                    batch = frames(prefix, count) if name == "engine" else peer_frames
                    wall, latencies = mllpload.closed_loop(port, batch, conns)
                    if len(latencies) != count:
                        raise BenchFailure(f"{name}: {len(latencies)} ACKs for {count} messages")
                    if name == "engine":
                        check_engine(engine, prefix, count)
                    results.setdefault((name, conns), []).append((wall, latencies))
                    print(f"  round {r + 1} {name} x{conns}: {count / wall:.0f} msg/s", flush=True)
        rows = []
        rate: dict[tuple[str, int], float] = {}
        for conns in conn_counts:
            for name, _port in servers:
                runs = results[(name, conns)]
                rates = [count / wall for wall, _ in runs]
                lat = Stats.of(x for _, latencies in runs for x in latencies)
                rate[(name, conns)] = Stats.of(rates).median
                rows.append([name, conns, count, len(runs), f"{Stats.of(rates).median:.0f}",
                             f"{min(rates):.0f}-{max(rates):.0f}", fmt_ms(lat.median), fmt_ms(lat.p99), fmt_ms(lat.max),
                             ratio(rate[("engine", conns)], rate[(name, conns)]) if name != "engine" else "-"])
        section.add(f"{count:,} distinct ORM^O01 (v2.3.1, ~700 bytes) per run; each connection waits for its ACK; "
                    f"{rounds} rounds, servers alternating.", "",
                    md_table(["server", "connections", "messages", "runs", "msg/s median", "msg/s min-max",
                              "ACK p50 ms", "ACK p99 ms", "ACK max ms", "engine / this"], rows), "")

        # fixed offered load: 500 msg/s for everyone, then half of what the engine sustained over 8 connections
        offered, seconds = 500, (10 if ctx.quick else 20)
        half = max(10, int(rate[("engine", 8)] / 2))
        load_rows = []
        p99: dict[str, float] = {}
        runs = [(name, port, offered, "OPEN") for name, port in servers] + [("engine", engine.mllp_port, half, "HALF")]
        for name, port, load, prefix in runs:
            total = load * seconds
            batch = frames(prefix, total) if name == "engine" else peer_frames[:total]
            latencies = mllpload.open_loop(port, batch, 8, load)
            if name == "engine":
                check_engine(engine, prefix, total)
            st = Stats.of(latencies)
            if load == offered:
                p99[name] = st.p99
            load_rows.append([name, load, 8, total, fmt_ms(st.median), fmt_ms(st.p99), fmt_ms(st.max)])
        section.add(f"Latency at a fixed offered load ({offered} msg/s for {seconds} s over 8 connections, measured "
                    "from each message's due time; last row: the engine at half the rate it sustained above):", "",
                    md_table(["server", "offered msg/s", "connections", "messages", "p50 ms", "p99 ms", "max ms"],
                             load_rows), "")
        rss, peak = rss_kb(engine.pid)
        section.add(f"Engine RSS after {sqlite_count(engine.database, 'SELECT COUNT(*) FROM journal'):,} journaled "
                    f"messages: {rss / 1024:.0f} MiB (peak {peak / 1024:.0f} MiB).", "")
        if ctx.profile:
            from profiling import Profiler

            prof = Profiler(engine.pid, ctx.tmp / "profiles" / "hl7-engine.txt")
            prof_count = 5000 if ctx.quick else 10000
            wall, _ = mllpload.closed_loop(engine.mllp_port, frames("PROF", prof_count), 8)
            prof.stop()
            check_engine(engine, "PROF", prof_count)
            section.add(f"### Profile: engine ingesting {prof_count:,} ORM^O01 over 8 connections "
                        f"({prof_count / wall:.0f} msg/s with py-spy attached)", "", prof.summary(), "")
    finally:
        for proc in reversed(procs):
            proc.stop()
    eng8, tx8 = rate[("engine", 8)], rate[("txHL7", 8)]
    section.target("8 connections: engine >= txHL7 peer and >= ~2,000 orders/s",
                   f"engine {eng8:.0f}/s, txHL7 {tx8:.0f}/s (engine/txHL7 = {eng8 / tx8:.2f})",
                   eng8 >= tx8 and eng8 >= 2000)
    section.target("p99 ACK latency < 50 ms at 500 msg/s offered", f"engine p99 {p99['engine'] * 1000:.1f} ms",
                   p99["engine"] < 0.050)
    return section
