"""In-process micro-benchmark of the HL7 ingest path: N distinct ORM^O01 through the engine's real pipeline.

The messages (``gen.orm_message``, as the ``hl7`` benchmark sends them) run through the ``Ingestor`` on a
``Store`` over a fresh SQLite file (WAL, synchronous=FULL, group commit, the outbound event dispatcher as
before-commit hook), exactly as ``swf serve`` does after the MLLP framing; only the socket is skipped.
``--window W`` keeps W messages in flight (W=8 is roughly 8 MLLP connections each waiting for its ACK).

    .venv/bin/python bench/ingest_profile.py [-n 5000] [--window 8] [--repeat 3] [--cprofile out.prof]

Prints wall and process-CPU microseconds per message and the mean batch size; with ``--cprofile`` the
store's writer thread is profiled (cProfile follows one thread) and the top functions are printed.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import gen  # noqa: E402
from common import BenchFailure  # noqa: E402
from loader import _pipeline  # noqa: E402


def run_once(count: int, window: int, prefix: str, profiler: cProfile.Profile | None) -> dict[str, float]:
    """Ingest ``count`` new orders with ``window`` in flight; returns timings per message."""
    from engine.workflow.ingest import Received

    messages = [gen.orm_message(seq, prefix)[0] for seq in range(1, count + 1)]
    with tempfile.TemporaryDirectory(prefix="swf-ingest-profile-") as tmp:
        store, ingestor = _pipeline(Path(tmp))
        store.start()
        try:
            if profiler is not None:
                store.write(lambda txn: profiler.enable())
            pending: list[Future] = []
            batches_before = store.batches_committed
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for raw in messages:
                received = Received(raw, "bench-profile")
                pending.append(store.submit(lambda txn, r=received: ingestor(txn, r)))
                if len(pending) >= window:
                    # Closed loop: wait for the oldest, as a connection waits for its ACK before sending more.
                    result = pending.pop(0).result(300)
                    if result.ack_code != "AA":
                        raise BenchFailure(f"{result.control_id}: {result.ack_code} {result.reason}")
            for future in pending:
                result = future.result(300)
                if result.ack_code != "AA":
                    raise BenchFailure(f"{result.control_id}: {result.ack_code} {result.reason}")
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            batches = store.batches_committed - batches_before
            if profiler is not None:
                store.write(lambda txn: profiler.disable())
        finally:
            store.close()
    return {"wall_us": wall / count * 1e6, "cpu_us": cpu / count * 1e6, "msg_s": count / wall,
            "batch": count / max(batches, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=5000)
    parser.add_argument("--window", type=int, default=8, help="messages in flight (default 8)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cprofile", metavar="FILE", help="profile the writer thread, save stats to FILE")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.cprofile else None
    runs = []
    for r in range(args.repeat):
        result = run_once(args.count, args.window, f"IP{r}X", profiler)
        runs.append(result)
        print(f"run {r + 1}: {result['wall_us']:.0f} us/msg wall, {result['cpu_us']:.0f} us/msg CPU, "
              f"{result['msg_s']:.0f} msg/s, {result['batch']:.1f} msg/batch", flush=True)
    print(f"median of {args.repeat}: {statistics.median(r['wall_us'] for r in runs):.0f} us/msg wall, "
          f"{statistics.median(r['cpu_us'] for r in runs):.0f} us/msg CPU, "
          f"{statistics.median(r['msg_s'] for r in runs):.0f} msg/s (n={args.count}, window={args.window})")
    if profiler is not None:
        profiler.dump_stats(args.cprofile)
        stats = pstats.Stats(args.cprofile)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
