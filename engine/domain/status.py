"""Scheduled procedure step status machine and derived order status (SWF.md section 4.1).

Pure domain logic: no I/O.  Every transition the engine applies goes through ``transition``; an
impossible one raises ``TransitionRefused`` with a reason instead of being silently applied.
"""
from __future__ import annotations

from enum import Enum


class StepStatus(str, Enum):
    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    DEPARTED = "DEPARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Not started yet: offered in the worklist and still cancellable."""
        return self in OPEN_STATUSES


OPEN_STATUSES = frozenset({StepStatus.SCHEDULED, StepStatus.ARRIVED, StepStatus.READY})
FINAL_STATUSES = frozenset({StepStatus.COMPLETED, StepStatus.DISCONTINUED, StepStatus.CANCELED})


class StepEvent(str, Enum):
    """What happens to a step; the causes named in SWF.md 4.1."""

    ARRIVE = "arrive"            # ADT A10 / operator
    READY = "ready"
    START = "start"              # MPPS N-CREATE IN PROGRESS, or NW with ORC-5 = IP
    COMPLETE = "complete"        # MPPS COMPLETED, or XO/CM from the filler
    DISCONTINUE = "discontinue"  # MPPS DISCONTINUED, or DC from HL7
    REOFFER = "reoffer"          # MPPS DISCONTINUED with reason 110514 (wrong worklist entry)
    CANCEL = "cancel"            # CA from HL7 / operator cancel
    RESCHEDULE = "reschedule"    # XO/SC changing a step that has not started


class TransitionRefused(Exception):
    """The event is not allowed in the step's current status."""

    def __init__(self, status: StepStatus, event: StepEvent, reason: str):
        super().__init__(reason)
        self.status = status
        self.event = event
        self.reason = reason


_ALLOWED: dict[StepEvent, tuple[frozenset[StepStatus], StepStatus | None]] = {
    # event: (statuses it may happen in, resulting status; None = unchanged)
    StepEvent.ARRIVE: (frozenset({StepStatus.SCHEDULED}), StepStatus.ARRIVED),
    StepEvent.READY: (frozenset({StepStatus.SCHEDULED, StepStatus.ARRIVED}), StepStatus.READY),
    StepEvent.START: (OPEN_STATUSES, StepStatus.STARTED),
    StepEvent.COMPLETE: (frozenset({StepStatus.STARTED, *OPEN_STATUSES}), StepStatus.COMPLETED),
    StepEvent.DISCONTINUE: (frozenset({StepStatus.STARTED, StepStatus.DEPARTED, *OPEN_STATUSES}),
                            StepStatus.DISCONTINUED),
    StepEvent.REOFFER: (frozenset({StepStatus.STARTED}), StepStatus.SCHEDULED),
    StepEvent.CANCEL: (OPEN_STATUSES, StepStatus.CANCELED),
    StepEvent.RESCHEDULE: (OPEN_STATUSES, None),
}


def transition(status: StepStatus, event: StepEvent) -> StepStatus:
    """The status after ``event``; raises ``TransitionRefused`` with a human-readable reason."""
    allowed_from, result = _ALLOWED[event]
    if status in allowed_from:
        return result or status
    if status.is_final:
        reason = f"step is {status.value} (final state); {event.value} not allowed"
    elif status == StepStatus.STARTED and event in (StepEvent.CANCEL, StepEvent.RESCHEDULE):
        reason = f"cannot {event.value}: step in progress (STARTED)"
    else:
        reason = f"cannot {event.value} a step that is {status.value}"
    raise TransitionRefused(status, event, reason)


def order_status(step_statuses: list[StepStatus]) -> str:
    """ORC-5 order status (HL7 table 0038) derived from the statuses of its steps."""
    if not step_statuses:
        return "SC"
    if all(s.is_open for s in step_statuses):
        return "SC"
    if all(s.is_final for s in step_statuses):
        if StepStatus.COMPLETED in step_statuses:
            return "CM"
        if StepStatus.DISCONTINUED in step_statuses:
            return "DC"
        return "CA"
    return "IP"
