#!/usr/bin/env python3
"""Run the engine's benchmarks against real peers on this machine; results go to bench/RESULTS.md.

    .venv/bin/python bench/run.py                 # everything (make bench); ~30 minutes
    .venv/bin/python bench/run.py --quick         # smaller sizes, fewer rounds; a few minutes
    .venv/bin/python bench/run.py --only hl7 --only storage [--rounds 2] [--no-profile] [--keep]

Benchmarks (one module each): mwl (worklist query, RAD-5), hl7 (ORM ingest over MLLP, RAD-2), storage
(C-STORE, RAD-8), loop (order -> worklist, MPPS -> RIS status), growth (memory and query time as items
and the journal grow).  Set-up first (bench/setup.py): installs DCMTK and Orthanc with apt-get when
missing (root) and the peers' venv bench/.venv (txHL7, python-hl7, Twisted, py-spy).

Exit status: 0 when every benchmark ran and every answer was right (targets met or not: see
RESULTS.md), 1 when a benchmark failed (a wrong answer, a peer or the engine that would not run).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
sys.dont_write_bytecode = True

from common import BENCH, ROOT, Context, Section  # noqa: E402

BENCHMARKS = ["mwl", "concurrency", "hl7", "storage", "loop", "growth"]
MODULES = {"hl7": "hl7_ingest"}     # a module named hl7 would shadow python-hl7
RESULTS = BENCH / "RESULTS.md"
STORE = BENCH / "results"          # the latest section of each benchmark (markdown + targets as JSON)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)

    def version(package: str) -> str:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return done.stdout or "?"

    return (f"{os.cpu_count()} cores {cpu}, {mem / 1024 / 1024:.0f} GiB; Python {platform.python_version()}; "
            f"dcmtk {version('dcmtk')}, orthanc {version('orthanc')}; engine at git "
            f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}"
            f" (+ uncommitted changes: {'yes' if subprocess.run(['git', 'status', '--porcelain', 'engine'], cwd=ROOT, capture_output=True, text=True).stdout.strip() else 'no'})")


def save(section: Section, command: str, started: str, seconds: float, failed: str = "") -> None:
    STORE.mkdir(exist_ok=True)
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    head = [f"## {section.title}", "", f"`{command}` — {started}, {seconds / 60:.1f} min; {machine()}; load average "
            f"at the end {load}", ""]
    if failed:
        head += [f"**FAILED**: {failed}", ""]
    (STORE / f"{section.name}.md").write_text("\n".join(head + section.body) + "\n")
    (STORE / f"{section.name}.json").write_text(json.dumps({
        "command": command, "date": started, "failed": failed,
        "targets": [t.__dict__ for t in section.targets]}, indent=1))


def write_results() -> None:
    """RESULTS.md = a table of every target (latest run of each benchmark) + each benchmark's section."""
    rows, parts = [], []
    for name in BENCHMARKS:
        md, js = STORE / f"{name}.md", STORE / f"{name}.json"
        if md.exists():
            parts.append(md.read_text())
        if js.exists():
            info = json.loads(js.read_text())
            if info.get("failed"):
                rows.append(f"| {name} | (benchmark failed: {info['failed'][:80]}) | | FAILED | {info['date']} |")
            for t in info["targets"]:
                verdict = "met" if t["met"] else "not measured" if t["met"] is None else "**MISSED**"
                rows.append(f"| {name} | {t['target']} | {t['measured']} | {verdict} | {info['date']} |")
    notes = STORE / "notes.md"    # hand-written reading of the latest full run (kept across runs)
    text = ["# Benchmark results", "",
            "Written by `bench/run.py` (see bench/README.md for what each benchmark measures and how). Each "
            "section below is the latest run of that benchmark on this machine, with its command and date. "
            "Shared 2-core VM: engine, peers and load generators share the cores with whatever else runs (the "
            "load average is in each section's header); the same peer measured in two runs here moved by 20 % "
            "and more, so read the ratios against the peer measured in the same run.", "",
            "## Targets", "", "| benchmark | target | measured | verdict | run |", "|---|---|---|---|---|", *rows, "",
            *([notes.read_text(), ""] if notes.exists() else []), *parts]
    RESULTS.write_text("\n".join(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (a few minutes)")
    parser.add_argument("--rounds", type=int, help="override every benchmark's number of rounds")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the py-spy profiles of the engine under HL7 and storage load")
    parser.add_argument("--keep", action="store_true", help="keep the run's temp dir (engine data, logs)")
    parser.add_argument("--tmp", type=Path, help="temp dir for the run (default: a new one under /tmp)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "swf-bench-cache",
                        help="generated inputs kept between runs (default /tmp/swf-bench-cache)")
    parser.add_argument("--skip-setup", action="store_true", help="do not check/install peers and the bench venv")
    parser.add_argument("--results-only", action="store_true",
                        help="only rebuild RESULTS.md from bench/results/ (after editing results/notes.md)")
    args = parser.parse_args()
    if args.results_only:
        write_results()
        return 0

    if not args.skip_setup:
        import setup
        setup.ensure()
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="swf-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    ctx = Context(tmp=tmp, cache=args.cache, quick=args.quick, rounds=args.rounds, profile=args.profile)
    command = "bench/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"bench run in {tmp}; logs in {ctx.logs}", flush=True)
    failures = 0
    try:
        for name in args.only or BENCHMARKS:
            module = __import__(MODULES.get(name, name))
            started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            t0 = time.perf_counter()
            print(f"\n== {name}: {module.__doc__.strip().splitlines()[0]}", flush=True)
            try:
                section = module.run(ctx)
                save(section, command, started, time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - record the failure, go on with the next benchmark
                failures += 1
                traceback.print_exc()
                failed = Section(name, getattr(module, "TITLE", name))
                failed.body.append("```\n" + traceback.format_exc()[-3000:] + "```")
                save(failed, command, started, time.perf_counter() - t0, failed=f"{type(exc).__name__}: {exc}"[:300])
            write_results()
    finally:
        if not args.keep and args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nresults: {RESULTS}" + (f"; {failures} benchmark(s) FAILED" if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
