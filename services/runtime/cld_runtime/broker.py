"""The one way a service builds its Kafka broker: settings, security and Prometheus middleware in one place."""

from __future__ import annotations

import logging
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
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
