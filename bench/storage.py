"""Benchmark 3, storage (RAD-8): DCMTK storescu sending to the engine, to DCMTK storescp and to a minimal
pynetdicom SCP (the floor of pynetdicom's receive path: it discards what it gets), same run.

Two sets (gen.write_images, kept in the cache): 500 CT-like files (512x512x16 bit, ~0.5 MB) and 50 large
CR-like files (2048x1280x16 bit, ~5 MB).  Each run is one ``storescu +sd`` process sending the whole set
over one association; receivers alternate round by round.  The engine gets a fresh data dir each run
(so no instance is a duplicate) and must index every instance (its ``instances`` table) and hold every
file; storescp must have written every file.  The engine commits each instance's index row durably
before its C-STORE response; storescp only writes the file (page cache, no fsync).

Then a py-spy profile of the engine during one more CT run.
"""
from __future__ import annotations

import time
from pathlib import Path

import gen
import peers
from common import (ENGINE_AET, HOST, SCU_AET, BenchFailure, Context, Section, Stats, fmt_ms, md_table,
                    run_timed, sqlite_count, start_engine)

TITLE = "Storage (RAD-8): storescu -> engine vs DCMTK storescp vs a minimal pynetdicom SCP"
RECEIVERS = ("engine", "storescp", "pynetdicom")
GEN_VERSION = "img-v1"


def image_set(ctx: Context, kind: str, count: int) -> tuple[Path, int]:
    folder = ctx.cache / f"{GEN_VERSION}-{kind}-{count}"
    done = ctx.cache / f"{folder.name}.complete"   # beside the folder: storescu +sd sends every file in it
    if not done.exists():
        t0 = time.perf_counter()
        gen.write_images(kind, count, folder)
        done.write_text(str(count))
        print(f"  wrote {count} {kind} files in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder, sum(p.stat().st_size for p in folder.glob("*.dcm"))


def storescu(aet: str, port: int, folder: Path) -> float:
    elapsed, out, code = run_timed(["storescu", "-aet", SCU_AET, "-aec", aet, "+sd", HOST, str(port), folder])
    if code != 0:
        raise BenchFailure(f"storescu to {aet}: exit {code}\n{out[-1500:]}")
    return elapsed


def files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def send_to_engine(ctx: Context, folder: Path, count: int, tag: str, profile: bool = False) -> tuple[float, str]:
    data_dir = ctx.fresh_dir(f"storage-{tag}") / "engine"
    engine = start_engine(f"engine-storage-{tag}", data_dir, ctx.logs)
    summary = ""
    try:
        prof = None
        if profile:
            from profiling import Profiler
            prof = Profiler(engine.pid, ctx.tmp / "profiles" / f"storage-{tag}.txt")
        elapsed = storescu(ENGINE_AET, engine.dicom_port, folder)
        if prof is not None:
            prof.stop()
            summary = prof.summary()
        indexed = sqlite_count(engine.database, "SELECT COUNT(*) FROM instances")
        stored = files_under(data_dir / "dicom")
        if indexed != count or stored != count:
            raise BenchFailure(f"engine run {tag}: {indexed} instances indexed, {stored} files, {count} sent")
    finally:
        engine.stop()
    return elapsed, summary


def run(ctx: Context) -> Section:
    section = Section("storage", TITLE)
    sets = [("ct", 100 if ctx.quick else 500), ("large", 10 if ctx.quick else 50)]
    rounds = ctx.rounds or (2 if ctx.quick else 3)
    out_dir = ctx.fresh_dir("storage-storescp")
    scp = peers.start_storescp(out_dir, ctx.logs)
    minimal = peers.start_pynetdicom_scp(ctx.logs)
    rows = []
    shares = {}
    try:
        for kind, count in sets:
            folder, size = image_set(ctx, kind, count)
            times: dict[str, list[float]] = {name: [] for name in RECEIVERS}
            storescu("BENCHSTORESCP", scp.ports["dicom"], folder)   # warm-up: page cache of the source files
            for r in range(rounds):
                for name in RECEIVERS[r % 3:] + RECEIVERS[:r % 3]:   # rotate who goes first
                    if name == "engine":
                        times["engine"].append(send_to_engine(ctx, folder, count, f"{kind}-{r}")[0])
                    elif name == "pynetdicom":
                        times[name].append(storescu("BENCHPYNETDICOM", minimal.ports["dicom"], folder))
                    else:
                        for old in out_dir.iterdir():
                            old.unlink()
                        times["storescp"].append(storescu("BENCHSTORESCP", scp.ports["dicom"], folder))
                        if files_under(out_dir) != count:
                            raise BenchFailure(f"storescp holds {files_under(out_dir)} files, {count} sent")
                    print(f"  round {r + 1} {kind} -> {name}: {count / times[name][-1]:.0f} inst/s", flush=True)
            stats = {name: Stats.of(values) for name, values in times.items()}
            for name in RECEIVERS:
                st = stats[name]
                rows.append([f"{count} {kind} ({size / 1e6:.0f} MB)", name, st.n, fmt_ms(st.median),
                             f"{fmt_ms(st.min)}-{fmt_ms(st.max)}", f"{count / st.median:.0f}",
                             f"{size / 1e6 / st.median:.0f}",
                             "-" if name == "storescp" else f"{stats['storescp'].median / st.median:.2f}"])
            shares[kind] = stats["storescp"].median / stats["engine"].median
        section.add(f"One storescu process per run (one association; P-DATA as large as each receiver announces, "
                    f"storescu sending at most 128 KiB); {rounds} "
                    "rounds, receivers alternating; every run's received count checked.", "",
                    md_table(["set", "receiver", "runs", "median ms", "min-max ms", "inst/s", "MB/s",
                              "throughput / storescp"], rows), "",
                    "`pynetdicom` is the minimal pynetdicom SCP (bench/peers/storescp_pynetdicom.py): no file, no "
                    "index, just pynetdicom's association loop; no engine built on pynetdicom can be faster.", "")
        if ctx.profile:
            kind, count = sets[0]
            folder, _ = image_set(ctx, kind, count)
            elapsed, summary = send_to_engine(ctx, folder, count, f"{kind}-profile", profile=True)
            section.add(f"### Profile: engine receiving {count} {kind} files ({count / elapsed:.0f} inst/s with "
                        "py-spy attached)", "", summary, "")
    finally:
        scp.stop()
        minimal.stop()
    section.target(">= 50% of storescp throughput",
                   f"CT: {100 * shares['ct']:.0f} %, large: {100 * shares['large']:.0f} %",
                   min(shares.values()) >= 0.5)
    return section
