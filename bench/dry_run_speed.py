"""In-process timing of the rules dry-run (engine/workflow/dry_run.py) over a journal of N recorded orders.

The journal is filled directly with N distinct ORM^O01 (``gen.orm_message``, the ``hl7`` benchmark's orders)
on a fresh SQLite file, then ``dry_run`` routes all of them by routes/ and by a copy in which the CT room
moved to CT2_AE (so every CT order is a difference).  Prints messages per second, the differences found
and the peak RSS, and the query plan of a journal page (it must walk the primary key, not sort the range).

    .venv/bin/python bench/dry_run_speed.py [-n 20000] [--limit 1000]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import gen  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="journal rows (default 20000)")
    parser.add_argument("--limit", type=int, default=1000, help="differences kept (default 1000)")
    args = parser.parse_args()

    from engine.config import Config
    from engine.hl7.profiles import load_profiles
    from engine.rules.ruleset import load_ruleset
    from engine.store import journal, timestamps
    from engine.store.database import Store
    from engine.workflow.dry_run import dry_run

    with tempfile.TemporaryDirectory(prefix="swf-dry-run-") as tmp:
        candidate = Path(tmp) / "candidate"
        shutil.copytree(ROOT / "routes", candidate)
        rooms = candidate / "20-rooms.yaml"
        rooms.write_text(rooms.read_text().replace("station_ae: CT1_AE", "station_ae: CT2_AE"))
        config = Config(data_dir=str(Path(tmp) / "var"))
        store = Store(config.database)
        started = time.perf_counter()

        def fill(txn, first: int, last: int) -> None:
            for seq in range(first, last):
                raw, control_id, _ = gen.orm_message(seq, "D")
                journal.insert(txn, received_at=timestamps.now_iso(), peer="bench", sending_application="RIS",
                               sending_facility="GENHOSP", control_id=control_id, message_code="ORM^O01",
                               hl7_version="2.3.1", payload_hash=str(seq), raw=raw)
        for first in range(1, args.n + 1, 5000):
            store.write(lambda txn, first=first: fill(txn, first, min(first + 5000, args.n + 1)))
        print(f"journal filled with {args.n} rows in {time.perf_counter() - started:.1f} s")
        plan = store.read(lambda txn: txn.rows(
            "EXPLAIN QUERY PLAN SELECT id, raw FROM journal WHERE received_at >= ? AND received_at < ? AND id > ?"
            " AND id <= ? ORDER BY id LIMIT ?", ("2000", "3000", 0, args.n, 500)))
        print("page plan:", "; ".join(str(row[-1]) for row in plan))
        profiles = load_profiles(ROOT / "profiles")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        report = dry_run(store, config, profiles, load_ruleset(ROOT / "routes"), load_ruleset(candidate),
                         since="2000-01-01", limit=args.limit)
        seconds = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        store.close()
    print(f"dry-run: {report.messages} messages in {seconds:.1f} s = {report.messages / seconds:.0f} messages/s; "
          f"{report.changed} changed {report.by_kind}, {len(report.differences)} kept (limit {args.limit})")
    print(f"peak RSS {rss_before / 1024:.0f} MiB before, {rss_after / 1024:.0f} MiB after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
