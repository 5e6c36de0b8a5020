"""``make fuzz``: every target in turn, each in a child process of its own (one at a time), then the table.

    python -m tests.fuzz.runner [--inputs N] [--engine auto|atheris|grammar] [--targets hl7,pdu,...]

``--inputs`` (``FUZZ_INPUTS`` in make) is the total across targets, shared by ``SHARE`` (the fast parsers
get more).  ``atheris``: coverage-guided (libFuzzer through atheris, the engine's modules instrumented), its
byte mutations mixed with the target's grammar mutator; ``grammar``: the grammar mutator alone (with a
corpus fed by new outcomes); ``auto`` (the default): atheris for the engine's own byte parsers
(``ATHERIS_TARGETS``: upper layer PDUs, the direct path's DIMSE reassembly, the header reader), where
coverage guidance pays and the instrumented code is most of the time spent, the grammar mutators for the
targets whose time goes to pydicom, SQLite, YAML and twisted (instrumented, they ran 3-8 times slower
here: 10^6 inputs would not fit in an hour on two shared cores).  A child
writes its tally as it goes; the parent adds the child's peak RSS (``wait4``) and prints one row per
target.  Crashes and hangs are kept under ``--findings`` (input + traceback); exit status 1 if any.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import harness

ROOT = Path(__file__).resolve().parents[2]
SHARE = {"pdu": 0.32, "qr": 0.13, "hl7": 0.12, "mllp": 0.10, "dimse": 0.08, "http": 0.08, "worklist": 0.07,
         "header": 0.04, "mpps": 0.03, "rules": 0.03}
ATHERIS_TARGETS = ("pdu", "dimse", "header")
MAX_LEN = {"pdu": 65536, "dimse": 65536, "http": 32768, "header": 32768}


def _quiet() -> None:
    logging.disable(logging.CRITICAL)     # the targets' refusals log a line each
    warnings.simplefilter("ignore")       # pydicom warns on every invalid value


def child(name: str, inputs: int, engine: str, workdir: Path, stats: Path, findings: Path, time_limit: float,
          seed: int) -> None:
    """Run one target in this process and keep ``stats`` up to date."""
    _quiet()
    if engine == "grammar":
        fuzzer = harness.Fuzzer(harness.load(name), workdir, time_limit, findings)
        started = time.monotonic()
        fuzzer.grammar_run(inputs, seed, progress=lambda tally: tally.write(stats))
        fuzzer.tally.seconds = time.monotonic() - started
        fuzzer.tally.write(stats)
        fuzzer.close()
        return
    import atheris

    with atheris.instrument_imports(include=["engine"]):
        module = harness.load(name)
    fuzzer = harness.Fuzzer(module, workdir, time_limit, findings)
    seeds = list(module.seeds())
    corpus = workdir / "corpus"
    corpus.mkdir(exist_ok=True)
    for number, data in enumerate(seeds):
        (corpus / f"seed-{number}").write_bytes(data)
    started = time.monotonic()

    # libFuzzer ends the process with exit() after its last run (no Python atexit): the tally is rewritten
    # after every input, in place, on a file kept open.
    output = open(stats, "w")

    def one(data: bytes) -> None:
        fuzzer.one(data)
        fuzzer.tally.seconds = time.monotonic() - started
        output.seek(0)
        output.write(fuzzer.tally.json())
        output.truncate()
        output.flush()

    def mutator(data: bytes, max_size: int, mutation_seed: int) -> bytes:
        rng = random.Random(mutation_seed)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        return module.mutate(rng, data or rng.choice(seeds), seeds)[:max_size]

    atheris.Setup([sys.argv[0], str(corpus), f"-runs={inputs}", "-timeout=0", f"-seed={seed or 1}",
                   f"-max_len={MAX_LEN.get(name, 8192)}", "-rss_limit_mb=2048", "-print_final_stats=1"],
                  one, custom_mutator=mutator)
    atheris.Fuzz()


def run_target(name: str, inputs: int, engine: str, findings: Path, time_limit: float, seed: int) -> harness.Tally:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as folder:
        workdir = Path(folder)
        stats = workdir / "stats.json"
        log = workdir / "child.log"
        command = [sys.executable, "-m", "tests.fuzz.runner", "--child", name, "--inputs", str(inputs),
                   "--engine", engine, "--workdir", str(workdir / "work"), "--stats", str(stats),
                   "--findings", str(findings), "--time-limit", str(time_limit), "--seed", str(seed)]
        (workdir / "work").mkdir()
        started = time.monotonic()
        with open(log, "wb") as output:
            process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
            _pid, status, usage = os.wait4(process.pid, 0)
        tally = harness.Tally(name, **{k: v for k, v in json.loads(stats.read_text()).items() if k != "target"}) \
            if stats.exists() else harness.Tally(name)
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("stat::number_of_executed_units:"):
                tally.inputs = max(tally.inputs, int(line.split(":")[-1]))
        tally.seconds = time.monotonic() - started
        tally.peak_rss_mb = usage.ru_maxrss / 1024
        if os.waitstatus_to_exitcode(status) != 0:
            tally.crashes += 1                      # the child itself died (libFuzzer's RSS limit, a signal)
            tally.findings.append(f"{name}: child exit {os.waitstatus_to_exitcode(status)}: {text[-500:]!r}")
        return tally


def table(tallies: list[harness.Tally], engine: str) -> str:
    rows = [f"| target | engine | inputs | answered | refused (declared) | crashes | hangs | peak RSS (MB) | seconds "
            "| inputs/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in tallies:
        rate = t.inputs / t.seconds if t.seconds else 0
        rows.append(f"| {t.target} | {t.engine} | {t.inputs:,} | {t.ok:,} | {t.refused:,} | {t.crashes} | {t.hangs} | "
                    f"{t.peak_rss_mb:.0f} | {t.seconds:.0f} | {rate:,.0f} |")
    total = sum(t.inputs for t in tallies)
    rows.append(f"| **all** | {engine} | **{total:,}** | {sum(t.ok for t in tallies):,} | "
                f"{sum(t.refused for t in tallies):,} | **{sum(t.crashes for t in tallies)}** | "
                f"**{sum(t.hangs for t in tallies)}** | {max((t.peak_rss_mb for t in tallies), default=0):.0f} | "
                f"{sum(t.seconds for t in tallies):.0f} | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=int(os.environ.get("FUZZ_INPUTS", 1_000_000)))
    parser.add_argument("--engine", choices=("auto", "atheris", "grammar"), default=os.environ.get("FUZZ_ENGINE", "auto"))
    parser.add_argument("--targets", default=",".join(harness.TARGETS))
    parser.add_argument("--findings", type=Path, default=ROOT / "var" / "fuzz-findings")
    parser.add_argument("--time-limit", type=float, default=float(os.environ.get("FUZZ_TIME_LIMIT", 5.0)),
                        help="seconds an input may run before it counts as a hang")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 1)))
    parser.add_argument("--child")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--stats", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.inputs, args.engine, args.workdir, args.stats, args.findings, args.time_limit, args.seed)
        return 0
    names = [name for name in args.targets.split(",") if name]
    shares = sum(SHARE[name] for name in names)
    tallies = []
    for name in names:
        count = max(1, round(args.inputs * SHARE[name] / shares))
        engine = args.engine if args.engine != "auto" else "atheris" if name in ATHERIS_TARGETS else "grammar"
        print(f"fuzz {name}: {count:,} inputs ({engine}) ...", flush=True)
        tallies.append(run_target(name, count, engine, args.findings, args.time_limit, args.seed))
        tallies[-1].engine = engine
        last = tallies[-1]
        print(f"  {last.inputs:,} inputs, {last.crashes} crashes, {last.hangs} hangs, {last.peak_rss_mb:.0f} MB, "
              f"{last.seconds:.0f} s", flush=True)
    print()
    print(table(tallies, args.engine))
    found = [finding for tally in tallies for finding in tally.findings]
    if found:
        print(f"\nfindings (in {args.findings}):\n  " + "\n  ".join(found))
    return 1 if any(t.crashes or t.hangs for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
