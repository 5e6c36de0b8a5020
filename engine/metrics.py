"""What the engine counts for Prometheus (``GET /metrics``), with the ``prometheus-client`` library.

Two kinds of figures:
- events counted where they happen (HL7 messages by type and ACK code, ingest latency, MWL queries,
  C-STORE instances and bytes, MPPS by status, refused associations): ``EngineMetrics`` methods, called by
  the adapters from the reactor or DICOM threads (the library's metrics are thread-safe);
- state read at scrape time (journal rows by status, queue depth and oldest age per destination, dead
  letters, steps without a station, open connections, rules reloads): ``EngineState`` collects them from
  the health snapshot (read off the reactor thread, never at scrape) and the listeners' own counters.

Each engine has its own registry, so two engines in one process (the tests) do not share counters.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .web.health import HealthSnapshot

# Receipt-to-ACK and MWL latencies are milliseconds normally; the top buckets catch a stalled disk.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EngineMetrics:
    """The engine's counters and histograms, and the text a scrape returns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.hl7_messages = Counter("swf_hl7_messages", "HL7 messages answered, by message type and ACK code",
                                    ["message_type", "ack_code"], registry=registry)
        self.hl7_ingest_seconds = Histogram("swf_hl7_ingest_seconds", "Receipt of an HL7 message to its ACK",
                                            buckets=LATENCY_BUCKETS, registry=registry)
        self.mwl_queries = Counter("swf_mwl_queries", "Modality Worklist C-FIND requests, by outcome",
                                   ["outcome"], registry=registry)
        self.mwl_query_seconds = Histogram("swf_mwl_query_seconds", "Modality Worklist C-FIND request to last response",
                                           buckets=LATENCY_BUCKETS, registry=registry)
        self.associations = Counter("swf_dicom_associations", "DICOM associations accepted, by service negotiated",
                                    ["service"], registry=registry)
        self.associations_refused = Counter("swf_dicom_associations_refused",
                                            "DICOM connections or associations refused, by reason",
                                            ["reason"], registry=registry)
        self.stored_instances = Counter("swf_dicom_stored_instances",
                                        "C-STORE requests answered: accepted (stored, or a duplicate kept) or refused",
                                        ["outcome"], registry=registry)
        self.stored_bytes = Counter("swf_dicom_stored_bytes", "Bytes of the instances stored", registry=registry)
        self.mpps = Counter("swf_mpps", "MPPS N-CREATE / N-SET accepted, by the status they set",
                            ["status"], registry=registry)
        self.purged_rows = Counter("swf_retention_purged_rows", "Rows deleted by retention, by table",
                                   ["table"], registry=registry)
        self.aged_out_steps = Counter("swf_aged_out_steps", "Scheduled steps aged out of the worklist, by mode",
                                      ["mode"], registry=registry)

    def hl7_answered(self, message_type: str, ack_code: str, seconds: float) -> None:
        self.hl7_messages.labels(message_type or "unreadable", ack_code or "none").inc()
        self.hl7_ingest_seconds.observe(seconds)

    def mwl_answered(self, outcome: str, seconds: float) -> None:
        self.mwl_queries.labels(outcome).inc()
        self.mwl_query_seconds.observe(seconds)

    def association_accepted(self, services: Iterable[str]) -> None:
        for service in set(services):
            self.associations.labels(service).inc()

    def association_refused(self, reason: str) -> None:
        self.associations_refused.labels(reason).inc()

    def mpps_accepted(self, status: str) -> None:
        self.mpps.labels(status).inc()

    def instance_stored(self, outcome: str, size: int) -> None:
        self.stored_instances.labels(outcome).inc()
        if outcome == "accepted":
            self.stored_bytes.inc(size)

    def rows_purged(self, table: str, count: int) -> None:
        self.purged_rows.labels(table).inc(count)

    def steps_aged_out(self, mode: str, count: int) -> None:
        self.aged_out_steps.labels(mode).inc(count)

    def watch(self, state: "EngineState") -> None:
        self.registry.register(state)

    def scrape(self) -> bytes:
        """The Prometheus text exposition of every figure."""
        return generate_latest(self.registry)


class EngineState(Collector):
    """Gauges read at scrape time from the health snapshot and the listeners' in-memory counters."""

    def __init__(self, snapshot: "HealthSnapshot", live: Callable[[], dict[str, tuple[str, str, float]]],
                 clock: Callable[[], float] = time.time):
        self.snapshot = snapshot
        self.live = live          # name -> value: rules reloads, open MLLP connections ... (see app.py)
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        figures = self.snapshot.current()
        journal = GaugeMetricFamily("swf_journal_messages", "Journal rows by status", labels=["status"])
        for status, count in sorted(figures.journal.items()):
            journal.add_metric([status], count)
        yield journal
        yield GaugeMetricFamily("swf_steps_without_station", "Scheduled steps no station AE is offered",
                                value=figures.steps_without_station)
        depth = GaugeMetricFamily("swf_queue_depth", "Work waiting (pending) or given up on (dead), per queue"
                                  " and destination", labels=["queue", "destination", "status"])
        oldest = GaugeMetricFamily("swf_queue_oldest_age_seconds", "Age of the oldest pending or dead item",
                                   labels=["queue", "destination", "status"])
        now = self.clock()
        for figure in figures.queues:
            labels = [figure.queue, figure.destination, figure.status]
            depth.add_metric(labels, figure.count)
            oldest.add_metric(labels, max(0.0, now - _epoch(figure.oldest_at)))
        yield depth
        yield oldest
        yield GaugeMetricFamily("swf_snapshot_age_seconds", "Age of the database figures above",
                                value=self.snapshot.age)
        for name, (kind, help_text, value) in self.live().items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=value)


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return 0.0
