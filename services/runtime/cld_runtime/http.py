"""HTTP next to the broker: /metrics (Prometheus text) and /health (broker connection), as ASGI routes.

``make_asgi_app`` gives an ``AsgiFastStream`` (FastStream's ASGI application) for services without an HTTP API
of their own; the ingest FastAPI app uses ``health_body``/``metrics_body`` for the same two endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cld_runtime.settings import Settings


def metrics_body(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def health_body(broker: KafkaBroker, *, service: str, wait_seconds: float) -> tuple[int, dict[str, Any]]:
    """200 when the broker answers within ``wait_seconds``, else 503. Reports only connection status."""
    connected = False
    try:
        connected = bool(await broker.ping(wait_seconds))
    except Exception:  # not started / shutting down: unhealthy, not an error page
        connected = False
    body = {
        "status": "ok" if connected else "unavailable",
        "service": service,
        "broker": "connected" if connected else "disconnected",
    }
    return (200 if connected else 503), body


def json_response(status: int, body: Any) -> AsgiResponse:
    return AsgiResponse(json.dumps(body).encode(), status, headers={"content-type": "application/json"})


def make_asgi_app(
    broker: KafkaBroker,
    *,
    settings: Settings,
    registry: CollectorRegistry,
    routes: Sequence[tuple[str, ASGIApp]] = (),
    on_startup: Sequence[Callable[..., Any]] = (),
    after_startup: Sequence[Callable[..., Any]] = (),
    on_shutdown: Sequence[Callable[..., Any]] = (),
) -> AsgiFastStream:
    """The service process: broker + /metrics + /health (+ ``routes``)."""

    @get(include_in_schema=False)
    async def metrics(scope: Scope) -> AsgiResponse:
        body, content_type = metrics_body(registry)
        return AsgiResponse(body, 200, headers={"content-type": content_type})

    @get(include_in_schema=False)
    async def health(scope: Scope) -> AsgiResponse:
        status, body = await health_body(
            broker, service=settings.service_name, wait_seconds=settings.health_timeout_seconds
        )
        return json_response(status, body)

    return AsgiFastStream(
        broker,
        asgi_routes=[("/metrics", metrics), ("/health", health), *routes],
        on_startup=on_startup,
        after_startup=after_startup,
        on_shutdown=on_shutdown,
    )
