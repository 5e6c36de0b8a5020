"""One target's inputs run in-process: a per-input time limit, outcomes sorted, findings kept.

An input's outcome is ``ok`` (the code answered), ``refused`` (it raised one of the exceptions the code
declares for bad input), ``crash`` (any other exception: a bug) or ``hang`` (still running after the time
limit).  A crash or hang is written to the findings folder (input + traceback), once per distinct place.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import random
import resource
import signal
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from . import mutate

TARGETS = ("hl7", "mllp", "pdu", "dimse", "header", "worklist", "qr", "mpps", "rules", "http")
CORPUS_LIMIT = 4000          # inputs kept for mutation in the grammar mode (those with a new outcome)


class Hang(BaseException):
    """Raised by the timer inside a target that exceeded its time limit (BaseException: no target catches it)."""


@dataclass
class Tally:
    target: str
    inputs: int = 0
    ok: int = 0
    refused: int = 0
    crashes: int = 0
    hangs: int = 0
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    engine: str = ""
    findings: list[str] = field(default_factory=list)

    def json(self) -> str:
        self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return json.dumps(asdict(self))

    def write(self, path: Path) -> None:
        path.write_text(self.json())


def load(name: str) -> ModuleType:
    """A target module: NAME, seeds(), mutate(rng, data, corpus), Target(workdir).run(data), refused(exc)."""
    return importlib.import_module(f"tests.fuzz.targets.{name}")


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang()


class Fuzzer:
    """Runs one target's inputs and counts their outcomes."""

    def __init__(self, module: ModuleType, workdir: Path, time_limit: float, findings: Path | None = None):
        self.module = module
        workdir.mkdir(parents=True, exist_ok=True)
        self.target = module.Target(workdir)
        self.time_limit = time_limit
        self.findings = findings
        self.tally = Tally(module.NAME)
        self._seen: set[str] = set()
        signal.signal(signal.SIGALRM, _on_alarm)

    def one(self, data: bytes) -> str:
        """Run one input; its outcome, and for a refusal or crash a short signature of it."""
        self.tally.inputs += 1
        signal.setitimer(signal.ITIMER_REAL, self.time_limit)
        try:
            self.target.run(data)
        except Hang:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.tally.hangs += 1
            self._keep("hang", data, f"no answer within {self.time_limit} s\n" + traceback.format_exc())
            return "hang"
        except Exception as exc:  # noqa: BLE001 - sorting exceptions is the point
            signal.setitimer(signal.ITIMER_REAL, 0)
            if self.module.refused(exc):
                self.tally.refused += 1
                return f"refused:{type(exc).__name__}:{str(exc)[:30]}"
            self.tally.crashes += 1
            self._keep("crash", data, traceback.format_exc())
            return f"crash:{type(exc).__name__}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.tally.ok += 1
        return "ok"

    def _keep(self, kind: str, data: bytes, trace: str) -> None:
        place = trace.strip().splitlines()[-3:-1]
        key = hashlib.sha1(f"{kind}{place}".encode()).hexdigest()[:12]
        if key in self._seen:
            return
        self._seen.add(key)
        name = f"{self.module.NAME}-{kind}-{key}"
        self.tally.findings.append(name)
        if self.findings is not None:
            self.findings.mkdir(parents=True, exist_ok=True)
            (self.findings / f"{name}.bin").write_bytes(data)
            (self.findings / f"{name}.txt").write_text(trace)

    def grammar_run(self, inputs: int, seed: int = 0, progress: Callable[[Tally], None] | None = None) -> Tally:
        """``inputs`` inputs from the seeds through the target's grammar mutator (and byte mutations);
        an input whose outcome was not seen before joins the corpus (feedback without coverage)."""
        rng = random.Random(seed)
        corpus = list(self.module.seeds())
        outcomes: set[str] = set()
        for data in corpus:
            outcomes.add(self.one(data))
        while self.tally.inputs < inputs:
            base = rng.choice(corpus)
            data = (self.module.mutate(rng, base, corpus) if rng.random() < 0.75
                    else mutate.any_bytes(rng, base, corpus))
            outcome = self.one(data)
            if outcome not in outcomes and len(corpus) < CORPUS_LIMIT:
                outcomes.add(outcome)
                corpus.append(data)
            if progress is not None and self.tally.inputs % 5000 == 0:
                progress(self.tally)
        return self.tally

    def close(self) -> None:
        self.target.close()
