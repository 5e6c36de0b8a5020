"""Assembles and runs the engine: store, profiles, rules (with hot reload), the MLLP and DICOM listeners, and
the HTTP site (/health, /ready, /metrics, /auth, the /api/v1 API)."""
from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort

from . import reactor_bridge
from .config import Config
from .dicom.ae import DicomContext, DicomServer, build_server, start_server
from .dicom.directory import AEDirectory
from .dicom.wire.direct_storage import serve_storage_directly
from .hl7.mllp import MLLPServerFactory
from .hl7.profiles import load_profiles
from .metrics import EngineMetrics, EngineState
from .security_events import SecurityEvents
from .outbound.delivery import Outbox
from .outbound.dispatch import EventDispatcher
from .rules.watcher import RulesHolder
from .store import queues
from .store.database import Store, refresh_planner_statistics
from .web.api import build_api
from .web.api.context import EngineContext
from .web.auth import Authorizer, refuse_open_listener
from .web.console import Console
from .web.console.rules import RulesContext
from .web.health import HealthPage, HealthSnapshot
from .web.login import AuthPages
from .web.metrics import MetricsPage
from .web.ready import ReadyPage
from .web.root import Root
from .web.site import BoundedSite, ConnectionCaps
from .workflow.explain import explain_step
from .workflow.ingest import IngestResult, Ingestor, Received

log = logging.getLogger("engine")


class ListenerUnavailable(RuntimeError):
    """A listener cannot open its address: most often another program (or engine) listens there."""

    def __init__(self, listener: str, host: str, port: int, error: OSError | None):
        if error is not None and error.errno == errno.EADDRINUSE:
            text = f"{listener} {host}:{port} is in use"
        else:
            text = f"{listener} {host}:{port} cannot listen: {error.strerror if error is not None else 'unknown'}"
        super().__init__(text)


def _listen_tcp(listener: str, host: str, port: int, factory: Any) -> IListeningPort:
    try:
        return reactor.listenTCP(port, factory, interface=host)
    except CannotListenError as exc:
        error = exc.socketError if isinstance(exc.socketError, OSError) else None
        raise ListenerUnavailable(listener, host, port, error) from exc


