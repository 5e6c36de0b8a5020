"""py-spy profiles of the engine under load, summarised as top-function tables for RESULTS.md.

``Profiler(pid, out)`` runs ``py-spy record --format raw`` (collapsed stacks, one line per distinct stack
with its sample count) against the running engine while a benchmark drives it; ``summary()`` turns the
stacks into two tables: functions by *self* samples (where the CPU actually is) and by *total* samples
(a function and everything it calls), both as % of the samples of busy threads.  Idle threads (blocked in
select/poll/waits) are not sampled (py-spy's default, no ``--idle``).
"""
from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

from common import PY_SPY, md_table


_PLUMBING = ("(threading.py)", "(socketserver.py)", "(runpy.py)", "(engine/cli.py)", "(base.py)")


class Profiler:
    def __init__(self, pid: int, out: Path, rate: int = 200):
        self.out = out
        self.error = ""
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--output", str(out),
             "--nonblocking"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(1.0)   # py-spy attaches
        if self.proc.poll() is not None:
            self.error = self.proc.stdout.read().decode(errors="replace")[-500:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)   # SIGINT: py-spy writes the file and exits
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.returncode not in (0, None) and not self.error and not self.out.exists():
            self.error = self.proc.stdout.read().decode(errors="replace")[-500:]

    def summary(self, top: int = 15) -> str:
        if self.error or not self.out.exists():
            return f"(no profile: py-spy failed: {self.error.strip() or 'no output'})"
        own: Counter = Counter()
        total: Counter = Counter()
        ours: Counter = Counter()    # the engine's own functions (engine/...), including callees
        samples = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in stack.split(";") if f]
            if not frames:
                continue
            samples += n
            own[_short(frames[-1])] += n
            for frame in set(_short(f, line=False) for f in frames):
                total[frame] += n
            for frame in set(_short(f, line=False) for f in frames if f.partition(" (")[2].startswith(("engine/", "/work")) and "engine/" in f and "cli.py" not in f):
                ours[frame] += n
        if not samples:
            return "(no samples)"
        rows_self = [[f"`{name}`", f"{100 * n / samples:.1f} %"] for name, n in own.most_common(top)]
        rows_total = [[f"`{name}`", f"{100 * n / samples:.1f} %"] for name, n in total.most_common(top + 10)
                      if not name.startswith("<module>") and not name.endswith(_PLUMBING)][:top]
        return "\n".join([f"{samples} samples of busy engine threads ({self.out.name}).", "",
                          "Top functions by own time:", "", md_table(["function (file:line)", "self"], rows_self), "",
                          "Top functions including callees:", "", md_table(["function (file)", "total"], rows_total),
                          "", "The engine's own functions (engine/...), including callees:", "",
                          md_table(["function (file)", "total"],
                                   [[f"`{name}`", f"{100 * n / samples:.1f} %"] for name, n in ours.most_common(top)])])


def _short(frame: str, line: bool = True) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py:123)``; py-spy's raw frames look like that."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, number = where.rpartition(":")
    if not number.isdigit():
        path, number = where, ""
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short}:{number})" if line and number else f"{name} ({short})"
