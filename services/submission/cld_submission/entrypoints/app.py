"""The composition root of the submission process: ``create_app(settings)`` builds and wires everything (storage,
audit log, transport, broker, consumers, service layer, HTTP API, health); nothing is created at import time.

- Consumes the validated and pseudonymised record topics (``consumers.py``).
- Publishes every lifecycle step on ``cld.submissions.v1`` (from the repository's outbox).
- HTTP (FastAPI): the submission API under ``/v1`` (``api.py``), plus ``/metrics`` and ``/health``.

The process entry point is ``cld serve submission`` (``python -m cld_submission`` runs the same): it reads
``SubmissionSettings`` from the environment once and passes them here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from cld_governance.loaders import load_policy
from cld_governance.sharing import SharingPolicy
from cld_governance.tenancy import Registry
from cld_runtime import ConsumerLagMonitor, configure_logging, make_broker
from cld_runtime.consumer import Consumer
from cld_runtime.files import private_umask
from cld_runtime.http import add_health_routes
from cld_schemas import topics
from cld_schemas.contract import HEADER_SUBMISSION_ID
from cld_schemas.events import SubmissionEvent

from ..adapters.audit_log import AuditLog
from ..adapters.metrics import SubmissionMetrics
from ..adapters.stores import open_stores
from ..adapters.transport import FileExportTransport, MeshTransport, Transport
from ..adapters.transport.retry import OnRetry
from ..service_layer.workflow import SubmissionWorkflow
from .api import add_routes
from .consumers import add_consumers
from .settings import SERVICE, SubmissionSettings

# -- composition root ---------------------------------------------------------------------------------


def build_transport(
    settings: SubmissionSettings, metrics: SubmissionMetrics, retry_hooks: Sequence[OnRetry] = ()
) -> Transport:
    """The configured transport; ``retry_hooks`` hear of every retried transport call (the workflow keeps the
    last error and the next retry for ``cld submission status``)."""
    if settings.transport == "mesh":

        def on_retry(op: str, attempt: int, delay: float, exc: BaseException) -> None:
            metrics.mesh_send.labels("retry").inc()
            for hook in retry_hooks:
                hook(op, attempt, delay, exc)

        assert settings.mesh is not None  # read with the settings when transport is 'mesh'
        return MeshTransport(settings.mesh, on_retry=on_retry)
    return FileExportTransport(settings.export_dir or settings.state_dir / "export")


def create_app(
    settings: SubmissionSettings,
    *,
    transport: Transport | None = None,
    tenants: Registry | None = None,
    policy: SharingPolicy | None = None,
) -> FastAPI:
    """Composition root of the submission process (``transport``, ``tenants`` and ``policy`` may be injected,
    e.g. in tests; by default the tenants registry comes from ``CLD_TENANTS_FILE`` / ``CLD_TENANCY_MODE`` and the
    sharing policy from ``CLD_SHARING_POLICY_FILE`` or the packaged default)."""
    log = configure_logging(service=SERVICE, level=settings.log_level)
    private_umask()  # state, submission files and exports: 0600 files in 0700 folders (issue 10)
    tenants = tenants if tenants is not None else settings.registry()
    if tenants.open_mode:
        log.warning(
            "TENANCY OPEN MODE: the submission API takes no operator key; anyone may view, request, approve and "
            "export for every LA. Synthetic data only.",
            extra={"tenancy_mode": "open"},
        )
    policy = policy if policy is not None else load_policy(settings.sharing_policy_file)
    registry = CollectorRegistry()
    broker: KafkaBroker = make_broker(settings, registry=registry)
    metrics = SubmissionMetrics(registry)
    state, repo = open_stores(settings.state_dir, settings.database_url)
    audit = AuditLog(settings.state_dir / "audit.jsonl")
    retry_hooks: list[OnRetry] = []
    chosen = transport or build_transport(settings, metrics, retry_hooks)
    submissions_out = broker.publisher(
        settings.topic(topics.SUBMISSIONS),
        schema=SubmissionEvent,
        title=topics.SUBMISSIONS,
        description="Submission lifecycle steps. Key: the LA code.",
    )

    async def publish(event: SubmissionEvent) -> None:
        await submissions_out.publish(  # the model itself: FastStream writes its JSON (one conversion)
            event, key=event.la_code.encode(), headers={HEADER_SUBMISSION_ID: event.submission_id}
        )

    workflow = SubmissionWorkflow(
        settings=settings.workflow_settings(),
        state=state,
        repo=repo,
        audit=audit,
        transport=chosen,
        publish=publish,
        metrics=metrics,
        log=log,
        policy=policy,
    )
    retry_hooks.append(workflow.on_transport_retry)
    consumer = Consumer.create(
        broker, settings, registry=registry, consumed=[topics.VALIDATED, topics.PSEUDONYMISED], log=log
    )
    add_consumers(consumer, settings=settings, workflow=workflow)

    lag = ConsumerLagMonitor(
        settings, group=settings.group_id, topics=[settings.topic(topics.VALIDATED)], registry=registry
    )
    lag.watch(broker)  # refresh right after each processed batch, not only every interval
    tick: asyncio.Task[None] | None = None

    async def ticker() -> None:
        while True:
            await asyncio.sleep(settings.gauge_interval_seconds)  # a refresh period, not synchronisation
            try:
                await workflow.after_change()
                workflow.pick_up_approved()
            except Exception:
                log.warning("periodic refresh failed", exc_info=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal tick
        await broker.start()
        await workflow.resume()
        await lag.start()
        tick = asyncio.create_task(ticker(), name="submission-ticker")
        try:
            yield
        finally:
            # A lag monitor whose start failed (broker unreachable) re-raises on stop (reported to the lead).
            with contextlib.suppress(Exception):
                await lag.stop()
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
            await workflow.close()
            await broker.stop()
            state.close()
            repo.close()

    # /docs and /redoc serve Swagger UI / ReDoc from the fastapi-offline package, not a CDN (offline too)
    app = FastAPIOffline(
        static_url="/docs-static",
        swagger_ui_parameters={"validatorUrl": None},  # no call to the public validator
        title="CLD submission service",
        description="Per-LA submission state, dataset checks, approval and sending to NHS England.",
        lifespan=lifespan,
    )
    app.state.broker = broker
    app.state.workflow = workflow
    app.state.registry = registry
    app.state.tenants = tenants
    readiness = add_health_routes(app, broker, settings=settings)
    readiness.add("state_store", workflow.storage.check)
    app.state.readiness = readiness
    add_routes(app, workflow, tenants)
    return app
