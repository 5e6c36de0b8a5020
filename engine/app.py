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
from .audit_trail.delivery import AuditDelivery
from .audit_trail.recorder import AuditTrail
from .cluster import Cluster
from .config import Config, TlsConfig
from .dicom.ae import DicomContext, DicomServer, build_server, start_server
from .dicom.directory import AEDirectory
from .dicom.open_listener import check_dicom_listeners
from .dicom.wire.direct_storage import serve_storage_directly
from .hl7.mllp import MLLPServerFactory
from .hl7.profiles import load_profiles
from .metrics import EngineMetrics, EngineState
from .security_events import SecurityEvents
from .outbound.delivery import Outbox
from .outbound.dispatch import EventDispatcher
from .rules.watcher import RulesHolder
from .security_events import SecurityEvent, SecurityEvents
from .store import audit_queue, queues
from .store.database import SQLITE, Store, refresh_planner_statistics
from .store.instance_lock import InstanceLock
from .tls import reloading as tls_reloading
from .tls.contexts import TlsSettingProblem
from .tls.files import TlsFileProblem
from .tls.listener import TlsServerFactory, tls_factory
from .tls.policy import check_listeners
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
from .workflow import housekeeping, images_without_mpps, study_stability

log = logging.getLogger("engine")


class ListenerUnavailable(RuntimeError):
    """A listener cannot open its address: most often another program (or engine) listens there."""

    def __init__(self, listener: str, host: str, port: int, error: OSError | None):
        if error is not None and error.errno == errno.EADDRINUSE:
            text = f"{listener} {host}:{port} is in use"
        else:
            text = f"{listener} {host}:{port} cannot listen: {error.strerror if error is not None else 'unknown'}"
        super().__init__(text)


class TlsUnavailable(RuntimeError):
    """A TLS listener's files or settings cannot serve (the message names the listener and the file)."""


def _listen_tcp(listener: str, host: str, port: int, factory: Any) -> IListeningPort:
    try:
        return reactor.listenTCP(port, factory, interface=host)
    except CannotListenError as exc:
        error = exc.socketError if isinstance(exc.socketError, OSError) else None
        raise ListenerUnavailable(listener, host, port, error) from exc


