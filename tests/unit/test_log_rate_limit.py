"""Rate-limited framework logs (issue 10, finding 11): a broker outage's repeated aiokafka/FastStream errors are
written once per interval with a count of the ones dropped; our own loggers are untouched."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cld_runtime.logs import JsonFormatter, RateLimitFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sink() -> Iterator[tuple[io.StringIO, Clock]]:
    out, clock = io.StringIO(), Clock()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    handler.addFilter(RateLimitFilter(interval=30.0, clock=clock))
    loggers = [logging.getLogger(n) for n in ("aiokafka.conn", "faststream.cld.test", "cld.test")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
        lg.setLevel(logging.DEBUG)
    try:
        yield out, clock
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
            lg.propagate = True


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_repeated_framework_error_is_written_once_per_interval_with_the_count(
    sink: tuple[io.StringIO, Clock],
) -> None:
    out, clock = sink
    log = logging.getLogger("aiokafka.conn")
    for i in range(2400):  # a 15 s broker stop, as measured before the fix
        clock.now = i * 15 / 2400
        log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    assert len(lines(out)) == 1
    clock.now = 31.0
    log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    written = lines(out)
    assert len(written) == 2
    assert written[1]["suppressed_repeats"] == 2399
    assert "suppressed_repeats" not in written[0]


def test_different_messages_and_our_own_loggers_pass(sink: tuple[io.StringIO, Clock]) -> None:
    out, _clock = sink
    logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s", 1)
    logging.getLogger("aiokafka.conn").warning("Unable connect to node with id %s", 1)  # another level
    logging.getLogger("faststream.cld.test").error("OperationalError: database or disk is full")
    logging.getLogger("faststream.cld.test").error("OperationalError: disk I/O error")
    for _ in range(5):
        logging.getLogger("cld.test").error("state storage unavailable")
    for _ in range(3):
        logging.getLogger("faststream.cld.test").info("Received")  # per-message lines asked for: all kept
    assert len(lines(out)) == 4 + 5 + 3
