"""DICOM forwarding: every received instance and every MPPS change queued for downstream AEs.

``ForwardingQueue`` is a store before-commit hook: instances and MPPS versions committed since its
watermark become ``dicom_forwards`` tasks for each configured destination, in the same transaction, so
nothing indexed is ever left unforwarded.  The sender (engine/dicom/services/forwarding.py) delivers
them in order per destination with retries; the SQL of both is in engine/store/queues.py.
"""
from __future__ import annotations

from ..store import queues
from ..store.timestamps import now_iso
from ..store.database import Transaction


class ForwardingQueue:
    def __init__(self, store_destinations: list[str], mpps_destinations: list[str]):
        self.destinations = {"store": list(store_destinations), "mpps": list(mpps_destinations)}

    def start(self, txn: Transaction) -> None:
        """Forward from now on, not the archive's whole history: set missing watermarks to the newest row."""
        for kind, destinations in self.destinations.items():
            if destinations:
                queues.start_forward_watermark(txn, kind)

    def __call__(self, txn: Transaction) -> None:
        for kind, destinations in self.destinations.items():
            if destinations:
                self._enqueue(txn, kind, destinations)

    def _enqueue(self, txn: Transaction, kind: str, destinations: list[str]) -> None:
        watermark = queues.forward_watermark(txn, kind)
        if watermark is None:
            return  # start() has not run: nothing is forwarded before the engine says so
        sources = queues.forward_sources_after(txn, kind, watermark)
        if not sources:
            return
        stamp = now_iso()
        for source in sources:
            for destination in destinations:
                queues.enqueue_forward(txn, destination=destination, kind=kind, source=source, at=stamp)
        queues.advance_forward_watermark(txn, kind, sources[-1].source_ref)