class Engine:
    """Everything one running engine holds; ``start`` opens the listeners on the reactor."""

    def __init__(self, config: Config):
        housekeeping.check_age_out(config.age_out)   # a wrong age_out.mode is refused before anything opens
        self.config = config
        self.security_events = SecurityEvents()   # adapters raise, the audit trail subscribes
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
        self.profiles = load_profiles(config.profiles_dir)
        self.rules = RulesHolder(config.routes_dir, set(self.profiles))
        self.store = Store(config.database)
        # One instance per SQLite file; several on PostgreSQL, each with its heartbeat and leases.
        self.instance_lock = InstanceLock(self.store.path) if self.store.dialect is SQLITE else None
        self.cluster = Cluster(config, self.store)
        # Planner statistics, refreshed at start and hourly, on the writer, between batches, by one instance.
        self.cluster.every("planner statistics", lambda: self.store.submit(refresh_planner_statistics), 3600.0)
        # Studies quiet for their quiet time get their stable point (availability notices), once per cluster.
        self.cluster.every("study stability", lambda: self.store.submit(
            lambda txn: study_stability.handle_due_studies(txn, stations=self.rules().stations)),
            config.studies.scan_seconds)
        # Steps of stations without MPPS whose images stayed quiet long enough are completed (routes/ stations:).
        self.cluster.every("images without MPPS", lambda: self.store.submit(images_without_mpps.complete_due_steps),
                           config.studies.scan_seconds)
        self.ingestor = Ingestor(config, self.profiles, self.rules)
        self.dispatcher = EventDispatcher(lambda: self.rules().destinations, self.profiles, self.ingestor.identity)
        self.store.before_commit.append(self.dispatcher)
        self.store.after_commit.append(self._wake_outbox)
        self.outbox = Outbox(self.store, self.cluster, self.security_events)
        # The ATNA audit trail (off without audit.repository): audits the rows each batch writes, in its
        # transaction, and every security event; its own thread sends the queue.
        self.audit = AuditTrail(config.audit, self.store, config.dicom.ae_title)
        self.audit_delivery: AuditDelivery | None = None
        if self.audit.enabled:
            self.audit_delivery = AuditDelivery(self.audit, self.store, config.audit,
                                                self.cluster.keeper(audit_queue.LEASE))
            self.store.before_commit.append(self.audit.audit_changes)
            self.security_events.subscribe(self.audit.security_event)
        self.directory = AEDirectory.from_config(config.dicom.aes, config.dicom.allow_any_ae)
        self.dicom: DicomServer | None = None
        self.mllp: MLLPServerFactory | None = None
        self.http: ConnectionCaps | None = None
        self.health = HealthSnapshot(self.store, config.http.health_max_age)
        self.metrics = EngineMetrics()
        self.metrics.watch(EngineState(self.health, self._live_metrics))
        # Worklist housekeeping (issue 16), once per cluster: steps never started age out, old rows are purged.
        if config.age_out.days > 0:
            self.cluster.every("worklist age-out", self._age_out, config.age_out.scan_seconds)
        self.retention = housekeeping.Retention(config, self.store, self.metrics.rows_purged, self.cluster.is_leader)
        if self.retention.enabled:
            self.cluster.every("retention", self.retention.start_run, config.retention.run_seconds)
        self.authorizer = Authorizer(self.store, config)   # the principal of each HTTP request
        self.ports: dict[str, IListeningPort] = {}
        self.tls: dict[str, TlsServerFactory] = {}   # the TLS listeners ("mllp-tls", "http"), their contexts reloaded
        self._tls_loop: task.LoopingCall | None = None
        self._reload_loop: task.LoopingCall | None = None
        self._dispatch_loop: task.LoopingCall | None = None

    def _age_out(self) -> None:
        """The age-out job: one bounded run on the writer; counted in /metrics once committed."""
        self.store.submit(lambda txn: housekeeping.age_out(txn, self.config.age_out)).add_done_callback(self._aged_out)

    def _aged_out(self, done: Any) -> None:
        if done.exception() is not None:
            log.error("worklist age-out failed (the next run tries again): %s", done.exception())
        elif done.result():
            self.metrics.steps_aged_out(self.config.age_out.mode, done.result())

    # -- the MLLP adapter's two entry points ----------------------------------------------------------
    def handle_message(self, raw: bytes, peer: str, presented: tuple[str, ...] = ()) -> defer.Deferred:
        """Parse, route and map here, on the reactor thread, while the writer thread is in SQLite (which
        releases the GIL); only journaling and applying go through the writer.  ``presented``: the names of
        the connection's client certificate, checked against ``mllp.senders``."""
        received = Received(raw, peer, presented=presented)
        started = time.perf_counter()
        try:
            prepared = self.ingestor.prepare(received)
        except Exception:  # noqa: BLE001 - an engine bug: the writer runs the whole path and answers it
            log.exception("message from %s could not be prepared", peer)
            applied = reactor_bridge.write(self.store, lambda txn: self.ingestor(txn, received))
        else:
            if prepared.sender_error is not None and prepared.message is not None:
                self.security_events.raise_event(SecurityEvent(
                    "msh-certificate-mismatch", peer, f"HL7 message {prepared.message.control_id or '(no MSH-10)'} "
                    f"answered AR: {prepared.sender_error.text}", ", ".join(presented)))
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
        if self.tls:
            figures["swf_tls_handshakes_refused"] = ("counter", "TLS handshakes refused (no, untrusted or expired "
                                                     "client certificate; protocol below the minimum)",
                                                     sum(f.refused_handshakes for f in self.tls.values()))
            figures["swf_tls_reloads"] = ("counter", "TLS certificate files re-read and put in force",
                                          sum(f.contexts.reloads for f in self.tls.values()))
            figures["swf_tls_reload_failures"] = ("counter", "TLS file changes refused (the previous files serve on)",
                                                  sum(f.contexts.refusals for f in self.tls.values()))
        if self.http is not None:
            figures["swf_http_connections_open"] = ("gauge", "Open HTTP connections", self.http.open_connections)
            figures["swf_http_connections_refused"] = ("counter", "HTTP connections refused (caps) or dropped "
                                                                  "(http.request_timeout)", self.http.refused)
        if dicom is not None:
            figures["swf_dicom_associations_open"] = ("gauge", "Open DICOM associations", dicom.open_associations())
        delivery = self.audit_delivery
        if delivery is not None:
            figures["swf_audit_queue_depth"] = ("gauge", "ATNA audit messages waiting for the repository", delivery.depth)
            figures["swf_audit_queue_oldest_age_seconds"] = ("gauge", "Age of the oldest waiting audit message",
                                                             delivery.oldest_age)
            figures["swf_audit_messages_sent"] = ("counter", "ATNA audit messages sent", delivery.sent)
        return figures

    def _explain(self, accession: str) -> Any:
        """The worklist attributes of the accession's first step and their origins (thread pool: it reads)."""
        return explain_step(self.store, accession, None, config=self.config, profiles=self.profiles,
                            rules=self.rules.current)

    def _readiness(self) -> dict[str, str | None]:
        """The /ready checks kept in memory: each listener open, a rules set in force (None = fine)."""
        checks: dict[str, str | None] = {
            "mllp": None if "mllp" in self.ports or "mllp-tls" in self.ports else "the MLLP listener is not open",
            "rules": None if self.rules.current is not None else "no rules loaded",
            "cluster": self.cluster.healthy(),
        }
        if self.config.dicom.port >= 0:
            checks["dicom"] = None if self.dicom is not None and self.dicom.server is not None else \
                "the DICOM listener is not open"
        return checks

    def _reload_rules(self) -> None:
        refusals = self.rules.refusals
        if self.rules.reload_if_changed():
            self.outbox.configure(self.rules.current.destinations)
            self.security_events.raise_event(SecurityEvent(
                "rules-reloaded", "", f"{len(self.rules.current.rules)} rules from {self.config.routes_dir} in force",
                self.config.routes_dir))
        elif self.rules.refusals != refusals:
            self.security_events.raise_event(SecurityEvent(
                "rules-refused", "", f"an edit of {self.config.routes_dir} was refused; the last good rules stay",
                self.config.routes_dir))

    def reload_tls(self) -> None:
        """SIGHUP: re-read every TLS listener's files now (a broken one is refused, the old one serves)."""
        for factory in self.tls.values():
            factory.contexts.reload()

    def _reload_tls_if_changed(self) -> None:
        for factory in self.tls.values():
            factory.contexts.reload_if_changed()

    def _open_tls(self, name: str, label: str, host: str, port: int, tls_config: TlsConfig, wrapped: Any) -> None:
        try:
            self.tls[name] = factory = tls_factory(label, tls_config, wrapped, self.security_events)
        except (TlsFileProblem, TlsSettingProblem) as exc:
            raise TlsUnavailable(f"{label} not started: {exc}") from exc
        self.ports[name] = _listen_tcp(label, host, port, factory)
        clients = ("client certificates required" if tls_config.require_client_cert else
                   "client certificates checked when presented" if tls_config.ca else "no client certificates")
        log.info("%s: TLS %s or later, %s; %s; files re-read when changed and on SIGHUP", label,
                 tls_config.min_version, factory.contexts.material.describe(), clients)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.instance_lock is not None:
            self.instance_lock.acquire()   # before anything serves: a second engine on the file is refused
        self.store.start()
        self.cluster.start(sole=self.instance_lock is not None)
        if self.audit_delivery is not None:
            self.audit.application(started=True)
            self.audit_delivery.start()
        plain = check_listeners(self.config)   # before any listener opens: fail closed
        if self.config.http.port >= 0:
            self.authorizer.load()
            refuse_open_listener(self.config, self.authorizer)   # before any listener opens
        for warning in plain:
            self.security_events.raise_event(SecurityEvent("plain-listener", "", warning))
        dicom = self.config.dicom
        if dicom.port >= 0 or dicom.tls_port > 0:
            for warning in check_dicom_listeners(dicom, [t for t, e in self.directory.entries.items() if e.certificate]):
                self.security_events.raise_event(SecurityEvent("plain-listener", "", warning))
            self.dicom = build_server(DicomContext(self.config, self.store, self.directory, self.metrics,
                                                   self.audit, self.security_events, self.cluster,
                                                   lambda: self.rules().stations))
            try:
                start_server(self.dicom, dicom.host, dicom.port)
            except OSError as exc:   # the plain listener opens first: when it did, the TLS one failed
                tls = dicom.tls_port > 0 and (self.dicom.server is not None or dicom.port < 0)
                raise ListenerUnavailable("DICOM TLS" if tls else "DICOM", dicom.host,
                                          dicom.tls_port if tls else dicom.port, exc) from exc
            if dicom.direct_storage:
                serve_storage_directly(self.dicom)
            access = ("any calling AE" if self.directory.allow_any else
                      f"{len(self.directory.entries)} known AE(s)" if self.directory.entries else
                      "no known AE: every association is refused (list AEs under dicom.aes or use --allow-any-ae)")
            ports = ", ".join(([f"{self.dicom.port}"] if self.dicom.server is not None else []) +
                              ([f"{self.dicom.tls_port} (TLS)"] if self.dicom.tls_server is not None else []))
            log.info("DICOM listener on %s:%s, AE %s: %s; %s", dicom.host, ports, dicom.ae_title,
                     ", ".join(service.name for service in self.dicom.services), access)
        mllp = self.config.mllp
        self.mllp = MLLPServerFactory(self.handle_message, self.handle_oversize, mllp,   # both ports: one set of caps
                                      self.security_events)
        if mllp.port >= 0:
            self.ports["mllp"] = _listen_tcp("MLLP", mllp.host, mllp.port, self.mllp)
            log.info("MLLP listener on %s:%d: HL7 v2 ADT (RAD-1/12) and ORM/OMI/OMG orders (RAD-2/4/13)",
                     mllp.host, self.ports["mllp"].getHost().port)
        if mllp.tls_port > 0:
            self._open_tls("mllp-tls", f"MLLP TLS listener {mllp.host}:{mllp.tls_port}", mllp.host, mllp.tls_port,
                           mllp.tls, self.mllp)
        http = self.config.http
        if http.port >= 0:
            self.health.load()
            root = Root()
            root.putChild(b"health", HealthPage(self.health, self._live_health))
            root.putChild(b"ready", ReadyPage(self.store, self._readiness))
            root.putChild(b"metrics", MetricsPage(self.metrics))
            root.putChild(b"auth", AuthPages(self.store, self.authorizer, http.session_hours,
                                             http.secure_cookies or http.tls.enabled, self.security_events))
            engine = EngineContext(self.config, self.ingestor, self.rules, self.profiles, self.ingestor.profile_of)
            root.putChild(b"api", build_api(self.store, self.authorizer, engine))
            console = Console(self.store, self.authorizer, self._explain, self._readiness,
                              RulesContext(self.store, self.config, self.profiles, self.rules), engine)
            root.putChild(b"", console)
            root.putChild(b"console", console)
            site = BoundedSite(root, http.max_body_bytes, http.idle_timeout, http.api_max_body_bytes)
            self.http = ConnectionCaps(site, http.max_connections, http.max_connections_per_peer, http.request_timeout,
                                       security_events=self.security_events)
            if http.tls.enabled:
                self._open_tls("http", f"HTTPS listener {http.host}:{http.port}", http.host, http.port, http.tls,
                               self.http)
            else:
                self.ports["http"] = _listen_tcp("HTTP", http.host, http.port, self.http)
            scheme = "https" if http.tls.enabled else "http"
            self.authorizer.start()
            access = (f"{len(self.authorizer.view.users)} user(s): sessions and API tokens" if self.authorizer.has_users
                      else "no users: every request is the local admin (loopback only; swf users add NAME --role R)")
            log.info("HTTP listener on %s:%d: the web console at %s://%s:%d/; GET /health, /ready, /metrics; login "
                     "POST /auth/login; the API under /api/v1 (its OpenAPI document: GET /api/v1/openapi.json); %s",
                     http.host, self.ports["http"].getHost().port, scheme, http.host or "localhost",
                     self.ports["http"].getHost().port, access)
        log.info("database %s; rules from %s (%d rules); profiles %s", self.config.database, self.config.routes_dir,
                 len(self.rules.current.rules), ", ".join(sorted(self.profiles)))
        self.outbox.configure(self.rules.current.destinations)
        self._dispatch_loop = task.LoopingCall(self._dispatch_recorded_events)
        self._dispatch_loop.start(1.0, now=True)
        if self.tls:
            self._tls_loop = task.LoopingCall(self._reload_tls_if_changed)
            self._tls_loop.start(tls_reloading.POLL_SECONDS, now=False)
        if self.config.rules_reload_seconds > 0:
            self._reload_loop = task.LoopingCall(self._reload_rules)
            self._reload_loop.start(self.config.rules_reload_seconds, now=False)

    def stop(self) -> defer.Deferred:
        if self._reload_loop is not None and self._reload_loop.running:
            self._reload_loop.stop()
        finishing = self.outbox.finish()   # deliveries in flight end and are recorded before the leases go
        self.authorizer.stop()
        for loop in (self._dispatch_loop, self._tls_loop):
            if loop is not None and loop.running:
                loop.stop()
        if self.dicom is not None:
            self.dicom.stop()
        if self.audit_delivery is not None:
            self.audit.flush_transfers(everything=True)
            self.audit.application(started=False)
            try:
                self.store.submit(lambda txn: None).result(5)   # after the messages above: they are queued
            except Exception:  # noqa: BLE001 - they stay for the next start if the store cannot take them now
                log.warning("audit messages of the stop not queued")
            self.audit_delivery.stop()
        stopping = [defer.maybeDeferred(port.stopListening) for port in self.ports.values()]
        return defer.DeferredList([finishing, *stopping]).addBoth(lambda _: self._close_store())

    def _close_store(self) -> None:
        self.cluster.stop()   # its leases released: another instance takes over at once
        self.store.close()
        if self.instance_lock is not None:
            self.instance_lock.release()
