"""Benchmark 1, worklist query (RAD-5): the engine against DCMTK wlmscpfs and Orthanc's worklist plugin.

The same N scheduled items (gen.make_items) go into the engine through its own order path (OMI^O23
messages run through its Ingestor/Store in-process, loader.py) and into wlmscpfs and Orthanc as .wl files
(gen.write_worklist_files; both peers serve the very same files).  The same DCMTK ``findscu -W`` command
lines then run against all three, alternating server by server and round by round:

* station AE + date (a few matches), accession exact (one): the *selective* queries;
* patient-name wildcard (the pattern whose count is closest to 300);
* broad: every item.

Each figure is the wall time of a whole findscu process (start, association, C-FIND, release).  Every
run's match count must equal what the generator says; before timing, each server's answer to each query
is fetched once with pynetdicom and its accession numbers compared to the expected set (a wrong answer
fails the benchmark).  Then per-query latency on one open association (pynetdicom SCU, C-FIND only).
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import gen
import loader
import peers
from common import (ENGINE_AET, HOST, SCU_AET, BenchFailure, Context, Section, Stats, fmt_ms, md_table, ratio,
                    rss_kb, run_timed, start_engine)

WLM_AET = "BENCHWLM"
GEN_VERSION = "wl-v1"
SPS = "ScheduledProcedureStepSequence[0]"
TOP_RETURN = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyInstanceUID",
              "RequestedProcedureID", "RequestedProcedureDescription"]
STEP_RETURN = ["Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
               "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID", "ScheduledProcedureStepDescription"]
BROAD_100K = os.environ.get("SWF_BENCH_BROAD_100K") == "1"
PENDING = re.compile(r"Received Find Response \d+ \(Pending")


@dataclass
class Server:
    name: str
    aet: str
    port: int


def findscu_cmd(server: Server, query: gen.Query) -> list[str]:
    cmd = ["findscu", "-W", "-v", "-sr", "-aet", SCU_AET, "-aec", server.aet, HOST, str(server.port)]
    for key in TOP_RETURN:
        value = query.top.get(key)
        cmd += ["-k", f"{key}={value}" if value else key]
    for key in STEP_RETURN:
        value = query.step.get(key)
        cmd += ["-k", f"{SPS}.{key}={value}" if value else f"{SPS}.{key}"]
    return cmd


def identifier(query: gen.Query):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for key in TOP_RETURN:
        setattr(ds, key, query.top.get(key, ""))
    step = Dataset()
    for key in STEP_RETURN:
        setattr(step, key, query.step.get(key, ""))
    ds.ScheduledProcedureStepSequence = [step]
    return ds


class Scu:
    """A pynetdicom MWL SCU on one open association (TCP_NODELAY set on its socket)."""

    def __init__(self, server: Server):
        import socket

        from pynetdicom import AE
        from pynetdicom.sop_class import ModalityWorklistInformationFind

        self.sop_class = ModalityWorklistInformationFind
        ae = AE(ae_title=SCU_AET)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 600
        ae.add_requested_context(ModalityWorklistInformationFind)
        self.assoc = ae.associate(HOST, server.port, ae_title=server.aet)
        if not self.assoc.is_established:
            raise BenchFailure(f"{server.name}: association for C-FIND refused")
        self.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def find(self, query: gen.Query) -> list:
        results = []
        for status, found in self.assoc.send_c_find(identifier(query), self.sop_class):
            if status is None or status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise BenchFailure(f"C-FIND failed: {status}")
            if found is not None and status.Status in (0xFF00, 0xFF01):
                results.append(found)
        return results

    def close(self) -> None:
        self.assoc.release()


def check_answers(server: Server, queries: list[gen.Query], items: dict[str, gen.Item], n: int) -> None:
    """One pynetdicom query each: the accession numbers must be exactly the expected ones, and every
    returned item must carry the generator's patient, station and start for that accession."""
    scu = Scu(server)
    try:
        for query in queries:
            if query.kind == "broad" and n >= 10000:
                continue  # 10,000+ responses through pynetdicom: slow (the engine's ~5 ms each); findscu counts them
            found = scu.find(query)
            got = [str(ds.AccessionNumber) for ds in found]
            if sorted(got) != sorted(query.expected):
                raise BenchFailure(f"{server.name} N={n} '{query.name}': {len(got)} answers, expected "
                                   f"{len(query.expected)}; differing: {sorted(set(got) ^ query.expected)[:5]}")
            for ds in found[:50]:
                item = items[str(ds.AccessionNumber)]
                sps = ds.ScheduledProcedureStepSequence[0]
                seen = (str(ds.PatientID), str(ds.PatientName), str(sps.ScheduledStationAETitle),
                        str(sps.ScheduledProcedureStepStartDate), str(sps.ScheduledProcedureStepStartTime)[:4],
                        str(sps.ScheduledProcedureStepID), str(ds.StudyInstanceUID))
                wanted = (item.patient_id, item.patient_name, item.station_ae, item.date, item.time[:4], item.sps_id,
                          item.study_uid)
                if seen != wanted:
                    raise BenchFailure(f"{server.name} N={n} {item.accession}: got {seen}, expected {wanted}")
    finally:
        scu.close()


