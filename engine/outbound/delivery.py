"""Delivering the outbox over MLLP (SWF.md 8.6): per destination in order, one message in flight.

AA/CA marks a message delivered.  AE/CE is retried ``max_ae_retries`` times, then the message is parked
as dead.  AR/CR, an ACK timeout and connection trouble are retried with exponential backoff (and a new
connection) until ``give_up_hours`` have passed since the message was queued, then it is parked as dead
(the destination's ``RetryPolicy``, engine/domain/retry.py, shared with the DICOM queues).
An ACK whose MSA-2 is not the message's control ID is logged and ignored.
A destination with ``tls:`` is reached over TLS (engine/tls/contexts.py: its certificate checked against
``ca`` and, unless ``verify_hostname: false``, against the host dialled); a refused server certificate
is retried like connection trouble and raised as a security event.
With several engines on one database, one instance at a time delivers a destination (the holder of its
lease, engine/cluster.py), so its order holds across instances; a completion the lease no longer covers
is refused by the store and logged, and the message is left to the lease's new holder.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.python.failure import Failure
from zope.interface import implementer

from .. import reactor_bridge
from ..cluster import Cluster, LeaseKeeper
from ..hl7.message import HL7ParseError, Message, decode_bytes
from ..hl7.mllp import MLLPDecoder, frame
from ..store import queues
from ..store.database import Store
from ..store.cluster import Lease, StaleLease
from ..store.queues import OutboxMessage
from ..security_events import SecurityEvent, SecurityEvents
from ..store.timestamps import now_iso
from ..tls.contexts import TlsSettingProblem, client_creator
from ..tls.files import TlsFileProblem
from ..tls.reloading import ReloadingTls
from .destinations import Destination

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
FINISH_SECONDS = 5.0   # at the engine's stop, how long a delivery in flight may take to end (ACK, then recorded)


@implementer(IHandshakeListener)
class MLLPClientProtocol(protocol.Protocol):
    """Sends one frame at a time and fires the waiting Deferred with the ACK that names its control ID."""

    def __init__(self) -> None:
        self.decoder = MLLPDecoder(1024 * 1024, self._frame, lambda head: None, self._junk)
        self.waiting: tuple[str, defer.Deferred] | None = None
        self.connected_ok = False
        self.handshake_done = False
        self.tls_refusal = ""   # why the TLS handshake failed (the server's certificate, most often)

    def connectionMade(self) -> None:
        self.connected_ok = True
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        self.decoder.feed(data)

    def handshakeCompleted(self) -> None:
        self.handshake_done = True

    def connectionLost(self, reason: Any = None) -> None:
        self.connected_ok = False
        why = ""
        if isinstance(reason, Failure) and not self.handshake_done and reason.check(SSL.Error, VerificationError):
            self.tls_refusal = why = f"TLS handshake failed: {_tls_failure(reason)}"
        if self.waiting is not None:
            _, waiting = self.waiting
            self.waiting = None
            waiting.errback(ConnectionError(why or "connection lost while waiting for the ACK"))

    def send(self, message: bytes, control_id: str) -> defer.Deferred:
        waiting: defer.Deferred = defer.Deferred()
        self.waiting = (control_id, waiting)
        self.transport.write(frame(message))
        return waiting

    def _frame(self, data: bytes) -> None:
        try:
            text, codec = decode_bytes(data)
            ack = Message(text, codec)
        except HL7ParseError:
            log.warning("unreadable answer from the receiver ignored: %r", data[:64])
            return
        if self.waiting is None or ack.get("MSA-2") != self.waiting[0]:
            log.warning("ACK for %r ignored: waiting for %r", ack.get("MSA-2"), self.waiting[0] if self.waiting else None)
            return
        _, waiting = self.waiting
        self.waiting = None
        waiting.callback((ack.get("MSA-1").upper(), ack.get("ERR-8") or ack.get("MSA-3"), data))

    def _junk(self, data: bytes) -> None:
        log.warning("receiver sent %d bytes outside a frame", len(data))


def _tls_failure(reason: Failure) -> str:
    if reason.check(VerificationError):
        return "the server's certificate does not name the host dialled (tls.verify_hostname)"
    return reason.getErrorMessage()


def _created_epoch(created_at: str) -> float:
    try:
        return datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return time.time()


class DestinationQueue:
    """The delivery loop of one destination."""

    def __init__(self, destination: Destination, store: Store, lease: LeaseKeeper,
                 events: SecurityEvents | None = None):
        self.destination = destination
        self.store = store
        self.lease = lease
        self.events = events
        self._tls: ReloadingTls[Any] | None = None   # built at the first connection, re-read when the files change
        self.client: MLLPClientProtocol | None = None
        self.running = False
        self.busy = False
        self._timer: Any = None
        self._finished: defer.Deferred | None = None   # fired when the cycle in flight at ``finish`` ends

    def start(self) -> None:
        self.running = True
        self.wake()

    def stop(self) -> None:
        """Stop at once, cutting a delivery in flight (the destination changed: the message is retried)."""
        self.running = False
        self._cancel_timer()
        self._disconnect()

    def finish(self) -> defer.Deferred:
        """Stop after the attempt in flight: its ACK is awaited (``FINISH_SECONDS`` at most, ``Outbox.finish``)
        and its outcome recorded, so that at a graceful stop a message the receiver has taken is neither cut
        off nor sent again by the instance that takes the destination's lease over."""
        self.running = False
        self._cancel_timer()
        if not self.busy:
            self._disconnect()
            return defer.succeed(None)
        if self._finished is None:
            self._finished = defer.Deferred()
            self._finished.addBoth(lambda _: self._disconnect())
        return self._finished

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def _disconnect(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.loseConnection()

    def wake(self) -> None:
        if self.running and not self.busy:
            self.busy = True
            self._cycle().addBoth(self._done)

    def _done(self, result: Any) -> None:
        self.busy = False
        if isinstance(result, Failure):
            log.error("outbox %s: delivery loop error: %s", self.destination.name, result.getErrorMessage())
        if self._finished is not None:
            finished, self._finished = self._finished, None
            finished.callback(None)
        if self.running:
            delay = result if isinstance(result, (int, float)) else POLL_SECONDS
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = reactor.callLater(max(delay, 0.0), self.wake)

    @defer.inlineCallbacks
    def _cycle(self) -> Any:
        """Deliver pending messages until none is due; returns the seconds until the next check."""
        while self.running:
            head = yield reactor_bridge.read(self.store, lambda txn: queues.claim_outbox(txn, self.destination.name))
            if head is None:
                return POLL_SECONDS
            wait = head.next_attempt_at - time.time()
            if wait > 0:
                return min(wait, POLL_SECONDS * 5)
            lease = self.lease.fresh()
            if lease is None:   # taken or renewed once per third of a lease, not per message
                lease = self.lease.taken((yield reactor_bridge.write(self.store, self.lease.take)))
                if lease is None:
                    return POLL_SECONDS   # another instance delivers this destination
                continue   # the head again: the previous holder may have delivered it meanwhile
            yield self._attempt(head, lease)
        return POLL_SECONDS

    @defer.inlineCallbacks
    def _connect(self) -> Any:
        if self.client is not None and self.client.connected_ok:
            return self.client
        destination = self.destination
        endpoint: Any = TCP4ClientEndpoint(reactor, destination.host, destination.port, timeout=10)
        if destination.tls is not None:
            if self._tls is None:
                tls = destination.tls
                self._tls = ReloadingTls(f"destination {destination.name}", tls,
                                         lambda material: client_creator(tls, material, destination.host))
            else:
                self._tls.reload_if_changed()
            endpoint = wrapClientTLS(self._tls.current, endpoint)
        self.client = yield connectProtocol(endpoint, MLLPClientProtocol())
        log.info("outbox %s: connected to %s", self.destination.name, self.destination.address)
        return self.client

    @defer.inlineCallbacks
    def _attempt(self, head: OutboxMessage, lease: Lease) -> Any:
        destination = self.destination
        try:
            client = yield self._connect()
            sending = client.send(head.message, head.control_id)
            sending.addTimeout(destination.ack_timeout, reactor)
            code, text, ack = yield sending
        except (defer.TimeoutError, ConnectionError, error.ConnectError, error.ConnectionLost, OSError,
                TlsFileProblem, TlsSettingProblem) as exc:
            reason = "no ACK within %.0f s" % destination.ack_timeout if isinstance(exc, defer.TimeoutError) else str(exc)
            if self.client is not None and self.client.tls_refusal and self.events is not None:
                self.events.raise_event(SecurityEvent("certificate-refused", destination.address,
                                                      f"outbox {destination.name}: {self.client.tls_refusal}"))
            if self.client is not None and self.client.transport is not None:
                self.client.transport.loseConnection()
            self.client = None
            yield self._retry(head, lease, reason, rejected=False)
            return
        if code in ("AA", "CA"):
            seconds = self.lease.owner.lease_seconds
            done = yield self._complete(head, lease, lambda txn: queues.outbox_delivered(
                txn, head, ack, now_iso(), lease, seconds))
            if done:
                log.info("outbox %s: %s %s for accession %s delivered (%s)", destination.name, head.kind,
                         head.control_id, head.accession_number, code)
            return
        yield self._retry(head, lease, f"{code}: {text}", rejected=code in ("AE", "CE"), ack=ack)

    @defer.inlineCallbacks
    def _complete(self, head: OutboxMessage, lease: Lease, work: Any) -> Any:
        """Record how an attempt ended; False when the lease was taken over meanwhile (refused, logged)."""
        try:
            self.lease.taken((yield reactor_bridge.write(self.store, work)))
        except StaleLease as exc:
            self.lease.stale(lease, f"outbox {self.destination.name}: {head.kind} {head.control_id} for accession "
                             f"{head.accession_number}", exc)
            return False
        return True

    def _retry(self, head: OutboxMessage, lease: Lease, reason: str, rejected: bool,
               ack: bytes | None = None) -> defer.Deferred:
        destination = self.destination
        attempts = head.attempts + 1
        rejections = head.rejections + (1 if rejected else 0)
        policy = destination.retry_policy
        now = time.time()
        wait = policy.retry_in(attempts, now - _created_epoch(head.created_at))
        dead = (rejected and rejections > destination.max_ae_retries) or wait is None
        next_attempt = now + (policy.delay(attempts) if wait is None else wait)
        if dead:
            log.error("outbox %s: %s %s for accession %s parked as dead after %d attempt(s): %s", destination.name,
                      head.kind, head.control_id, head.accession_number, attempts, reason)
        else:
            log.warning("outbox %s: %s %s not delivered (%s); retry in %.0f s", destination.name, head.kind,
                        head.control_id, reason, next_attempt - now)
        seconds = self.lease.owner.lease_seconds
        return self._complete(head, lease, lambda txn: queues.outbox_failed(
            txn, head, attempts=attempts, rejections=rejections, dead=dead, next_attempt_at=next_attempt,
            reason=reason, ack=ack, lease=lease, lease_seconds=seconds))


class Outbox:
    """All destination queues of the engine; rebuilt when the rules (and so the destinations) change."""

    def __init__(self, store: Store, cluster: Cluster, events: SecurityEvents | None = None):
        self.store = store
        self.cluster = cluster
        self.events = events
        self.queues: dict[str, DestinationQueue] = {}
        self._reported_off: set[str] = set()

    def configure(self, destinations: dict[str, Destination]) -> None:
        for name, queue in list(self.queues.items()):
            if destinations.get(name) != queue.destination:
                queue.stop()
                del self.queues[name]
        for name, destination in destinations.items():
            if not destination.enabled:
                if name not in self._reported_off:
                    self._reported_off.add(name)
                    log.warning("destination %s is off: %s", name, destination.off_reason)
                continue
            if name not in self.queues:
                self.queues[name] = DestinationQueue(destination, self.store,
                                                     self.cluster.keeper(queues.outbox_lease(name)), self.events)
                self.queues[name].start()
                log.info("destination %s: delivering %s messages to %s%s", name, destination.sends, destination.address,
                         " over TLS" if destination.tls is not None else "")

    def wake(self) -> None:
        for queue in self.queues.values():
            queue.wake()

    def finish(self) -> defer.Deferred:
        """At the engine's stop: every queue stops after its attempt in flight (``DestinationQueue.finish``),
        before the instance releases its leases."""
        finishing = defer.DeferredList([queue.finish() for queue in self.queues.values()], consumeErrors=True)
        limit = reactor.callLater(FINISH_SECONDS, self._cut)
        return finishing.addBoth(lambda _: limit.cancel() if limit.active() else None)

    def _cut(self) -> None:
        """A delivery still in flight ``FINISH_SECONDS`` after the stop (a receiver slow to ACK): cut off; the
        message stays pending for the next holder of the lease (the receiver may get it twice, same MSH-10)."""
        unfinished = [name for name, queue in self.queues.items() if queue.busy]
        log.warning("outbox: deliveries in flight to %s not ended within %.0f s of the stop: cut off, retried by"
                    " the next holder of the lease", ", ".join(unfinished) or "none", FINISH_SECONDS)
        for queue in self.queues.values():
            queue.stop()
