"""HTTP next to the broker: /metrics (Prometheus text) and the health endpoints, as ASGI routes.

Liveness and readiness are separate (issue 10):

- ``/health/live``: the process answers (its event loop runs). 200 always; a failing liveness probe means
  "restart me", so it never depends on the broker, the disk or the data.
- ``/health/ready``: the process can do its job now: the broker answers, the tenants registry is loaded, each
  consumer is making progress (``ConsumerProgress``: not failing batch after batch without a commit), plus the
  service's own checks (``Readiness``: the submission service adds "state store writable"). 503 with the
  failing part named otherwise; a failing readiness probe means "send no traffic, page if it lasts".
- ``/health``: an alias of ``/health/ready`` (compatibility with earlier probes and scripts).

``make_asgi_app`` gives an ``AsgiFastStream`` (FastStream's ASGI application) for services without an HTTP API
of their own; the FastAPI apps (ingest, submission) use ``add_health_routes`` for the same endpoints.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from faststream import BaseMiddleware
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cld_governance.tenancy import TenancyMode
from cld_runtime.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

CheckResult = tuple[bool, dict[str, Any]]
Check = Callable[[], CheckResult | Awaitable[CheckResult]]
"""A readiness check: (ready, details). Details are identifiers and fixed texts, never personal data."""


def metrics_body(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ConsumerProgress:
    """Whether the process's consumers make progress: not ready once handling has failed continuously (no
    batch handled, so no offset committed, while messages wait) for ``stall_seconds``, or one handler call has
    been running that long (hung). Fed by ``middleware()`` (a FastStream broker middleware) around every
    handler call."""

    def __init__(self, *, stall_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._failures = 0
        self._last_ok: float | None = None
        self._inflight: dict[int, float] = {}
        self._next_token = 0

    def started(self) -> int:
        with self._lock:
            self._next_token += 1
            self._inflight[self._next_token] = self._clock()
            return self._next_token

    def finished(self, token: int) -> None:
        with self._lock:
            self._inflight.pop(token, None)

    def handled(self) -> None:
        with self._lock:
            self._failing_since, self._failures, self._last_ok = None, 0, self._clock()

    def failed(self) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self._clock()
            self._failures += 1

    def check(self) -> CheckResult:
        with self._lock:
            since, failures = self._failing_since, self._failures
            oldest = min(self._inflight.values(), default=None)
        now = self._clock()
        failing = since is not None and now - since >= self.stall_seconds
        hung = oldest is not None and now - oldest >= self.stall_seconds
        body: dict[str, Any] = {"consumers": "stuck" if failing or hung else "progressing"}
        if since is not None:
            body["consumer_failing_seconds"] = round(now - since, 1)
            body["consumer_failed_batches"] = failures
        if hung and oldest is not None:
            body["consumer_busy_seconds"] = round(now - oldest, 1)
        return not (failing or hung), body

    def middleware(self) -> type[BaseMiddleware[Any, Any]]:
        """A broker middleware class reporting each handler call's outcome here (``broker.add_middleware``)."""
        progress = self

        class _Progress(BaseMiddleware[Any, Any]):
            async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
                token = progress.started()
                try:
                    result = await call_next(msg)
                except Exception:
                    progress.failed()
                    raise
                finally:
                    progress.finished(token)
                progress.handled()
                return result

        return _Progress


class Readiness:
    """The readiness checks of one process, evaluated by ``/health/ready`` (each check is cheap: no I/O that can
    hang; the broker ping is bounded by ``health_timeout_seconds``)."""

    def __init__(self, *, progress: ConsumerProgress | None = None) -> None:
        self.progress = progress or ConsumerProgress()
        self._checks: list[tuple[str, Check]] = [("consumers", self.progress.check)]

    def add(self, name: str, check: Check) -> None:
        self._checks.append((name, check))

    async def evaluate(self) -> tuple[bool, dict[str, Any], list[str]]:
        ready, body, failing = True, {}, []
        for name, check in self._checks:
            try:
                result = check()
                ok, details = await result if inspect.isawaitable(result) else result
            except Exception as exc:  # a broken check is a failing check, not an error page
                ok, details = False, {name: f"check failed ({type(exc).__name__})"}
            body.update(details)
            if not ok:
                ready = False
                failing.append(name)
        return ready, body, failing


