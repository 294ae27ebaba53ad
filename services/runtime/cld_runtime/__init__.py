"""cld_runtime: what every CLD service process shares (settings, broker factory, /metrics and /health,
structured logging, consumer-lag gauge, dead-letter publisher, the one batch consumer). No domain logic here."""

from cld_runtime.broker import BatchPublisher, broker_options, make_broker
from cld_runtime.consumer import ConsumedBatch, Consumer
from cld_runtime.deadletter import DeadLetterPublisher, dead_letter_for
from cld_runtime.http import health_body, make_asgi_app, metrics_body
from cld_runtime.lag import ConsumerLagMonitor, compute_lag
from cld_runtime.logs import configure_logging, service_logger
from cld_runtime.settings import Settings
from cld_runtime.topics import ensure_topics

__all__ = [
    "BatchPublisher",
    "ConsumedBatch",
    "Consumer",
    "ConsumerLagMonitor",
    "DeadLetterPublisher",
    "Settings",
    "broker_options",
    "compute_lag",
    "configure_logging",
    "dead_letter_for",
    "ensure_topics",
    "health_body",
    "make_asgi_app",
    "make_broker",
    "metrics_body",
    "service_logger",
]