class Engine:
    """Everything one running engine holds; ``start`` opens the listeners on the reactor."""

    def __init__(self, config: Config):
        self.config = config
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
        self.profiles = load_profiles(config.profiles_dir)
        self.rules = RulesHolder(config.routes_dir, set(self.profiles))
        self.store = Store(config.database)
        self.ingestor = Ingestor(config, self.profiles, self.rules)
        self.dispatcher = EventDispatcher(lambda: self.rules().destinations, self.profiles, self.ingestor.identity)
        self.store.before_commit.append(self.dispatcher)
        self.store.after_commit.append(self._wake_outbox)
        self.outbox = Outbox(self.store)
        self.directory = AEDirectory.from_config(config.dicom.aes, config.dicom.allow_any_ae)
        self.dicom: DicomServer | None = None
        self.mllp: MLLPServerFactory | None = None
        self.http: ConnectionCaps | None = None
        self.health = HealthSnapshot(self.store, config.http.health_max_age)
        self.metrics = EngineMetrics()
        self.security_events = SecurityEvents()   # the adapters raise on it, the audit trail subscribes
        self.metrics.watch(EngineState(self.health, self._live_metrics))
        self.authorizer = Authorizer(self.store, config)   # the principal of each HTTP request
        self.ports: dict[str, IListeningPort] = {}
        self._reload_loop: task.LoopingCall | None = None
        self._dispatch_loop: task.LoopingCall | None = None
        self._analyze_loop: task.LoopingCall | None = None

    # -- the MLLP adapter's two entry points ----------------------------------------------------------
    def handle_message(self, raw: bytes, peer: str) -> defer.Deferred:
        """Parse, route and map here, on the reactor thread, while the writer thread is in SQLite (which
        releases the GIL); only journaling and applying go through the writer."""
        received = Received(raw, peer)
        started = time.perf_counter()
        try:
            prepared = self.ingestor.prepare(received)
        except Exception:  # noqa: BLE001 - an engine bug: the writer runs the whole path and answers it
            log.exception("message from %s could not be prepared", peer)
            applied = reactor_bridge.write(self.store, lambda txn: self.ingestor(txn, received))
        else:
            applied = reactor_bridge.write(self.store, lambda txn: self.ingestor.apply(txn, prepared))
        return applied.addCallback(self._answered, started)

    def _answered(self, result: IngestResult, started: float) -> bytes | None:
        self.metrics.hl7_answered(result.message_code, result.ack_code, time.perf_counter() - started)
        return result.ack

    def handle_oversize(self, head: bytes, peer: str) -> defer.Deferred:
        received = Received(head, peer)
        limit = self.config.mllp.max_message_bytes
        return reactor_bridge.write(self.store, lambda txn: self.ingestor.oversized(txn, received, limit)).addCallback(
            self._answered, time.perf_counter())

    def _wake_outbox(self) -> None:
        """After a commit that queued outbound messages: deliver now rather than at the next poll."""
        if self.dispatcher.queued:
            self.dispatcher.queued = False
            reactor.callFromThread(self.outbox.wake)

    def _dispatch_recorded_events(self) -> None:
        """Events recorded by other processes (``swf cancel``) are dispatched by the engine's next commit."""
        reactor_bridge.read(self.store, queues.undispatched_event_waiting).addCallback(
            lambda found: self.store.submit(lambda txn: None) if found else None).addErrback(
            lambda failure: log.warning("event dispatch check failed: %s", failure.getErrorMessage()))

    def _live_health(self) -> dict[str, Any]:
        """The /health figures kept in memory: rules state and the MLLP listener's counters."""
        mllp = self.mllp
        return {
            "rules": len(self.rules.current.rules),
            "rules_problems": [str(p) for p in self.rules.last_problems],
            "mllp": {"connections": mllp.connections, "refused": mllp.refused,
                     "buffered_bytes": mllp.buffered_bytes, "unanswered_bytes": mllp.unanswered_bytes}
            if mllp is not None else {},
        }

    def _live_metrics(self) -> dict[str, tuple[str, str, float]]:
        """/metrics figures kept in memory: name -> (kind, help, value)."""
        mllp = self.mllp
        dicom = self.dicom
        figures = {
            "swf_rules_loaded": ("gauge", "Rules in force", len(self.rules.current.rules)),
            "swf_rules_reloads": ("counter", "Rules reloads put in force", self.rules.reloads),
            "swf_rules_reload_failures": ("counter", "Rules edits refused (the last good rules stayed)",
                                          self.rules.refusals),
        }
        if mllp is not None:
            figures["swf_mllp_connections_open"] = ("gauge", "Open MLLP connections", mllp.connections)
            figures["swf_mllp_connections_refused"] = ("counter", "MLLP connections refused (caps)", mllp.refused)
        if self.http is not None:
            figures["swf_http_connections_open"] = ("gauge", "Open HTTP connections", self.http.open_connections)
            figures["swf_http_connections_refused"] = ("counter", "HTTP connections refused (caps) or dropped "
                                                                  "(http.request_timeout)", self.http.refused)
        if dicom is not None:
            figures["swf_dicom_associations_open"] = ("gauge", "Open DICOM associations", dicom.open_associations())
        return figures

    def _explain(self, accession: str) -> Any:
        """The worklist attributes of the accession's first step and their origins (thread pool: it reads)."""
        return explain_step(self.store, accession, None, config=self.config, profiles=self.profiles,
                            rules=self.rules.current)

    def _readiness(self) -> dict[str, str | None]:
        """The /ready checks kept in memory: each listener open, a rules set in force (None = fine)."""
        checks: dict[str, str | None] = {
            "mllp": None if "mllp" in self.ports else "the MLLP listener is not open",
            "rules": None if self.rules.current is not None else "no rules loaded",
        }
        if self.config.dicom.port >= 0:
            checks["dicom"] = None if self.dicom is not None and self.dicom.server is not None else \
                "the DICOM listener is not open"
        return checks

    def _reload_rules(self) -> None:
        if self.rules.reload_if_changed():
            self.outbox.configure(self.rules.current.destinations)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.store.start()
        if self.config.http.port >= 0:
            self.authorizer.load()
            refuse_open_listener(self.config, self.authorizer)   # before any listener opens
        dicom = self.config.dicom
        if dicom.port >= 0:
            self.dicom = build_server(DicomContext(self.config, self.store, self.directory, self.metrics,
                                                   self.security_events))
            try:
                start_server(self.dicom, dicom.host, dicom.port)
            except OSError as exc:
                raise ListenerUnavailable("DICOM", dicom.host, dicom.port, exc) from exc
            if dicom.direct_storage:
                serve_storage_directly(self.dicom)
            access = ("any calling AE" if self.directory.allow_any else
                      f"{len(self.directory.entries)} known AE(s)" if self.directory.entries else
                      "no known AE: every association is refused (list AEs under dicom.aes or use --allow-any-ae)")
            log.info("DICOM listener on %s:%d, AE %s: %s; %s", dicom.host, self.dicom.port, dicom.ae_title,
                     ", ".join(service.name for service in self.dicom.services), access)
        mllp = self.config.mllp
        self.mllp = MLLPServerFactory(self.handle_message, self.handle_oversize, mllp)
        self.ports["mllp"] = _listen_tcp("MLLP", mllp.host, mllp.port, self.mllp)
        log.info("MLLP listener on %s:%d: HL7 v2 ADT (RAD-1/12) and ORM/OMI/OMG orders (RAD-2/4/13)",
                 mllp.host, self.ports["mllp"].getHost().port)
        http = self.config.http
        if http.port >= 0:
            self.health.load()
            root = Root()
            root.putChild(b"health", HealthPage(self.health, self._live_health))
            root.putChild(b"ready", ReadyPage(self.store, self._readiness))
            root.putChild(b"metrics", MetricsPage(self.metrics))
            root.putChild(b"auth", AuthPages(self.store, self.authorizer, http.session_hours, http.secure_cookies))
            root.putChild(b"api", build_api(self.store, self.authorizer, EngineContext(
                self.config, self.ingestor, self.rules, self.profiles)))
            console = Console(self.store, self.authorizer, self._explain, self._readiness,
                              RulesContext(self.store, self.config, self.profiles, self.rules))
            root.putChild(b"", console)
            root.putChild(b"console", console)
            site = BoundedSite(root, http.max_body_bytes, http.idle_timeout, http.api_max_body_bytes)
            self.http = ConnectionCaps(site, http.max_connections, http.max_connections_per_peer, http.request_timeout)
            self.ports["http"] = _listen_tcp("HTTP", http.host, http.port, self.http)
            self.authorizer.start()
            access = (f"{len(self.authorizer.view.users)} user(s): sessions and API tokens" if self.authorizer.has_users
                      else "no users: every request is the local admin (loopback only; swf users add NAME --role R)")
            log.info("HTTP listener on %s:%d: the web console at http://%s:%d/; GET /health, /ready, /metrics; login "
                     "POST /auth/login; the API under /api/v1 (its OpenAPI document: GET /api/v1/openapi.json); %s",
                     http.host, self.ports["http"].getHost().port, http.host or "localhost",
                     self.ports["http"].getHost().port, access)
        log.info("database %s; rules from %s (%d rules); profiles %s", self.config.database, self.config.routes_dir,
                 len(self.rules.current.rules), ", ".join(sorted(self.profiles)))
        self.outbox.configure(self.rules.current.destinations)
        self._dispatch_loop = task.LoopingCall(self._dispatch_recorded_events)
        self._dispatch_loop.start(1.0, now=True)
        # Planner statistics, refreshed at start and hourly, on the writer, between batches.
        self._analyze_loop = task.LoopingCall(lambda: self.store.submit(refresh_planner_statistics))
        self._analyze_loop.start(3600.0, now=True)
        if self.config.rules_reload_seconds > 0:
            self._reload_loop = task.LoopingCall(self._reload_rules)
            self._reload_loop.start(self.config.rules_reload_seconds, now=False)

    def stop(self) -> defer.Deferred:
        if self._reload_loop is not None and self._reload_loop.running:
            self._reload_loop.stop()
        self.outbox.stop()
        self.authorizer.stop()
        for loop in (self._dispatch_loop, self._analyze_loop):
            if loop is not None and loop.running:
                loop.stop()
        if self.dicom is not None:
            self.dicom.stop()
        stopping = [defer.maybeDeferred(port.stopListening) for port in self.ports.values()]
        return defer.DeferredList(stopping).addBoth(lambda _: self.store.close())
