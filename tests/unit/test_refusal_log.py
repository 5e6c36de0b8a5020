"""Refused connections: one log line per peer per interval, with the count not logged in between."""
import logging
import time

from engine.refusal_log import RefusalLog


def test_a_flooding_peer_gets_one_line_per_interval_with_the_count(caplog) -> None:
    refusals = RefusalLog(logging.getLogger("test.refusals"), interval=0.2)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for _ in range(5):
            refusals.refused("10.1.1.1", "cap reached")
        refusals.refused("10.1.1.2", "cap reached")       # another peer has its own interval
        time.sleep(0.25)
        refusals.refused("10.1.1.1", "cap reached")
    assert [record.getMessage() for record in caplog.records] == [
        "cap reached", "cap reached", "cap reached (4 more refused from 10.1.1.1 since the last such line)"]
