"""The retry policy shared by the outbox, the DICOM forwards and the storage commitment reports."""
from __future__ import annotations

from engine.domain.retry import RetryPolicy
from engine.outbound.destinations import parse_destination


def test_the_delay_doubles_up_to_the_cap_and_never_passes_the_give_up_deadline() -> None:
    policy = RetryPolicy(first_seconds=5, max_seconds=600, give_up_hours=1)
    assert [policy.retry_in(n, 0) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert policy.retry_in(8, 3600 - 100) == 100         # the last retry falls at the deadline
    assert policy.retry_in(1, 3600) is None               # at the deadline: dead
    assert policy.retry_in(1, 7200) is None
    assert RetryPolicy(give_up_hours=0).retry_in(1, 0) is None


def test_a_destination_s_retry_keys_make_its_policy() -> None:
    destination = parse_destination("ris", {"address": "127.0.0.1:2575", "retry_seconds": 0.2,
                                            "max_retry_seconds": 0.5, "give_up_hours": 2}, "routes/x.yaml", 1)
    assert destination.retry_policy == RetryPolicy(first_seconds=0.2, max_seconds=0.5, give_up_hours=2)
    assert parse_destination("ris", {"address": "127.0.0.1:2575"}, "routes/x.yaml", 1).retry_policy == \
        RetryPolicy(first_seconds=5.0, max_seconds=600.0, give_up_hours=24.0)