def live_body(*, service: str) -> tuple[int, dict[str, Any]]:
    """Liveness: the process answers."""
    return 200, {"status": "alive", "service": service}


async def health_body(
    broker: KafkaBroker,
    *,
    service: str,
    wait_seconds: float,
    readiness: Readiness | None = None,
    settings: Settings | None = None,
) -> tuple[int, dict[str, Any]]:
    """Readiness: 200 when the broker answers within ``wait_seconds`` and every check passes, else 503 with
    ``failing`` naming what is wrong. Reports only statuses and fixed texts."""
    connected = False
    try:
        connected = bool(await broker.ping(wait_seconds))
    except Exception:  # not started / shutting down: unhealthy, not an error page
        connected = False
    body: dict[str, Any] = {
        "status": "ok",
        "service": service,
        "broker": "connected" if connected else "disconnected",
    }
    failing = [] if connected else ["broker"]
    if settings is not None:
        # The registry is resolved in the composition root: a process that runs has it loaded (or runs open).
        body["tenants"] = "open" if settings.tenancy_mode is TenancyMode.OPEN else "loaded"
    if readiness is not None:
        _ready, details, failed = await readiness.evaluate()
        body.update(details)
        failing.extend(failed)
    if failing:
        body["status"] = "unavailable"
        body["failing"] = failing
    return (503 if failing else 200), body


def json_response(status: int, body: Any) -> AsgiResponse:
    return AsgiResponse(json.dumps(body).encode(), status, headers={"content-type": "application/json"})


def install_progress(broker: KafkaBroker, readiness: Readiness) -> None:
    """Report every handler call of ``broker``'s subscribers to ``readiness.progress``."""
    broker.add_middleware(readiness.progress.middleware())


def make_asgi_app(
    broker: KafkaBroker,
    *,
    settings: Settings,
    registry: CollectorRegistry,
    routes: Sequence[tuple[str, ASGIApp]] = (),
    on_startup: Sequence[Callable[..., Any]] = (),
    after_startup: Sequence[Callable[..., Any]] = (),
    on_shutdown: Sequence[Callable[..., Any]] = (),
    readiness: Readiness | None = None,
) -> AsgiFastStream:
    """The service process: broker + /metrics + /health/live, /health/ready, /health (+ ``routes``)."""
    ready_checks = readiness or Readiness(progress=ConsumerProgress(stall_seconds=settings.consumer_stall_seconds))
    install_progress(broker, ready_checks)

    @get(include_in_schema=False)
    async def metrics(scope: Scope) -> AsgiResponse:
        body, content_type = metrics_body(registry)
        return AsgiResponse(body, 200, headers={"content-type": content_type})

    @get(include_in_schema=False)
    async def live(scope: Scope) -> AsgiResponse:
        return json_response(*live_body(service=settings.service_name))

    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        status, body = await health_body(
            broker,
            service=settings.service_name,
            wait_seconds=settings.health_timeout_seconds,
            readiness=ready_checks,
            settings=settings,
        )
        return json_response(status, body)

    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/metrics", metrics),
            ("/health/live", live),
            ("/health/ready", ready),
            ("/health", ready),
            *routes,
        ],
        on_startup=on_startup,
        after_startup=after_startup,
        on_shutdown=on_shutdown,
    )


def add_health_routes(
    app: FastAPI, broker: KafkaBroker, *, settings: Settings, readiness: Readiness | None = None
) -> Readiness:
    """``/health/live``, ``/health/ready`` and ``/health`` (alias of ready) on a FastAPI app; returns the
    readiness checks (the caller may ``add`` its own)."""
    from fastapi.responses import JSONResponse

    checks = readiness or Readiness(progress=ConsumerProgress(stall_seconds=settings.consumer_stall_seconds))
    install_progress(broker, checks)

    async def live() -> JSONResponse:
        status, body = live_body(service=settings.service_name)
        return JSONResponse(body, status_code=status)

    async def ready() -> JSONResponse:
        status, body = await health_body(
            broker,
            service=settings.service_name,
            wait_seconds=settings.health_timeout_seconds,
            readiness=checks,
            settings=settings,
        )
        return JSONResponse(body, status_code=status)

    app.add_api_route("/health/live", live, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health/ready", ready, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", ready, methods=["GET"], include_in_schema=False)
    return checks
