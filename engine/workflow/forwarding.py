"""DICOM forwarding: every received instance and every MPPS change queued for downstream AEs.

``ForwardingQueue`` is a store before-commit hook: instances and MPPS versions committed since its
watermark (kept in ``counters``) become ``dicom_forwards`` rows for each configured destination, in the
same transaction, so nothing indexed is ever left unforwarded.  The sender (engine/dicom/services/
forwarding.py) delivers them in order per destination with retries.
"""
from __future__ import annotations

from ..store import repository as repo
from ..store.database import Transaction

SOURCES = {
    # kind: (table, uid column, watermark counter)
    "store": ("instances", "sop_instance_uid", "forward:instances"),
    "mpps": ("performed_step_versions", "(SELECT sop_instance_uid FROM performed_steps p"
                                        " WHERE p.id = performed_step_ref)", "forward:mpps"),
}


class ForwardingQueue:
    def __init__(self, store_destinations: list[str], mpps_destinations: list[str]):
        self.destinations = {"store": list(store_destinations), "mpps": list(mpps_destinations)}

    def start(self, txn: Transaction) -> None:
        """Forward from now on, not the archive's whole history: set missing watermarks to the newest row."""
        for kind, destinations in self.destinations.items():
            table, _uid, counter = SOURCES[kind]
            if destinations and txn.one("SELECT value FROM counters WHERE name = ?", (counter,)) is None:
                latest = txn.one(f"SELECT MAX(id) AS id FROM {table}")
                txn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (counter, (latest or {}).get("id") or 0))

    def __call__(self, txn: Transaction) -> None:
        for kind, destinations in self.destinations.items():
            if destinations:
                self._enqueue(txn, kind, destinations)

    def _enqueue(self, txn: Transaction, kind: str, destinations: list[str]) -> None:
        table, uid, counter = SOURCES[kind]
        row = txn.one("SELECT value FROM counters WHERE name = ?", (counter,))
        if row is None:
            return  # start() has not run: nothing is forwarded before the engine says so
        rows = txn.query(f"SELECT id, {uid} AS uid FROM {table} WHERE id > ? ORDER BY id", (row["value"],))
        if not rows:
            return
        stamp = repo.now_iso()
        for source in rows:
            for destination in destinations:
                txn.execute("INSERT INTO dicom_forwards (destination, kind, source_ref, sop_instance_uid, created_at,"
                            " status) VALUES (?, ?, ?, ?, ?, 'pending')",
                            (destination, kind, source["id"], source["uid"], stamp))
        txn.execute("UPDATE counters SET value = ? WHERE name = ?", (rows[-1]["id"], counter))
