"""cld_consumer_lag arithmetic (cld_runtime.lag.compute_lag)."""

from __future__ import annotations

from aiokafka import TopicPartition

from cld_runtime.lag import compute_lag


def test_lag_is_end_minus_committed_and_whole_partition_when_nothing_committed() -> None:
    a, b, c = (TopicPartition("t", p) for p in range(3))
    assert compute_lag({a: 10, b: 7, c: 5}, {a: 4, b: None, c: 9}) == {a: 6, b: 7, c: 0}