def time_findscu(server: Server, query: gen.Query) -> float:
    elapsed, out, code = run_timed(findscu_cmd(server, query))
    count = sum(1 for line in out.splitlines() if PENDING.search(line))
    if code != 0 or count != len(query.expected) or "Received Final Find Response (Success)" not in out:
        raise BenchFailure(f"findscu against {server.name} '{query.name}': exit {code}, {count} matches, expected "
                           f"{len(query.expected)}\n{out[-1500:]}")
    return elapsed


def worklist_files(ctx: Context, n: int, items: list[gen.Item]) -> Path:
    """The .wl files for N items, made once and kept in the cache (they depend only on N and the generator)."""
    root = ctx.cache / f"{GEN_VERSION}-n{n}"
    done = root / "complete"
    if not done.exists():
        t0 = time.perf_counter()
        gen.write_worklist_files(items, root / WLM_AET)
        done.write_text(str(n))
        print(f"  wrote {n} .wl files in {time.perf_counter() - t0:.1f} s", flush=True)
    return root


def time_echo(server: Server) -> float:
    elapsed, out, code = run_timed(["echoscu", "-aet", SCU_AET, "-aec", server.aet, HOST, str(server.port)])
    if code != 0:
        raise BenchFailure(f"echoscu against {server.name}: exit {code}\n{out[-1000:]}")
    return elapsed


