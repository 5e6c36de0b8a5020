"""This engine as one instance of several on one PostgreSQL database (issue 15).

``Cluster`` holds the instance's name, keeps its heartbeat row and the leader lease (the once-per-cluster
jobs: commitment evaluation, planner statistics) fresh from the store's writer thread, never the reactor,
and hands out a ``LeaseKeeper`` per queue destination.  What runs where:

- per cluster, under the leader lease: storage commitment evaluation, ``ANALYZE`` (planner statistics);
- per destination, under its lease (one deliverer at a time, so its order holds): the outbox, the DICOM
  forwards, the commitment reports per requesting AE, the ATNA audit queue; their retries are part of it;
- per instance: the listeners, the dispatch of events recorded by other processes (``FOR UPDATE SKIP
  LOCKED`` on the events, engine/store/queues.py), rules and TLS file reloads, the HTTP user view.

On SQLite there is one instance (engine/store/instance_lock.py refuses a second) and it holds every lease.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from .config import Config
from .store import cluster
from .store.cluster import Lease
from .store.database import Store, Transaction
from .store.timestamps import now_iso

log = logging.getLogger(__name__)


def default_instance_name(config: Config) -> str:
    """Host name + ":" + the MLLP port (the HL7 port tells two instances on one host apart)."""
    return f"{socket.gethostname()}:{config.mllp.port}"


def heartbeat_period(heartbeat_seconds: float, lease_seconds: float) -> float:
    """How often an instance writes its heartbeat: at least three times per lease, so one late beat does not
    let its leader lease run out."""
    return min(heartbeat_seconds, lease_seconds / 3)


def liveness(heartbeat_age: float, heartbeat_seconds: float, lease_seconds: float) -> str:
    """How an instance looks from the age of its last heartbeat (the cluster's instances share these
    settings): "alive"; "stale" once it missed two beats (stopped or stuck: its leases are still its own
    until they run out); "dead" past a lease (its leases are free for the other instances)."""
    if heartbeat_age > lease_seconds:
        return "dead"
    if heartbeat_age > 3 * heartbeat_period(heartbeat_seconds, lease_seconds):
        return "stale"
    return "alive"


class InstanceNameTaken(RuntimeError):
    """Another live instance runs under this instance's name: the two would share one heartbeat and every
    lease, so two deliverers of one destination would both believe they hold its lease."""


def pid_running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # it exists, another user's
    return True


class LeaseKeeper:
    """One lease as this instance sees it: taken or renewed in the store only when it is missing or a
    third of it has run (not once per message); every fenced completion renews it too (its caller hands
    the renewed lease to ``taken``)."""

    def __init__(self, owner: "Cluster", name: str):
        self.owner = owner
        self.name = name
        self.lease: Lease | None = None
        self._lock = threading.Lock()

    def fresh(self) -> Lease | None:
        """The lease, when it was renewed recently enough to start a delivery without a store round trip."""
        lease = self.lease
        if lease is not None and lease.expires_at - time.time() > self.owner.lease_seconds * 2 / 3:
            return lease
        return None

    def take(self, txn: Transaction) -> Lease | None:
        """Store work: take or renew the lease (None while another instance holds it)."""
        return cluster.take(txn, self.name, self.owner.name, time.time(), self.owner.lease_seconds)

    def taken(self, lease: Lease | None) -> Lease | None:
        """Note the outcome of ``take`` (logged when the lease changes hands)."""
        with self._lock:
            before, self.lease = self.lease, lease
        if lease is not None and (before is None or before.generation != lease.generation):
            log.info("lease %s taken by instance %s (generation %d)", self.name, self.owner.name, lease.generation)
        elif lease is None and before is not None:
            log.warning("lease %s lost by instance %s (generation %d): another instance delivers", self.name,
                        self.owner.name, before.generation)
        return lease

    def stale(self, lease: Lease, what: str, reason: Exception) -> None:
        """A completion refused by the fence: logged, and the lease forgotten (taken again before more)."""
        log.error("%s: completion refused, this instance (%s) no longer holds lease %s generation %d: %s",
                  what, self.owner.name, lease.name, lease.generation, reason)
        with self._lock:
            if self.lease is not None and self.lease.generation == lease.generation:
                self.lease = None

    def hand_over(self, store: Store, why: str) -> None:
        """End the lease now rather than at its expiry, so that another instance takes it at once: the work
        that comes next can only be done there (``why``).  Nothing when it is not held or was taken over."""
        with self._lock:
            lease, self.lease = self.lease, None
        if lease is not None and store.write(lambda txn: cluster.hand_over(txn, lease)):
            log.info("lease %s handed over by instance %s (generation %d): %s", self.name, self.owner.name,
                     lease.generation, why)

    def take_blocking(self, store: Store) -> Lease | None:
        """For a delivery thread: the fresh lease, or take it now (None while another instance holds it)."""
        return self.fresh() or self.taken(store.write(self.take))


class Cluster:
    """The instance's identity, heartbeat and leader lease."""

    def __init__(self, config: Config, store: Store, standalone: bool = False):
        self.store = store
        self.standalone = standalone   # no heartbeat thread (a service used on its own, in tests): leader
        self.name = config.cluster.instance or default_instance_name(config)
        self.lease_seconds = config.cluster.lease_seconds
        self.heartbeat_seconds = heartbeat_period(config.cluster.heartbeat_seconds, self.lease_seconds)
        self.started_at = now_iso()
        self.last_heartbeat = 0.0   # epoch seconds of the last heartbeat committed
        self.heartbeat_error = ""
        self.leader = LeaseKeeper(self, cluster.LEADER)
        self._keepers: dict[str, LeaseKeeper] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader_jobs: list[tuple[str, Callable[[], None], float, list[float]]] = []

    def keeper(self, name: str) -> LeaseKeeper:
        """The keeper of lease ``name`` (one per name in the process)."""
        if name not in self._keepers:
            self._keepers[name] = LeaseKeeper(self, name)
        return self._keepers[name]

    def every(self, name: str, job: Callable[[], None], seconds: float) -> None:
        """Run ``job`` every ``seconds`` on the heartbeat thread, on the instance holding the leader lease
        only (at most one instance of the cluster runs it at a time)."""
        self._leader_jobs.append((name, job, seconds, [0.0]))

    def is_leader(self) -> bool:
        """Whether this instance runs the once-per-cluster jobs now: it holds the leader lease with at least
        a third of it left (the heartbeat renews it every third at the latest)."""
        lease = self.leader.lease
        return self.standalone or (lease is not None and lease.expires_at - time.time() > self.lease_seconds / 3)

    def start(self, sole: bool = False) -> None:
        """Register and take the leader lease; ``sole``: no other instance can run (SQLite, its lock held),
        so the leases an earlier process left are ended first."""
        if sole:   # SQLite: its file lock already refused a second engine, whatever its name
            self.store.write(cluster.release_all)
        else:
            self.store.write(self._register, timeout=self.lease_seconds)
        self._beat()   # registered before the listeners open
        self._run_leader_jobs()   # those registered before the start: at once, as the leader
        self._thread = threading.Thread(target=self._run, name="cluster-heartbeat", daemon=True)
        self._thread.start()
        log.info("cluster instance %s: heartbeat every %.0f s, leases of %.0f s", self.name, self.heartbeat_seconds,
                 self.lease_seconds)

    def stop(self) -> None:
        """Stop the heartbeat and release the leases (only those of a started instance: a refused start
        must not release the running instance's leases, which may have the same name)."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=10)
        self._thread = None
        try:
            self.store.write(lambda txn: cluster.release(txn, self.name), timeout=5)
        except Exception as exc:  # noqa: BLE001 - the leases then expire on their own
            log.warning("instance %s: leases not released at stop (%s); they expire within %.0f s", self.name, exc,
                        self.lease_seconds)

    def healthy(self) -> str | None:
        """None while the heartbeat is recent; otherwise why not (for /ready)."""
        age = time.time() - self.last_heartbeat
        if age <= self.lease_seconds:
            return None
        return f"no heartbeat written for {age:.0f} s ({self.heartbeat_error or 'not yet'})"

    def _register(self, txn: Transaction) -> None:
        """Store work: refuse the name while another live instance has it (its heartbeat younger than a
        lease, and on this host its process still running); a dead one's name is taken over."""
        other = cluster.namesake(txn, self.name)
        age = time.time() - other.heartbeat_at
        here = other.host == socket.gethostname()
        dead = here and (other.pid == os.getpid() or not pid_running(other.pid))   # same pid: an earlier container
        if other.pid and age < self.lease_seconds and not dead:
            raise InstanceNameTaken(
                f"instance name {self.name!r} is in use by a live instance (host {other.host}, pid {other.pid},"
                f" last heartbeat {age:.0f} s ago, less than cluster.lease_seconds {self.lease_seconds:.0f} s):"
                " give each instance its own cluster.instance, or wait until the other one has stopped")
        if other.pid:
            log.info("instance name %s taken over from host %s pid %d (last heartbeat %.0f s ago%s)", self.name,
                     other.host, other.pid, age, ", its process gone" if dead else "")

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self._beat()
            self._run_leader_jobs()

    def _beat(self) -> None:
        def work(txn: Transaction) -> Lease | None:
            cluster.heartbeat(txn, self.name, socket.gethostname(), os.getpid(), self.started_at, time.time())
            return self.leader.take(txn)
        try:
            self.leader.taken(self.store.write(work, timeout=self.lease_seconds))
        except Exception as exc:  # noqa: BLE001 - /ready reports it; the next beat tries again
            self.heartbeat_error = str(exc)
            log.warning("instance %s: heartbeat not written: %s", self.name, exc)
            return
        self.last_heartbeat = time.time()
        self.heartbeat_error = ""

    def _run_leader_jobs(self) -> None:
        if not self.is_leader():
            return
        now = time.monotonic()
        for name, job, seconds, last in self._leader_jobs:
            if last[0] and now - last[0] < seconds:
                continue
            last[0] = now
            try:
                job()
            except Exception:  # noqa: BLE001 - the next round runs it again
                log.exception("instance %s: cluster job %s failed", self.name, name)
