"""Consumer accounting: for every record a consumer commits, exactly one outcome (issue 10).

Per service and consumed topic, ``cld_consumed_records_total`` counts the records whose offsets the consumer
commits and ``cld_consumer_outcomes_total`` what became of each: ``forwarded`` (published on the next topic),
``stored`` (in the submission state; a repeat of an event already applied, or an older version than the one
held, is stored too: the state decided on it) or ``deadlettered`` (on the dead-letter topic, with a reason). Both are
added once per batch, after every output of the batch is confirmed and before its offsets are committed, so
at any quiet moment

    cld_consumed_records_total{service, topic} == sum by (service, topic) (cld_consumer_outcomes_total)

A batch that fails (a publish or a store raised) is counted when it is consumed again, not before: a record
counted is a record whose outcome is durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter


class Outcome(StrEnum):
    """What became of one consumed record (bounded: a metric label)."""

    FORWARDED = "forwarded"
    STORED = "stored"
    DEADLETTERED = "deadlettered"


class ConsumerAccounting:
    """The two accounting counters of one service, every (topic, outcome) series started at 0."""

    def __init__(self, registry: CollectorRegistry, *, service: str, topics: Iterable[str]) -> None:
        self.service = service
        self.consumed = Counter(
            "cld_consumed_records_total",
            "Records a consumer committed, by service and consumed topic (contract name).",
            ["service", "topic"],
            registry=registry,
        )
        self.outcomes = Counter(
            "cld_consumer_outcomes_total",
            "What became of each committed record: forwarded, stored or deadlettered (sums to consumed).",
            ["service", "topic", "outcome"],
            registry=registry,
        )
        for topic in topics:
            self.consumed.labels(service, topic)
            for outcome in Outcome:
                self.outcomes.labels(service, topic, outcome.value)

    def batch(self, topic: str, outcomes: Mapping[Outcome, int]) -> None:
        """Count one confirmed batch of ``topic``: how many records had each outcome."""
        total = 0
        for outcome, n in outcomes.items():
            if n:
                self.outcomes.labels(self.service, topic, outcome.value).inc(n)
                total += n
        if total:
            self.consumed.labels(self.service, topic).inc(total)
