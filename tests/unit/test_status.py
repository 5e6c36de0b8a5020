"""The scheduled procedure step state machine and derived order status (SWF.md 4.1)."""
from __future__ import annotations

import pytest

from engine.domain.status import StepEvent, StepStatus, TransitionRefused, order_status, transition

S = StepStatus


@pytest.mark.parametrize("start,event,end", [
    (S.SCHEDULED, StepEvent.START, S.STARTED),
    (S.ARRIVED, StepEvent.START, S.STARTED),
    (S.READY, StepEvent.START, S.STARTED),
    (S.SCHEDULED, StepEvent.CANCEL, S.CANCELED),
    (S.STARTED, StepEvent.COMPLETE, S.COMPLETED),
    (S.STARTED, StepEvent.DISCONTINUE, S.DISCONTINUED),
    (S.SCHEDULED, StepEvent.DISCONTINUE, S.DISCONTINUED),
    (S.STARTED, StepEvent.REOFFER, S.SCHEDULED),
    (S.SCHEDULED, StepEvent.ARRIVE, S.ARRIVED),
    (S.SCHEDULED, StepEvent.RESCHEDULE, S.SCHEDULED),
])
def test_allowed_transitions(start: StepStatus, event: StepEvent, end: StepStatus) -> None:
    assert transition(start, event) == end


@pytest.mark.parametrize("start,event,reason", [
    (S.STARTED, StepEvent.CANCEL, "in progress"),
    (S.COMPLETED, StepEvent.CANCEL, "final state"),
    (S.CANCELED, StepEvent.START, "final state"),
    (S.DISCONTINUED, StepEvent.COMPLETE, "final state"),
    (S.COMPLETED, StepEvent.START, "final state"),
    (S.STARTED, StepEvent.START, "STARTED"),
    (S.STARTED, StepEvent.RESCHEDULE, "in progress"),
    (S.SCHEDULED, StepEvent.REOFFER, "SCHEDULED"),
])
def test_refused_transitions_say_why(start: StepStatus, event: StepEvent, reason: str) -> None:
    with pytest.raises(TransitionRefused) as refused:
        transition(start, event)
    assert reason in refused.value.reason
    assert refused.value.status == start


def test_every_final_status_refuses_everything_but_nothing_is_silently_kept() -> None:
    for status in (S.COMPLETED, S.CANCELED, S.DISCONTINUED):
        for event in StepEvent:
            with pytest.raises(TransitionRefused):
                transition(status, event)


@pytest.mark.parametrize("statuses,expected", [
    ([], "SC"),
    ([S.SCHEDULED], "SC"),
    ([S.SCHEDULED, S.READY], "SC"),
    ([S.STARTED, S.SCHEDULED], "IP"),
    ([S.COMPLETED, S.SCHEDULED], "IP"),
    ([S.COMPLETED], "CM"),
    ([S.COMPLETED, S.CANCELED], "CM"),
    ([S.DISCONTINUED, S.CANCELED], "DC"),
    ([S.CANCELED, S.CANCELED], "CA"),
])
def test_order_status_is_derived_from_steps(statuses: list[StepStatus], expected: str) -> None:
    assert order_status(statuses) == expected
