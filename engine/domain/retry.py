"""When a delivery queue tries again, and when it gives up: one policy for the outbox (HL7 to
destinations), the DICOM forwards and the storage commitment reports.

A failed attempt is retried after ``first_seconds``, the delay doubling per failed attempt up to
``max_seconds``; the last retry falls at the give-up deadline (``give_up_hours`` after the work was
queued), and a failure at or after that deadline parks the work as dead.  Pure: the callers give the
age of the work and the attempts, and store the answer.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 30.0
    max_seconds: float = 1800.0
    give_up_hours: float = 24.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones (1, 2, ...): doubling, capped."""
        return min(self.first_seconds * (2 ** max(attempts - 1, 0)), self.max_seconds)

    def retry_in(self, attempts: int, age_seconds: float) -> float | None:
        """Seconds until the next attempt after ``attempts`` failed ones, for work queued ``age_seconds``
        ago; None when the give-up deadline has come: park the work as dead."""
        left = self.give_up_hours * 3600 - age_seconds
        if left <= 0:
            return None
        return min(self.delay(attempts), left)
