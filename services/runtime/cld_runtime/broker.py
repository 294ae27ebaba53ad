"""The one way a service builds its Kafka broker: settings, security and Prometheus middleware in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher import DefaultPublisher
from faststream.kafka.response import KafkaPublishCommand
from faststream.prometheus.manager import MetricsManager
from faststream.prometheus.middleware import PrometheusMiddleware
from faststream.prometheus.types import PublishingStatus
from faststream.response.publish_type import PublishType
from prometheus_client import CollectorRegistry

from cld_runtime.settings import Settings


def broker_options(settings: Settings, *, registry: CollectorRegistry) -> dict[str, Any]:
    """Keyword arguments for ``KafkaBroker`` and for ``faststream.kafka.fastapi.KafkaRouter``."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security": settings.kafka_security(),
        "client_id": f"cld-{settings.service_name}",
        # acks=all: a publish is confirmed only once the record is durable (nothing is lost, issue 3).
        "acks": "all",
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": settings.kafka_max_batch_size,
        "middlewares": (KafkaPrometheusMiddleware(registry=registry, app_name=settings.service_name),),
        "logger": logging.getLogger(f"faststream.cld.{settings.service_name}"),
        # Per-message access logs at DEBUG: at thousands of records/s INFO access logs cost real throughput.
        "log_level": logging.DEBUG,
        "description": f"CLD mesh: {settings.service_name} service",
    }


def make_broker(settings: Settings, *, registry: CollectorRegistry) -> KafkaBroker:
    return KafkaBroker(**broker_options(settings, registry=registry))


class BatchPublisher:
    """Publishes one topic's outputs of a consumed batch without waiting for each, through the broker's producer.

    FastStream's ``publisher.publish`` costs about 50 µs of CPU per message (publish command, middleware
    stack, Prometheus scope); at thousands of records/s on two cores that is a large share of a service.
    Here each record is one ``KafkaPublishCommand`` handed to the broker's producer (``broker.config.producer``,
    public in FastStream 0.7: what ``publisher.publish`` itself calls once its middlewares have run), with the
    same topic, key, value and headers (FastStream's ``content-type`` and ``correlation_id`` included), and
    the caller gathers the delivery futures once per batch, before the batch's offsets are committed
    (at-least-once). ``faststream_published_messages_total`` is counted once per batch (:meth:`count_published`).

    The in-memory tiers take the same path: FastStream's ``TestKafkaBroker`` swaps the producer for its fake
    one, which routes the command to the subscribers (and returns no future). The one private attribute read
    here, the Prometheus middleware's metrics manager, is guarded by tests/unit/test_batch_publisher.py.
    """

    def __init__(self, broker: KafkaBroker, publisher: DefaultPublisher, *, topic: str) -> None:
        self.broker = broker
        self.publisher = publisher
        """The declared publisher (its schema, title and description are the topic's AsyncAPI entry)."""
        self.topic = topic
        self._uncounted = 0
        self._metrics: MetricsManager | None = next(
            (m._metrics_manager for m in broker.config.broker_middlewares if isinstance(m, PrometheusMiddleware)),
            None,
        )

    async def send(self, value: bytes, *, key: bytes | None, headers: Mapping[str, str]) -> asyncio.Future[Any] | None:
        """Hand one record to the producer; returns its delivery future (None in the in-memory test broker)."""
        command = KafkaPublishCommand(
            value,
            topic=self.topic,
            key=key,
            headers=dict(headers),
            correlation_id=str(uuid4()),
            _publish_type=PublishType.PUBLISH,
            # send() awaits only while the producer's buffer is full (back-pressure), never the broker's ack.
            no_confirm=True,
        )
        result = await self.broker.config.producer.publish(command)
        self._uncounted += 1
        return result if isinstance(result, asyncio.Future) else None

    def count_published(self) -> None:
        """Add the records sent since the last call to FastStream's published counter (once per batch)."""
        if self._uncounted and self._metrics is not None:
            self._metrics.add_published_message(
                amount=self._uncounted, status=PublishingStatus.success, broker="kafka", destination=self.topic
            )
        self._uncounted = 0
