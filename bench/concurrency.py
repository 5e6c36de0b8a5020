"""Benchmark: a hundred modalities querying the worklist at once (issue 17, target 1).

100 clients, each a modality with its own AE title and its own source address (127.0.0.2 ...
127.0.0.101, so a per-address limit such as the engine's ``dicom.max_associations_per_peer`` sees one
association per modality, as it would in a hospital), each repeating its station + date MWL query for
a set time (60 s; 15 s with ``--quick``) against 10,000 items: the engine, DCMTK wlmscpfs and Orthanc
with its worklist plugin, one server after the other, on the same items (mwl.py's database and files).

Every query is what a modality does when it polls: open an association, one C-FIND, release.  The
answer time is from the A-ASSOCIATE request to the final C-FIND response.  The clients are driven by
4 worker processes (this module run with ``--worker``) of 25 threads each, one pynetdicom association
at a time per thread: one Python process cannot keep 100 pynetdicom associations busy (the GIL), and
100 processes would take the cores from the servers.  Every answer is checked: the accession numbers
returned must be exactly the generator's for that station and day; a refused association (A-ASSOCIATE-RJ
or a closed connection), an abort, a failure status or a wrong answer is counted, never retried early.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import gen  # noqa: E402
from common import (ENGINE_AET, ENGINE_PY, HOST, BenchFailure, Context, Section, fmt_ms, md_table,  # noqa: E402
                    percentile, start_engine)

TITLE = "A hundred modalities at once: station + date MWL queries, 10,000 items"
CLIENTS = 100
WORKERS = 4
N = 10000
STATION_KEYS = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate")


def client_queries(items: list[gen.Item], clients: int) -> list[tuple[str, str, list[str]]]:
    """(station AE, date, expected accessions) per client: distinct station-days, client i gets the i-th."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in items:
        groups[(item.station_ae, item.date)].append(item.accession)
    keys = sorted(groups)
    step = max(1, len(keys) // clients)
    chosen = [keys[(i * step) % len(keys)] for i in range(clients)]
    return [(station, date, sorted(groups[(station, date)])) for station, date in chosen]


# -- the worker process: 25 modality threads ------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    jobs = json.loads(Path(args.jobs).read_text())
    start_at = args.start_at
    results: list[dict] = []
    lock = threading.Lock()

    def identifier(station: str, date: str) -> Dataset:
        ds = Dataset()
        for key in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID"):
            setattr(ds, key, "")
        step = Dataset()
        step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate = station, date
        for key in ("Modality", "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID"):
            setattr(step, key, "")
        ds.ScheduledProcedureStepSequence = [step]
        return ds

    def modality(job: dict) -> None:
        ae = AE(ae_title=job["aet"])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        ae.add_requested_context(ModalityWorklistInformationFind)
        query = identifier(job["station"], job["date"])
        expected = job["expected"]
        mine = {"latencies": [], "refused": 0, "errors": 0, "wrong": 0, "first_error": ""}
        time.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + args.seconds
        while time.time() < deadline:
            t0 = time.perf_counter()
            try:
                assoc = ae.associate(HOST, args.port, ae_title=args.called, bind_address=(job["address"], 0))
            except Exception as exc:  # noqa: BLE001 - counted, the client goes on
                mine["errors"] += 1
                mine["first_error"] = mine["first_error"] or f"associate: {exc}"
                time.sleep(0.1)
                continue
            if not assoc.is_established:
                mine["refused"] += 1
                mine["first_error"] = mine["first_error"] or ("rejected" if assoc.is_rejected else "no association")
                time.sleep(0.1)
                continue
            found, final = [], None
            try:
                for status, ds in assoc.send_c_find(query, ModalityWorklistInformationFind):
                    if status is None or "Status" not in status:   # no response in time, or aborted
                        final = None
                        break
                    if status.Status not in (0xFF00, 0xFF01):
                        final = status
                        break
                    found.append(str(ds.AccessionNumber))
                elapsed = time.perf_counter() - t0
                assoc.release()
            except Exception as exc:  # noqa: BLE001
                mine["errors"] += 1
                mine["first_error"] = mine["first_error"] or f"C-FIND: {exc}"
                assoc.abort()
                continue
            if final is None or final.Status != 0x0000:
                mine["errors"] += 1
                mine["first_error"] = mine["first_error"] or (
                    f"final status {hex(final.Status)}" if final is not None else "no final response (timeout/abort)")
            elif sorted(found) != expected:
                mine["wrong"] += 1
                mine["first_error"] = mine["first_error"] or f"{len(found)} answers, expected {len(expected)}"
            else:
                mine["latencies"].append(elapsed)
        with lock:
            results.append(mine)

    threads = [threading.Thread(target=modality, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 120)
    print(json.dumps(results))


# -- the driver ---------------------------------------------------------------------------------------
def drive(ctx: Context, name: str, called: str, port: int, queries: list, seconds: float) -> dict:
    """All 100 clients against one server for ``seconds``; the merged counts and latencies."""
    start_at = time.time() + 3.0   # every worker started and its threads waiting: all begin at once
    procs = []
    for w in range(WORKERS):
        jobs = [{"aet": f"MOD{i + 1:03d}", "address": f"127.0.0.{i + 2}", "station": station, "date": date,
                 "expected": expected}
                for i, (station, date, expected) in enumerate(queries) if i % WORKERS == w]
        path = ctx.tmp / f"concurrency-{name}-jobs-{w}.json"
        path.write_text(json.dumps(jobs))
        procs.append(subprocess.Popen([str(ENGINE_PY), __file__, "--worker", "--jobs", str(path), "--port", str(port),
                                       "--called", called, "--seconds", str(seconds), "--start-at", str(start_at)],
                                      stdout=subprocess.PIPE, stderr=open(ctx.logs / f"concurrency-{name}-{w}.log", "ab")))
    merged = {"latencies": [], "refused": 0, "errors": 0, "wrong": 0, "first_error": ""}
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 240)
        if proc.returncode != 0:
            raise BenchFailure(f"concurrency worker against {name} exited {proc.returncode}")
        for client in json.loads(out):
            merged["latencies"] += client["latencies"]
            for key in ("refused", "errors", "wrong"):
                merged[key] += client[key]
            merged["first_error"] = merged["first_error"] or client["first_error"]
    merged["seconds"] = seconds
    return merged


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has waited for (wlmscpfs forks one per association)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run(ctx: Context) -> Section:
    import loader
    import mwl
    import peers

    section = Section("concurrency", TITLE)
    seconds = 15 if ctx.quick else 60
    items = gen.make_items(N)
    queries = client_queries(items, CLIENTS)
    wl_root = mwl.worklist_files(ctx, N, items)
    data_dir = ctx.fresh_dir(f"concurrency-{N}") / "engine"
    how = loader.loaded_engine(ctx.cache, f"mwl-n{N}", data_dir, lambda: (gen.omi_message(i) for i in items))
    ctx.logs.mkdir(parents=True, exist_ok=True)
    matches = [len(q[2]) for q in queries]
    section.add(f"N={N:,} items ({how}); {CLIENTS} clients (AE titles MOD001..MOD{CLIENTS:03d}, source addresses "
                f"127.0.0.2..127.0.0.{CLIENTS + 1}), each its own station + date ({min(matches)}-{max(matches)} "
                f"matches), {seconds:.0f} s per server; {WORKERS} worker processes x {CLIENTS // WORKERS} threads, "
                "each thread one pynetdicom association at a time: associate, C-FIND, release, again. Engine with "
                "its default configuration (dicom.max_associations 128, max_associations_per_peer 16).", "")
    rows, figures = [], {}
    starters = [
        ("engine", lambda: start_engine("engine-concurrency", data_dir, ctx.logs)),
        ("wlmscpfs", lambda: peers.start_wlmscpfs(wl_root, ctx.logs)),
        ("orthanc", lambda: peers.start_orthanc(wl_root / mwl.WLM_AET, ctx.tmp / "concurrency-orthanc", ctx.logs)),
    ]
    for name, start in starters:
        server = start()
        try:
            port = server.dicom_port if name == "engine" else server.ports["dicom"]
            called = {"engine": ENGINE_AET, "wlmscpfs": mwl.WLM_AET, "orthanc": "BENCHORTHANC"}[name]
            load_before = os.getloadavg()[0]
            server_cpu = cpu_seconds(server.pid)
            client_cpu = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
            result = drive(ctx, name, called, port, queries, seconds)
            server_cpu = cpu_seconds(server.pid) - server_cpu
            client_cpu = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]) - client_cpu
        finally:
            server.stop()
        lat = sorted(result["latencies"])
        rate = len(lat) / seconds
        figures[name] = (rate, percentile(lat, 50), percentile(lat, 99), result)
        rows.append([name, len(lat), f"{rate:.1f}", fmt_ms(percentile(lat, 50)), fmt_ms(percentile(lat, 99)),
                     fmt_ms(lat[-1]) if lat else "-", result["refused"], result["errors"], result["wrong"],
                     f"{server_cpu / max(1, len(lat)) * 1000:.0f}", f"{client_cpu / max(1, len(lat)) * 1000:.0f}",
                     f"{load_before:.1f}", result["first_error"][:60] or "-"])
        print(f"  {name}: {rate:.1f} queries/s, p99 {fmt_ms(percentile(lat, 99))} ms, refused {result['refused']}, "
              f"errors {result['errors']}, wrong {result['wrong']}", flush=True)
    section.add(md_table(["server", "answered (checked)", "queries/s", "p50 ms", "p99 ms", "max ms", "refused",
                          "errors", "wrong answers", "server CPU ms / query", "clients CPU ms / query",
                          "load avg (1 min) at start", "first problem"], rows), "",
                "Answer time: A-ASSOCIATE request to the final C-FIND response, per query. CPU: the server "
                "process (with the children it reaped) and the 4 client processes during the run, per answered "
                "query. The clients query back to back, so the answer time is the number of clients over the "
                "rate (Little's law): p99 < 250 ms needs >= ~400 queries/s here.", "")
    wrong = sum(f[3]["wrong"] for f in figures.values())
    if wrong:
        raise BenchFailure(f"{wrong} wrong answers: {[(n, f[3]['first_error']) for n, f in figures.items()]}")
    engine_rate, _p50, engine_p99, engine_result = figures["engine"]
    faster_peer = max(figures["wlmscpfs"][0], figures["orthanc"][0])
    section.target("100 modalities: the engine refuses no association with its default configuration",
                   f"{engine_result['refused']} refused, {engine_result['errors']} errors of "
                   f"{len(engine_result['latencies']) + engine_result['refused'] + engine_result['errors']}",
                   engine_result["refused"] == 0 and engine_result["errors"] == 0)
    section.target("100 modalities: engine p99 answer time < 250 ms", f"p99 {fmt_ms(engine_p99)} ms",
                   engine_p99 < 0.25)
    section.target("100 modalities: engine >= 5x the queries/s of the faster of wlmscpfs and Orthanc",
                   f"engine {engine_rate:.1f}/s, faster peer {faster_peer:.1f}/s "
                   f"({engine_rate / faster_peer:.1f}x)" if faster_peer else f"engine {engine_rate:.1f}/s, peers 0/s",
                   engine_rate >= 5 * faster_peer)
    return section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--jobs")
    parser.add_argument("--port", type=int)
    parser.add_argument("--called")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--start-at", type=float)
    args = parser.parse_args()
    if args.worker:
        worker(args)


if __name__ == "__main__":
    main()
