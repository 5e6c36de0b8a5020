"""Worklist housekeeping (issue 16): steps never started age out of the worklist, and old rows are purged.

Both run once per cluster (engine/cluster.py ``every``, on the leader):

- ``age_out``: a step still SCHEDULED ``age_out.days`` after its scheduled start is either DISCONTINUED
  (``mode: discontinue``; final, as an HL7 DC would make it) or taken out of the worklist with its status
  kept (``mode: remove``: an MPPS from a modality that fetched it earlier still finds it).  The order's
  history says "aged out", and one ``order.aged_out`` event per order tells its destinations (status
  destinations SC/DC, procedure destinations DC/CA; ``notify_aged_out: false`` on a destination: nothing).
- ``Retention``: journal, outbox, history and operator-audit rows past their configured ages are deleted
  in batches of ``retention.batch_rows``, each batch its own write transaction, on a thread of its own so
  neither the writer nor the heartbeat waits for a long purge.  What is kept is in engine/store/retention.py.
  Stored images are never deleted by it.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Callable

from ..config import AgeOutConfig, Config
from ..domain.status import StepEvent, StepStatus, transition
from ..store import aging, queues, retention
from ..store import orders as order_store
from ..store.database import Store, Transaction

log = logging.getLogger(__name__)

DISCONTINUE, REMOVE = "discontinue", "remove"
AGE_OUT_MODES = (DISCONTINUE, REMOVE)
AGED_OUT = "order.aged_out"


def check_age_out(config: AgeOutConfig) -> None:
    """Refuse a mode the engine does not know (at start, with the setting's name)."""
    if config.mode not in AGE_OUT_MODES:
        raise ValueError(f"age_out.mode {config.mode!r}: use one of {', '.join(AGE_OUT_MODES)}")


def age_out(txn: Transaction, config: AgeOutConfig, now: float | None = None, limit: int = 200) -> int:
    """Age out the steps due now (at most ``limit`` per run, oldest first); how many."""
    if config.days <= 0:
        return 0
    cutoff = time.strftime("%Y%m%d%H%M%S", time.localtime((now or time.time()) - config.days * 86400))
    steps = aging.due_steps(txn, cutoff, limit)
    by_order: dict[int, list[aging.DueStep]] = {}
    for step in steps:
        scheduled = f"{step.start_datetime[:4]}-{step.start_datetime[4:6]}-{step.start_datetime[6:8]}"
        if config.mode == DISCONTINUE:
            new_status = transition(StepStatus(step.status), StepEvent.DISCONTINUE)
            order_store.set_step_status(txn, step.id, new_status.value)
        else:
            aging.mark_aged_out(txn, step.id)
        order_store.add_history(txn, step.order_ref, "SPS aged out",
                                f"SPS {step.sps_id} aged out ({config.mode}): still SCHEDULED {config.days:g} day(s)"
                                f" after its scheduled start {scheduled}", None)
        log.info("SPS %s of accession %s aged out (%s): scheduled %s, never started", step.sps_id,
                 step.accession_number, config.mode, scheduled)
        by_order.setdefault(step.order_ref, []).append(step)
    for order_ref, aged in by_order.items():
        order_store.touch(txn, order_ref)
        for accession in sorted({step.accession_number for step in aged}):
            queues.record_event(txn, AGED_OUT, accession, f"{len(aged)} step(s) aged out ({config.mode})", order_ref)
    return len(steps)


def _cutoff(days: float) -> str:
    """The stamp ``days`` ago, in the form of the stored stamps (local time with its offset)."""
    return (datetime.now().astimezone() - timedelta(days=days)).isoformat()


class Retention:
    """The purge runs: per table, batches until none is left; one log line per table and run, and
    ``purged`` (table, count) for /metrics."""

    def __init__(self, config: Config, store: Store, purged: Callable[[str, int], None],
                 leading: Callable[[], bool] = lambda: True):
        self.config = config.retention
        self.window_days = config.hl7.duplicate_window_days
        self.store = store
        self.purged = purged
        self.leading = leading            # whether this instance still holds the leader lease (checked per batch)
        self.longest_batch = 0.0          # seconds of the longest batch transaction so far (the writer's wait)
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        c = self.config
        return any(days > 0 for days in (c.journal_days, c.outbox_days, c.history_days, c.audit_days))

    def start_run(self) -> None:
        """The periodic job: start a purge run on its own thread unless one is still running."""
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self.run, name="retention", daemon=True)
        self._thread.start()

    def batches(self) -> list[tuple[str, Callable[[Transaction], int]]]:
        """(table, one batch's store work) for each table with a retention age."""
        c, limit = self.config, max(1, self.config.batch_rows)
        work: list[tuple[str, Callable[[Transaction], int]]] = []
        if c.journal_days > 0:
            before, window = _cutoff(c.journal_days), _cutoff(self.window_days)
            work.append((retention.JOURNAL, lambda txn: retention.purge_journal(txn, before, window, limit)))
        if c.outbox_days > 0:
            before_outbox = _cutoff(c.outbox_days)
            work.append((retention.OUTBOX, lambda txn: retention.purge_outbox(txn, before_outbox, limit)))
        if c.history_days > 0:
            before_history = _cutoff(c.history_days)
            for table in (retention.ORDER_HISTORY, retention.PATIENT_HISTORY):
                work.append((table, lambda txn, table=table: retention.purge_history(txn, table, before_history,
                                                                                    limit)))
        if c.audit_days > 0:
            before_audit = _cutoff(c.audit_days)
            work.append((retention.OPERATOR_AUDIT, lambda txn: retention.purge_operator_audit(txn, before_audit,
                                                                                             limit)))
        return work

    def run(self) -> dict[str, int]:
        """One purge run over every table; the rows deleted per table."""
        counts: dict[str, int] = {}
        for table, batch in self.batches():
            total, started = 0, time.monotonic()
            try:
                while self.leading():
                    deleted = self.store.write(self._timed(batch))
                    total += deleted
                    if deleted < max(1, self.config.batch_rows):
                        break
            except Exception:  # noqa: BLE001 - the next run goes on where this one stopped
                log.exception("retention: purge of %s stopped after %d row(s)", table, total)
            counts[table] = total
            if total:
                self.purged(table, total)
            log.info("retention: %d row(s) of %s purged in %.2f s (longest batch so far %.1f ms)", total, table,
                         time.monotonic() - started, self.longest_batch * 1000)
        return counts

    def _timed(self, batch: Callable[[Transaction], int]) -> Callable[[Transaction], int]:
        def work(txn: Transaction) -> int:
            started = time.perf_counter()
            try:
                return batch(txn)
            finally:
                self.longest_batch = max(self.longest_batch, time.perf_counter() - started)
        return work
