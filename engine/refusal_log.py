"""One log line per peer per interval for refused connections, however fast a host is refused.

Both listeners refuse connections over their caps (DICOM: dicom/admission.py, MLLP: hl7/mllp.py); a
flooding host must not flood the log too, but the operator still needs to know how many were refused.
"""
from __future__ import annotations

import logging
import threading
import time

from .security_events import SecurityEvent, SecurityEvents

MAX_REMEMBERED_PEERS = 10_000   # past this many hosts, those not logged within the interval are forgotten


class RefusalLog:
    """Logs a peer's refusal at most once per ``interval`` seconds, with the count not logged since."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, events: SecurityEvents | None = None):
        self.logger = logger
        self.interval = interval
        self.events = events               # with the engine's bus, each said refusal is an audited event
        self._lock = threading.Lock()      # the DICOM listener refuses from several threads
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def refused(self, peer: str, reason: str) -> None:
        unlogged = self.due(peer)
        if unlogged is None:
            return
        if self.events is not None:   # the bus logs it (and the audit trail makes it a Security Alert)
            self.events.raise_event(SecurityEvent("connection-refused", peer, reason + self.since(peer, unlogged)))
        else:
            self.logger.warning("%s%s", reason, self.since(peer, unlogged))

    def due(self, peer: str) -> int | None:
        """None while ``peer`` was said within the interval (counted), else how many went unsaid since."""
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at.get(peer, -self.interval) < self.interval:
                self._unlogged[peer] = self._unlogged.get(peer, 0) + 1
                return None
            if len(self._logged_at) > MAX_REMEMBERED_PEERS:
                self._logged_at = {p: t for p, t in self._logged_at.items() if now - t < self.interval}
            self._logged_at[peer] = now
            return self._unlogged.pop(peer, 0)

    @staticmethod
    def since(peer: str, unlogged: int) -> str:
        return f" ({unlogged} more refused from {peer} since the last such line)" if unlogged else ""
