"""SQL of running several engines on one database (issue 15): instance heartbeats and leases.

A lease (``cluster_leases``) names one piece of work only one instance may do at a time: delivering one
destination's queue ("outbox:RIS", "forward:PACS", "commitment:MODALITY", "audit") or a once-per-cluster
job ("leader").  Its holder keeps it by renewing it before ``expires_at``; another instance takes it only
once it has expired, and every change of holder adds one to ``generation``.  The generation is the fencing
token: every write that completes a delivery goes through ``fence``, which renews the lease only when the
writer still holds that generation, and otherwise raises ``StaleLease`` (that write alone is undone), so a
holder that was paused past its lease cannot record a delivery over its successor's.

On PostgreSQL the lease row is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED``: an instance that finds
the row locked (another one is taking, renewing or fencing it) passes instead of waiting behind it, and a
completion's fencing ``UPDATE`` holds the row until its commit, so a takeover cannot slip in between the
check and the write it guards.  On SQLite (one instance, one writer) the same statements run unlocked.
Times are epoch seconds of the instance's clock: the instances' clocks must agree (NTP) to well within a
lease.
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import POSTGRES, StatementFailed, Transaction

LEADER = "leader"   # the lease of the once-per-cluster jobs


class StaleLease(StatementFailed):
    """The writer no longer holds the lease generation it claimed with: another instance took it over."""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    generation: int
    expires_at: float   # epoch seconds


@dataclass(frozen=True)
class Instance:
    name: str
    host: str
    pid: int
    started_at: str
    heartbeat_at: float   # epoch seconds


@dataclass(frozen=True)
class ClusterOverview:
    """Who runs and who holds what, as ``swf cluster``, GET /api/v1/cluster and the console show it."""

    now: float                 # epoch seconds the view was read at, to tell heartbeats' and leases' age
    instances: tuple[Instance, ...]
    leases: tuple[Lease, ...]  # a lease whose expires_at is past is held by nobody (taken by the next asker)


def heartbeat(txn: Transaction, name: str, host: str, pid: int, started_at: str, now: float) -> None:
    """Register the instance, or note that it is alive (one row per instance name)."""
    txn.execute("INSERT INTO cluster_instances (name, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                (name, host, pid, started_at, now))


def namesake(txn: Transaction, name: str) -> Instance:
    """The registration of instance ``name``, locked until the transaction ends, so that another process
    starting under the same name at the same moment waits and then sees this one's heartbeat.  A name never
    registered is inserted with no host, pid 0 and heartbeat 0 (the heartbeat that follows fills it in)."""
    txn.execute("INSERT INTO cluster_instances (name, host, pid, started_at, heartbeat_at) VALUES (?, '', 0, '', 0)"
                " ON CONFLICT (name) DO NOTHING", (name,))
    locking = " FOR UPDATE" if txn.dialect is POSTGRES else ""
    return Instance(*txn.row("SELECT name, host, pid, started_at, heartbeat_at FROM cluster_instances"
                             f" WHERE name = ?{locking}", (name,)))


def instances(txn: Transaction) -> list[Instance]:
    return [Instance(*row) for row in txn.rows(
        "SELECT name, host, pid, started_at, heartbeat_at FROM cluster_instances ORDER BY name")]


def leases(txn: Transaction) -> list[Lease]:
    return [Lease(*row) for row in txn.rows(
        "SELECT name, holder, generation, expires_at FROM cluster_leases ORDER BY name")]


def overview(txn: Transaction, now: float) -> ClusterOverview:
    return ClusterOverview(now, tuple(instances(txn)), tuple(leases(txn)))


def take(txn: Transaction, name: str, holder: str, now: float, seconds: float) -> Lease | None:
    """The lease for ``holder`` until ``now + seconds``: renewed when it holds it, taken over (next
    generation) when it has expired or was never taken; None while another instance holds it."""
    txn.execute("INSERT INTO cluster_leases (name, holder, generation, expires_at) VALUES (?, '', 0, 0)"
                " ON CONFLICT (name) DO NOTHING", (name,))
    locking = " FOR UPDATE SKIP LOCKED" if txn.dialect is POSTGRES else ""
    row = txn.row(f"SELECT holder, generation, expires_at FROM cluster_leases WHERE name = ?{locking}", (name,))
    if row is None:
        return None   # locked by another instance this very moment: it is taking or renewing it
    current_holder, generation, expires_at = row
    if current_holder != holder and expires_at > now:
        return None
    if current_holder != holder:
        generation += 1
    txn.execute("UPDATE cluster_leases SET holder = ?, generation = ?, expires_at = ? WHERE name = ?",
                (holder, generation, now + seconds, name))
    return Lease(name, holder, generation, now + seconds)


def fence(txn: Transaction, lease: Lease, now: float, seconds: float) -> Lease:
    """Before a write that completes work done under ``lease``: renew it, or raise ``StaleLease`` when its
    generation has been taken over (the write must not happen)."""
    if txn.execute("UPDATE cluster_leases SET expires_at = ? WHERE name = ? AND holder = ? AND generation = ?",
                   (now + seconds, lease.name, lease.holder, lease.generation)).rowcount != 1:
        row = txn.row("SELECT holder, generation FROM cluster_leases WHERE name = ?", (lease.name,))
        now_held = f"{row[0]} holds generation {row[1]}" if row else "it is gone"
        raise StaleLease(f"lease {lease.name} generation {lease.generation} of {lease.holder} was taken over: "
                         f"{now_held}")
    return Lease(lease.name, lease.holder, lease.generation, now + seconds)


def hand_over(txn: Transaction, lease: Lease) -> bool:
    """End ``lease`` now if its holder still holds that generation, so another instance may take it at
    once (work it cannot do waits for another instance); False when it had been taken over already."""
    return txn.execute("UPDATE cluster_leases SET expires_at = 0 WHERE name = ? AND holder = ? AND generation = ?",
                       (lease.name, lease.holder, lease.generation)).rowcount == 1


def alive(txn: Transaction, since: float) -> set[str]:
    """The names of the instances whose heartbeat is younger than ``since`` (epoch seconds)."""
    return {row[0] for row in txn.rows("SELECT name FROM cluster_instances WHERE heartbeat_at >= ?", (since,))}


def release(txn: Transaction, holder: str) -> None:
    """At a clean stop: the instance's leases expire now, so another instance takes over at once."""
    txn.execute("UPDATE cluster_leases SET expires_at = 0 WHERE holder = ?", (holder,))


def release_all(txn: Transaction) -> None:
    """On SQLite, at start: the engine is the only instance (engine/store/instance_lock.py), so the leases
    of an earlier process, whatever its name (another MLLP port), are stale and end now."""
    txn.execute("UPDATE cluster_leases SET expires_at = 0")