def run(ctx: Context) -> Section:
    section = Section("mwl", "Worklist query (RAD-5): engine vs DCMTK wlmscpfs vs Orthanc")
    sizes = [1000, 10000] if ctx.quick else [1000, 10000, 100000]
    medians: dict[tuple[int, str, str], float] = {}   # (n, query label, server) -> median seconds
    latency_rows = []
    profiles = []
    names: dict[tuple[int, str], str] = {}   # (n, kind) -> the query's label, for the broad and wildcard targets
    for n in sizes:
        items = gen.make_items(n)
        queries = gen.make_queries(items)
        names.update({(n, q.kind): q.name for q in queries})
        by_accession = {i.accession: i for i in items}
        wl_root = worklist_files(ctx, n, items)
        data_dir = ctx.fresh_dir(f"mwl-{n}") / "engine"
        how = loader.loaded_engine(ctx.cache, f"mwl-n{n}", data_dir, lambda: (gen.omi_message(i) for i in items))
        days, stations = gen.layout(n)
        section.add(f"N={n:,}: engine database: {how}; {stations} stations over {days} days; the peers serve "
                    f"the same items as {n:,} .wl files.")
        procs = []
        try:
            engine = start_engine(f"engine-mwl-{n}", data_dir, ctx.logs)
            procs.append(engine.proc)
            wlm = peers.start_wlmscpfs(wl_root, ctx.logs)
            procs.append(wlm)
            orthanc = peers.start_orthanc(wl_root / WLM_AET, ctx.tmp / f"mwl-{n}" / "orthanc", ctx.logs)
            procs.append(orthanc)
            servers = [Server("engine", ENGINE_AET, engine.dicom_port), Server("wlmscpfs", WLM_AET, wlm.ports["dicom"]),
                       Server("orthanc", "BENCHORTHANC", orthanc.ports["dicom"])]
            for server in servers:
                check_answers(server, queries, by_accession, n)
            big = n >= 100000
            rounds = ctx.rounds or (3 if ctx.quick else 7 if not big else 5)
            runs = {s.name: rounds for s in servers}
            if big:   # the peers read all 100,000 files per query (~4-10 s): fewer runs
                runs.update(wlmscpfs=min(rounds, 2), orthanc=min(rounds, 2))
            # broad at 100k: the engine answers ~5 ms per response here (~8 min for 100,000 items); not run
            # unless asked for (SWF_BENCH_BROAD_100K=1), to keep a full run near 30 minutes
            jobs = [("C-ECHO only (association floor)", None)] + [
                (q.name, q) for q in queries if not (big and q.kind == "broad" and not BROAD_100K)]
            times: dict[tuple[str, str], list[float]] = {}
            for label, query in jobs:
                broad = query is not None and query.kind == "broad"
                wanted = {name: (1 if big else min(count, 3 if n < 10000 else 2)) if broad else count
                          for name, count in runs.items()}
                if not broad:
                    for server in servers:   # warm-up run (page cache, first association)
                        time_echo(server) if query is None else time_findscu(server, query)
                for r in range(max(wanted.values())):
                    for server in servers[r % 3:] + servers[:r % 3]:   # alternate, rotating who goes first
                        done = times.setdefault((label, server.name), [])
                        if len(done) < wanted[server.name]:
                            done.append(time_echo(server) if query is None else time_findscu(server, query))
            if big and not BROAD_100K:
                section.add("(broad query not run at N=100,000: set SWF_BENCH_BROAD_100K=1 to include it)")
            rows = []
            for label, query in jobs:
                stats = {s.name: Stats.of(times[(label, s.name)]) for s in servers}
                for s in servers:
                    key = label.split()[0] if query is not None and query.kind == "selective" else label
                    medians[(n, key, s.name)] = stats[s.name].median
                faster_peer = min(stats["wlmscpfs"].median, stats["orthanc"].median)
                rows.append([label, len(query.expected) if query else "-"]
                            + [f"{fmt_ms(stats[s.name].median)} ({fmt_ms(stats[s.name].min)}-{fmt_ms(stats[s.name].max)})"
                               f" n={stats[s.name].n}" for s in servers]
                            + [ratio(stats["engine"].median, faster_peer)])
            section.add("", f"### N = {n:,} items: findscu wall time per query, ms: median (min-max) n=runs", "",
                        md_table(["query", "matches", "engine", "wlmscpfs", "orthanc", "engine / faster peer"], rows),
                        "")
            # per-query latency on one open association (pynetdicom SCU)
            for server in servers:
                scu = Scu(server)
                try:
                    for query in queries:
                        if query.kind == "broad" or (big and server.name != "engine" and query.kind != "selective"):
                            continue
                        if server.name == "engine":
                            reps = 5 if big else 20 if ctx.quick else 50
                        else:   # the peers read every file per query: ~1 s each at 10k, ~5 s at 100k
                            reps = 2 if big else 5 if n >= 10000 else 10
                        samples = []
                        for _ in range(reps):
                            t0 = time.perf_counter()
                            found = scu.find(query)
                            samples.append(time.perf_counter() - t0)
                            if len(found) != len(query.expected):
                                raise BenchFailure(f"{server.name} '{query.name}': {len(found)} answers")
                        st = Stats.of(samples)
                        latency_rows.append([f"{n:,}", query.name, len(query.expected), server.name, st.n,
                                             fmt_ms(st.median), fmt_ms(st.min), fmt_ms(st.max), fmt_ms(st.p99)])
                finally:
                    scu.close()
            if ctx.profile and n == 10000:
                profiles.append(profile_engine(ctx, engine, servers[0], queries))
            rss, peak = rss_kb(engine.pid)
            section.add(f"Engine RSS after the N={n:,} queries: {rss / 1024:.0f} MiB (peak {peak / 1024:.0f} MiB).", "")
        finally:
            for proc in reversed(procs):
                proc.stop()
    section.add("### Per-query latency on one open association (pynetdicom SCU, C-FIND only), ms", "",
                md_table(["N", "query", "matches", "server", "runs", "median", "min", "max", "p99"], latency_rows), "")
    for text in profiles:
        section.add(text, "")

    selective = ["station", "accession"]
    if 10000 in sizes:
        factors = {kind: min(medians[(10000, kind, "wlmscpfs")], medians[(10000, kind, "orthanc")])
                   / medians[(10000, kind, "engine")] for kind in selective}
        worst = min(factors.values())
        section.target("N=10,000: selective queries >= 10x faster than the faster peer (whole findscu run)",
                       f"faster peer / engine = {factors['station']:.1f}x (station+date), "
                       f"{factors['accession']:.1f}x (accession)", worst >= 10)
    if 10000 in sizes:   # issue 17, target 4: the answers that return many items, against wlmscpfs
        broad, wildcard = (medians[(10000, names[(10000, kind)], "wlmscpfs")]
                           / medians[(10000, names[(10000, kind)], "engine")] for kind in ("broad", "wildcard"))
        section.target("N=10,000: broad query (all items) >= 2x wlmscpfs (whole findscu run)",
                       f"wlmscpfs / engine = {broad:.2f}x", broad >= 2)
        section.target("N=10,000: patient-name wildcard (~300 items) >= 5x wlmscpfs (whole findscu run)",
                       f"wlmscpfs / engine = {wildcard:.2f}x", wildcard >= 5)
    if 100000 in sizes:
        growth = {kind: medians[(100000, kind, "engine")] / medians[(1000, kind, "engine")] for kind in selective}
        section.target("N=100,000: selective queries < 2x their N=1,000 time (findscu)",
                       f"100k / 1k = {growth['station']:.2f}x (station+date), {growth['accession']:.2f}x (accession)",
                       max(growth.values()) < 2)
    else:
        section.target("N=100,000: selective queries < 2x their N=1,000 time (findscu)", "not run (--quick)", None)
    return section


def profile_engine(ctx: Context, engine, server: Server, queries: list[gen.Query]) -> str:
    """py-spy of the engine (N=10,000) during 20 whole findscu accession runs, then during wildcard queries
    on one association: where an association's and a response's time goes."""
    from profiling import Profiler

    accession = next(q for q in queries if q.name.startswith("accession"))
    wildcard = next(q for q in queries if q.kind == "wildcard")
    prof = Profiler(engine.pid, ctx.tmp / "profiles" / "mwl-findscu-accession.txt")
    for _ in range(20):
        time_findscu(server, accession)
    prof.stop()
    first = prof.summary()
    scu = Scu(server)
    prof = Profiler(engine.pid, ctx.tmp / "profiles" / "mwl-wildcard.txt")
    try:
        for _ in range(3):
            scu.find(wildcard)
    finally:
        prof.stop()
        scu.close()
    return "\n".join([
        "### Profile: engine during 20 findscu accession queries (N=10,000; association set-up dominates)", "",
        first, "", f"### Profile: engine answering '{wildcard.name}' ({len(wildcard.expected)} matches) 3 times "
        "on one association (per-response cost)", "", prof.summary()])
