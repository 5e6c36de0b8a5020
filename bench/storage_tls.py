#!/usr/bin/env python3
"""C-STORE over DICOM TLS against plain, one sitting: storescu (+tls) to the engine's plain port, to its TLS
port served by the direct storage path and by pynetdicom (``dicom.direct_storage: false``), and to DCMTK
storescp plain and +tls; the same image sets as the storage benchmark (storage.py's cache).

    .venv/bin/python bench/storage_tls.py [--quick] [--rounds N] [--keep]      (make bench-tls)

Both sides of TLS run with client certificates from tests/pki.py (ECDSA P-256; TLS 1.3 as negotiated by
storescu's default BCP 195 profile).  Receivers alternate round by round; every run's received count is
checked (engine: indexed instances and files; storescp: files).  Prints the table and the ratios; the
figures go into RESULTS.md by hand (a short section), since the machine may be shared.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
sys.dont_write_bytecode = True

from common import (ENGINE_AET, HOST, SCU_AET, BenchFailure, Context, Stats, fmt_ms, md_table,  # noqa: E402
                    run_timed, sqlite_count, start_engine, start_process, free_port, wait_port)
from storage import files_under, image_set  # noqa: E402
from tests.pki import CertificateAuthority, Issued  # noqa: E402

RECEIVERS = ("engine plain", "engine TLS direct", "engine TLS pynetdicom", "engine plain pynetdicom",
             "storescp plain", "storescp TLS")


def storescu(port: int, folder: Path, called: str, client: Issued | None, ca: Path) -> float:
    tls = ["+tls", client.key, client.cert, "+cf", ca] if client else []
    elapsed, out, code = run_timed(["storescu", *tls, "-aet", SCU_AET, "-aec", called, "+sd", HOST, port, folder])
    if code != 0:
        raise BenchFailure(f"storescu to {called}:{port}: exit {code}\n{out[-1500:]}")
    return elapsed


def engine_run(ctx: Context, folder: Path, count: int, tag: str, pki: dict, tls: bool, direct: bool) -> float:
    data_dir = ctx.fresh_dir(f"tls-{tag}") / "engine"
    config = data_dir.parent / "engine.yaml"
    tls_port = free_port() if tls else 0
    server = pki["engine"]
    config.write_text("dicom:\n" f"  direct_storage: {str(direct).lower()}\n" + (
        f"  tls_port: {tls_port}\n  tls: {{cert: {server.cert}, key: {server.key}, ca: {pki['ca']}, "
        "require_client_cert: true}\n" if tls else ""))
    engine = start_engine(f"engine-tls-{tag}", data_dir, ctx.logs, extra=("--config", config))
    try:
        if tls:
            wait_port(tls_port, engine.proc.popen, log=engine.proc.log)
        elapsed = storescu(tls_port if tls else engine.dicom_port, folder, ENGINE_AET,
                           pki["client"] if tls else None, pki["ca"])
        indexed = sqlite_count(engine.database, "SELECT COUNT(*) FROM instances")
        if indexed != count or files_under(data_dir / "dicom") != count:
            raise BenchFailure(f"engine run {tag}: {indexed} indexed, {count} sent")
    finally:
        engine.stop()
    return elapsed


def storescp_run(ctx: Context, folder: Path, count: int, tag: str, pki: dict, tls: bool) -> float:
    out_dir = ctx.fresh_dir(f"storescp-{tag}")
    port = free_port()
    options = ["+tls", pki["engine"].key, pki["engine"].cert, "+cf", pki["ca"]] if tls else []
    proc = start_process(f"storescp-{tag}", ["storescp", *options, "-dhl", "-aet", "BENCHSTORESCP", "-od",
                                            out_dir, port], ctx.logs)
    try:
        wait_port(port, proc.popen, log=proc.log)
        elapsed = storescu(port, folder, "BENCHSTORESCP", pki["client"] if tls else None, pki["ca"])
        if files_under(out_dir) != count:
            raise BenchFailure(f"storescp {tag}: {files_under(out_dir)} files, {count} sent")
    finally:
        proc.stop()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 CT files (default 500) and 10 large (50)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/swf-bench-cache"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="swf-bench-tls-"))
    ctx = Context(tmp, args.cache, args.quick, args.rounds, False)
    authority = CertificateAuthority(tmp / "pki")
    pki = {"ca": authority.ca, "engine": authority.issue("engine", ENGINE_AET),
           "client": authority.issue("client", SCU_AET)}
    rows, medians = [], {}
    try:
        for kind, count in [("ct", 100 if args.quick else 500), ("large", 10 if args.quick else 50)]:
            folder, size = image_set(ctx, kind, count)
            times: dict[str, list[float]] = {name: [] for name in RECEIVERS}
            for r in range(args.rounds):
                order = RECEIVERS[r % len(RECEIVERS):] + RECEIVERS[:r % len(RECEIVERS)]
                for name in order:
                    tag = f"{kind}-{r}-{name.replace(' ', '-')}"
                    if name.startswith("engine"):
                        elapsed = engine_run(ctx, folder, count, tag, pki, "TLS" in name, "pynetdicom" not in name)
                    else:
                        elapsed = storescp_run(ctx, folder, count, tag, pki, "TLS" in name)
                    times[name].append(elapsed)
                    print(f"  round {r + 1} {kind} -> {name}: {count / elapsed:.0f} inst/s", flush=True)
            stats = {name: Stats.of(values) for name, values in times.items()}
            for name in RECEIVERS:
                medians[(kind, name)] = stats[name].median
                rows.append([f"{count} {kind} ({size / 1e6:.0f} MB)", name, stats[name].n, fmt_ms(stats[name].median),
                             f"{count / stats[name].median:.0f}", f"{size / 1e6 / stats[name].median:.0f}"])
        print(md_table(["set", "receiver", "runs", "median ms", "inst/s", "MB/s"], rows))
        ratio_rows = []
        for kind in ("ct", "large"):
            m = {name: medians[(kind, name)] for name in RECEIVERS}
            ratio_rows.append([kind, f"{m['engine plain'] / m['engine TLS direct']:.2f}",
                               f"{m['engine plain pynetdicom'] / m['engine TLS pynetdicom']:.2f}",
                               f"{m['engine TLS pynetdicom'] / m['engine TLS direct']:.2f}",
                               f"{m['storescp plain'] / m['storescp TLS']:.2f}",
                               f"{m['storescp TLS'] / m['engine TLS direct']:.2f}"])
        print()
        print("Throughput ratios (inst/s over inst/s):")
        print(md_table(["set", "engine TLS / plain (direct path)", "engine TLS / plain (pynetdicom)",
                        "TLS: direct / pynetdicom", "storescp TLS / plain", "engine TLS / storescp TLS"],
                       ratio_rows))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
