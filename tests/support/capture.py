"""Capture what a service publishes, in the in-memory ``TestKafkaBroker`` (component and mesh tiers)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage


@dataclass
class Captured:
    """Messages seen on one topic: decoded JSON bodies, keys and headers."""

    topic: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def capture(broker: KafkaBroker, topic: str) -> Captured:
    """Subscribe a recorder to ``topic`` (call before entering ``TestKafkaBroker``)."""
    seen = Captured(topic)

    @broker.subscriber(topic, group_id=f"test-capture-{topic}", include_in_schema=False)
    async def record(message: KafkaMessage) -> None:
        raw: Any = message.raw_message
        seen.bodies.append(json.loads(raw.value))
        seen.keys.append(raw.key)
        seen.headers.append({k: v.decode() for k, v in raw.headers})

    return seen
