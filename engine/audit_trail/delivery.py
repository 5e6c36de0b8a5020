"""Sends the audit queue to the Audit Record Repository, oldest first, from one thread.

TLS (RFC 5425, octet-counted frames) or UDP (RFC 5426, one message per datagram).  A message leaves the
queue once written to the connection; when the repository cannot be reached, the queue waits (durable,
in the store) and the thread retries with a growing pause, so messages arrive in order when it returns
and none is lost on restart.  syslog has no acknowledgement: before each write the connection is checked
for the repository having closed it, so a restarted repository does not swallow the next messages.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
import time
from datetime import datetime
from urllib.parse import urlsplit

from ..cluster import LeaseKeeper
from ..config import AuditConfig
from ..store import audit_queue
from ..store.audit_queue import QueuedAudit
from ..store.cluster import Lease, StaleLease
from ..store.database import Store
from .recorder import AuditTrail
from .syslog import octet_counted, syslog_message

log = logging.getLogger("swf.audit")
POLL_SECONDS = 0.5
BATCH = 100


class RepositoryAddressError(ValueError):
    """audit.repository is not tls://host:port or udp://host:port, or its TLS files cannot be read."""


def parse_repository(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("tls", "udp") or not parts.hostname:
        raise RepositoryAddressError(f"audit.repository {url!r}: use tls://host:6514 or udp://host:514")
    try:
        port = parts.port or (6514 if parts.scheme == "tls" else 514)
    except ValueError as exc:
        raise RepositoryAddressError(f"audit.repository {url!r}: {exc}") from None
    return parts.scheme, parts.hostname, port


def tls_context(config: AuditConfig) -> ssl.SSLContext:
    """TLS 1.2 at least; the repository's certificate checked against ``ca`` (and its host name)."""
    try:
        context = ssl.create_default_context(cafile=config.ca or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = config.verify_hostname
        if config.cert:
            context.load_cert_chain(config.cert, config.key or None)
    except (OSError, ssl.SSLError) as exc:
        raise RepositoryAddressError(f"audit: cannot load the TLS files (ca {config.ca!r}, cert {config.cert!r}):"
                                     f" {exc}") from None
    return context


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return time.time()


class AuditDelivery:
    def __init__(self, trail: AuditTrail, store: Store, config: AuditConfig, lease: LeaseKeeper):
        self.trail = trail
        self.store = store
        self.lease = lease   # one instance of the cluster sends the queue, in order
        self.config = config
        self.scheme, self.host, self.port = parse_repository(config.repository)
        self.context = tls_context(config) if self.scheme == "tls" else None
        self.depth = 0                       # messages waiting, as last read
        self.oldest_age = 0.0                # seconds the oldest has waited
        self.sent = 0
        self._connection: socket.socket | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, drain_seconds: float = 2.0) -> None:
        """Give the queue ``drain_seconds`` to empty (the Application Stop message among it), then end."""
        deadline = time.monotonic() + drain_seconds
        while self._thread is not None and not self._failing and time.monotonic() < deadline:
            try:
                if not self.store.read(audit_queue.depth)[0]:
                    break
            except Exception:  # noqa: BLE001 - the store is going: what waits is sent after the next start
                break
            self.wake()
            time.sleep(0.05)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    # -- the loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        pause = 0.5
        while not self._stopping.is_set():
            try:
                self.trail.flush_transfers()
                waiting = self.store.read(self._read_head)
            except Exception as exc:  # noqa: BLE001 - the store is busy or closing: try again shortly
                log.debug("audit queue not readable: %s", exc)
                self._stopping.wait(POLL_SECONDS)
                continue
            if not waiting:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            lease = self._held()
            if lease is None:
                continue
            try:
                self._send(waiting)
            except (OSError, ssl.SSLError) as exc:
                self._close()
                self._note_failure(waiting[0], exc, lease)
                self._pause(pause)
                pause = min(pause * 2, self.config.retry_max_seconds)
                continue
            pause = 0.5
            if self._failing:
                log.warning("audit repository %s:%d reached again; %d waiting message(s) being sent", self.host,
                            self.port, self.depth)
                self._failing = False
            seconds = self.lease.owner.lease_seconds
            try:
                self.lease.taken(self.store.write(lambda txn: audit_queue.sent(
                    txn, [item.id for item in waiting], lease, seconds)))
            except StaleLease as exc:
                self.lease.stale(lease, f"audit messages {waiting[0].id}..{waiting[-1].id}", exc)
                continue
            self.sent += len(waiting)

    def _held(self) -> Lease | None:
        """The audit queue's lease, taken when needed; None (after a pause) while another instance sends."""
        try:
            lease = self.lease.take_blocking(self.store)
        except Exception as exc:  # noqa: BLE001 - the store is busy or closing: try again shortly
            log.debug("audit queue lease not taken: %s", exc)
            lease = None
        if lease is None:
            self._stopping.wait(POLL_SECONDS)
        return lease

    def _pause(self, seconds: float) -> None:
        """Wait before the next attempt, the depth figures kept fresh meanwhile (for /metrics)."""
        resume = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < resume:
            self._stopping.wait(min(POLL_SECONDS, max(0.0, resume - time.monotonic())))
            try:
                self.store.read(self._read_depth)
            except Exception:  # noqa: BLE001 - the figures wait for the next read
                pass

    def _read_depth(self, txn: object) -> None:
        self.depth, first = audit_queue.depth(txn)
        self.oldest_age = max(0.0, time.time() - _epoch(first)) if first else 0.0
        if audit_queue.rows_waiting(txn):
            self.store.submit(lambda _txn: None)   # rows written by `swf` in another process: a commit audits them

    def _read_head(self, txn: object) -> list[QueuedAudit]:
        self._read_depth(txn)
        return audit_queue.oldest(txn, BATCH) if self.depth else []

    def _note_failure(self, head: QueuedAudit, exc: Exception, lease: Lease) -> None:
        if not self._failing:
            log.warning("audit repository %s:%d unreachable (%s); %d message(s) wait in the queue", self.host,
                        self.port, exc, self.depth)
            self._failing = True
        try:
            self.lease.taken(self.store.write(lambda txn: audit_queue.not_sent(
                txn, head.id, str(exc), lease, self.lease.owner.lease_seconds)))
        except Exception:  # noqa: BLE001 - counting the attempt is not worth a crash
            log.debug("audit attempt not counted", exc_info=True)

    # -- the wire ------------------------------------------------------------------------------------
    def _frames(self, waiting: list[QueuedAudit]) -> list[bytes]:
        proc_id = str(os.getpid())
        return [syslog_message(item.message, item.created_at, self.trail.hostname, self.config.app_name, proc_id)
                for item in waiting]

    def _send(self, waiting: list[QueuedAudit]) -> None:
        messages = self._frames(waiting)
        connection = self._connected()
        if self.scheme == "udp":
            for message in messages:
                connection.send(message)
            return
        connection.sendall(b"".join(octet_counted(message) for message in messages))

    def _connected(self) -> socket.socket:
        connection = self._connection
        if connection is not None and self.scheme == "tls" and self._closed_by_peer(connection):
            self._close()
            connection = None
        if connection is None:
            if self.scheme == "udp":
                connection = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
                connection.connect((self.host, self.port))
            else:
                plain = socket.create_connection((self.host, self.port), timeout=5)
                try:
                    connection = self.context.wrap_socket(plain, server_hostname=self.host)
                except BaseException:
                    plain.close()
                    raise
                log.info("audit repository %s:%d connected (%s)", self.host, self.port, connection.version())
            self._connection = connection
        return connection

    @staticmethod
    def _closed_by_peer(connection: socket.socket) -> bool:
        """The repository never writes: a readable connection has been closed (or reset) by it."""
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            if not readable:
                return False
            connection.settimeout(0.0)
            try:
                return connection.recv(1) == b""
            finally:
                connection.settimeout(5)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False    # TLS 1.3 session tickets and the like: nothing for us, still open
        except (OSError, ssl.SSLError, ValueError):
            return True

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except OSError:
                pass
