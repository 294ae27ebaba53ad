"""The submission service process: composition root, Kafka consumer and HTTP API.

- Consumes ``cld.records.validated.v1`` (group ``cld-submission``, batches, offsets committed after the batch
  is stored; the store also keeps each partition's offset in the same transaction as the records).
- Consumes ``cld.records.pseudonymised.v1`` (group ``cld-submission-pseudonymised``) into the record state's
  pseudonymised table, for exports to recipients other than NHS England (``exports.py``).
- Publishes every lifecycle step on ``cld.submissions.v1`` (from the repository's outbox).
- HTTP (FastAPI): the submission API under ``/v1``, plus ``/metrics`` and ``/health``.

Every ``/v1`` call is made by an operator: ``Authorization: Bearer <operator key>`` (``cld tenants add-operator``),
authenticated against the tenants registry (``cld_governance.tenancy.authenticate_operator``, 401 otherwise) and
authorised for the submission's LA and the action (``authorise_operator``: view, request, approve, export; 403
with the reason otherwise, and the refusal is audited). Listings are filtered to the operator's LAs. The
requester and approver are the authenticated operator. ``CLD_TENANCY_MODE=open`` (no registry; a demo on
synthetic data) keeps the unauthenticated behaviour, logged as a warning at start.

``create_app(settings)`` builds everything; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi_offline import FastAPIOffline
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask

from cld_governance.loaders import load_policy
from cld_governance.sharing import Form, SharingPolicy
from cld_governance.tenancy import (
    Operator,
    OperatorAction,
    Registry,
    authenticate_operator,
    authorise_operator,
    sees_la,
)
from cld_runtime import (
    ConsumerLagMonitor,
    DeadLetterPublisher,
    Settings,
    configure_logging,
    dead_letter_for,
    make_broker,
    metrics_body,
)
from cld_runtime.accounting import ConsumerAccounting, Outcome
from cld_runtime.files import private_dir, private_umask
from cld_runtime.http import add_health_routes
from cld_runtime.messages import RawMessage, raw_messages, tolerant_parser, undecoded, unreadable_reason
from cld_schemas import topics
from cld_schemas.events import DeadLetterReason, RecordPseudonymised, RecordValidated, SubmissionEvent

from .audit import AuditLog
from .checks import PartialThresholds
from .deadlines import DeadlineRule
from .engines import open_record_store, open_repository
from .exports import ExportRefusedError, ExportUnavailableError, NotAnExportRecipientError
from .lifecycle import PeriodError, Submission, TransitionRefusedError
from .metrics import SubmissionMetrics
from .pg import database_problem
from .ports import RecordStore, SubmissionsRepository
from .state import Incoming
from .storage import StorageUnavailableError, fault_cause, folder_problem
from .transport import FileExportTransport, MeshSettings, MeshTransport, Transport
from .transport.retry import OnRetry
from .workflow import DQSummary, SubmissionNotFoundError, SubmissionWorkflow, WorkflowSettings

SERVICE = "submission"
_Event = TypeVar("_Event", RecordValidated, RecordPseudonymised)


class SubmissionSettings(Settings):
    """Settings of the submission process (environment prefix ``CLD_``; MESH settings: ``CLD_MESH_``)."""

    service_name: str = Field(default=SERVICE, description="Service name in logs, metrics and client ids.")
    http_port: int = Field(
        default=8004,
        ge=0,
        le=65535,
        validation_alias="CLD_SUBMISSION_PORT",
        description="HTTP port (API, /metrics, /health).",
    )
    group_id: str = Field(default="cld-submission", description="Kafka consumer group of the record consumer.")
    state_dir: Path = Field(
        default=Path(".run/submission"),
        validation_alias="CLD_SUBMISSION_STATE_DIR",
        description="Directory of the record state, submissions, files and the audit log.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="CLD_SUBMISSION_DATABASE_URL",
        description="postgresql://... to keep the record state and submissions in PostgreSQL, shared by any number "
        "of instances (migrated at start); unset: SQLite files in the state directory (one instance).",
        repr=False,
    )
    transport: Literal["mesh", "file"] = Field(
        default="file",
        validation_alias="CLD_SUBMISSION_TRANSPORT",
        description="How approved files leave: 'mesh' (settings CLD_MESH_*) or 'file' (export directory).",
    )
    export_dir: Path | None = Field(
        default=None,
        validation_alias="CLD_SUBMISSION_EXPORT_DIR",
        description="Export directory of the file transport (default: <state_dir>/export).",
    )
    ack_timeout_seconds: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        validation_alias="CLD_SUBMISSION_ACK_TIMEOUT_SECONDS",
        description="A sent message not acknowledged within this time is marked failed (MESH keeps 5 days).",
    )
    ack_poll_seconds: float = Field(
        default=60.0,
        gt=0,
        validation_alias="CLD_SUBMISSION_ACK_POLL_SECONDS",
        description="How often the delivery status of a sent message is polled.",
    )
    gauge_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often deadline gauges are refreshed and the outbox retried."
    )
    deadline_months_after_quarter_end: int = Field(
        default=1, ge=0, le=12, description="Deadline rule: last day of the month N months after quarter end."
    )
    deadline_dates: tuple[date, ...] = Field(
        default=(), description="Explicit deadlines (ISO dates); replace the rule when given."
    )
    la_codes: tuple[str, ...] = Field(
        default=(), description="LAs served (deadline gauges are reported for these even before any data)."
    )
    partial_rows_drop: float = Field(default=0.20, ge=0, le=1, description="Partial-file warning: rows drop share.")
    partial_people_drop: float = Field(default=0.20, ge=0, le=1, description="Partial-file warning: people drop share.")
    partial_months_drop: int = Field(default=1, ge=0, description="Partial-file warning: fewer months with events.")

    def workflow_settings(self) -> WorkflowSettings:
        return WorkflowSettings(
            state_dir=self.state_dir,
            ack_timeout=timedelta(seconds=self.ack_timeout_seconds),
            ack_poll_interval=self.ack_poll_seconds,
            deadline_rule=DeadlineRule(
                months_after_quarter_end=self.deadline_months_after_quarter_end, dates=self.deadline_dates
            ),
            partial=PartialThresholds(
                rows_drop=self.partial_rows_drop,
                people_drop=self.partial_people_drop,
                months_drop=self.partial_months_drop,
            ),
            la_codes=self.la_codes,
        )


# -- API models ---------------------------------------------------------------------------------------


class RequestSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    la_code: str = Field(pattern=r"^\d{3}$", description="The LA's 3-digit code.")
    period_start: date
    period_end: date
    requested_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who asks. Optional: the authenticated operator; when given it must be their name (403 "
        "otherwise). Required in open tenancy mode.",
    )


class ApproveSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The approver. Optional: the authenticated operator; when given it must be their name (403 "
        "otherwise). Required in open tenancy mode.",
    )
    accept_errors: bool = Field(default=False, description="Send although dataset checks found errors.")


class RequestExport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Recipient id in the sharing policy (not nhs-england)."
    )
    form: Form | None = Field(
        default=None, description="Default: the recipient's form (pseudonymised unless the policy says otherwise)."
    )


class RequestAnswer(BaseModel):
    submission: Submission
    created: bool = Field(description="False when the same LA, period and content was requested before.")


class StateAnswer(BaseModel):
    la_code: str
    period_start: date
    period_end: date
    in_scope: int


class SubmissionDetail(BaseModel):
    submission: Submission
    summary: DQSummary


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

        return MeshTransport(MeshSettings(), on_retry=on_retry)  # fields from CLD_MESH_*
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
    state, repo = _open_storage(settings.state_dir, settings.database_url)
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
        await submissions_out.publish(
            event.model_dump(mode="json"),
            key=event.la_code.encode(),
            headers={"cld-submission-id": event.submission_id},
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
    deadletters = DeadLetterPublisher(
        broker,
        topic=settings.topic(topics.DEADLETTER),
        service=SERVICE,
        registry=registry,
        fingerprint_key=settings.deadletter_fingerprint_key(),
    )

    accounting = ConsumerAccounting(registry, service=SERVICE, topics=[topics.VALIDATED, topics.PSEUDONYMISED])

    async def dead_letter(msg: RawMessage, reason: DeadLetterReason, detail: str) -> None:
        log.warning(
            "dead letter",
            extra={"reason": reason.value, "topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
        )
        await deadletters.publish(
            dead_letter_for(
                reason=reason,
                detail=detail,
                payload=msg.value,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                service=SERVICE,
                at=datetime.now(UTC),
                fingerprint_key=deadletters.fingerprint_key,
            )
        )

    async def decode(msg: RawMessage, model: type[_Event]) -> _Event | None:
        """The event in ``msg``, or None after dead-lettering it: a message that cannot be read never stalls
        the partition (the subscribers decode nothing themselves: ``cld_runtime.messages.undecoded``)."""
        if (problem := msg.header_problem()) is not None:
            await dead_letter(msg, problem.reason, problem.detail)
            return None
        try:
            return model.model_validate_json(msg.value or b"")
        except ValidationError as exc:
            reason = unreadable_reason(msg.value, exc)
            detail = f"not a {model.__name__} event ({exc.error_count()} error(s))"
        except Exception as exc:  # an unforeseen input must not stall the partition either
            log.exception(
                "reading failed", extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
            )
            reason, detail = DeadLetterReason.PROCESSING_ERROR, f"reading failed ({type(exc).__name__})"
        await dead_letter(msg, reason, detail)
        return None

    async def read(msg: RawMessage) -> Incoming | None:
        event = await decode(msg, RecordValidated)
        return None if event is None else Incoming(event, msg.topic, msg.partition, msg.offset)

    async def read_pseudonymised(msg: RawMessage) -> RecordPseudonymised | None:
        return await decode(msg, RecordPseudonymised)

    @broker.subscriber(
        settings.topic(topics.VALIDATED),
        group_id=settings.group_id,
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_parser,
        decoder=undecoded,
        title=f"{topics.VALIDATED}:submission",
        description="Validated records into the per-LA submission state (latest version per record).",
    )
    async def on_records_validated(message: KafkaMessage) -> None:
        # A record that is readable but cannot be stored (e.g. the state cannot key it) is dead-lettered after
        # the batch is split (``workflow.store_or_split``); a transient error (database locked, disk I/O)
        # raises, so the batch is redelivered.
        async def not_stored(msg: RawMessage, exc: Exception) -> None:
            await dead_letter(msg, DeadLetterReason.PROCESSING_ERROR, f"storing failed ({type(exc).__name__})")

        consumed = raw_messages(message)
        pairs = [(m, i) for m in consumed if (i := await read(m)) is not None]
        stored = len(pairs)
        if pairs:
            stored -= len(await workflow.on_records_or_split(pairs, not_stored))
        accounting.batch(topics.VALIDATED, {Outcome.STORED: stored, Outcome.DEADLETTERED: len(consumed) - stored})

    @broker.subscriber(
        settings.topic(topics.PSEUDONYMISED),
        group_id=f"{settings.group_id}-pseudonymised",
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_parser,
        decoder=undecoded,
        title=f"{topics.PSEUDONYMISED}:submission",
        description=(
            "Pseudonymised records (by LA, source, event id and purpose) for exports to recipients other than "
            "NHS England."
        ),
    )
    async def on_records_pseudonymised(message: KafkaMessage) -> None:
        async def not_stored(msg: RawMessage, exc: Exception) -> None:  # as in on_records_validated
            await dead_letter(msg, DeadLetterReason.PROCESSING_ERROR, f"storing failed ({type(exc).__name__})")

        consumed = raw_messages(message)
        pairs = [(m, i) for m in consumed if (i := await read_pseudonymised(m)) is not None]
        stored = len(pairs)
        if pairs:
            stored -= len(await workflow.on_pseudonymised_or_split(pairs, not_stored))
        accounting.batch(topics.PSEUDONYMISED, {Outcome.STORED: stored, Outcome.DEADLETTERED: len(consumed) - stored})

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
    _routes(app, workflow, broker, settings, tenants)
    return app


def _open_storage(state_dir: Path, database_url: str | None = None) -> tuple[RecordStore, SubmissionsRepository]:
    """The record state and the submissions repository (SQLite in ``state_dir``, or PostgreSQL at
    ``database_url``: ``engines``), or one clear error (read-only, permission, full; a database not reachable)."""
    try:
        private_dir(state_dir)
        state = open_record_store(state_dir, database_url)
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailableError(state_dir, folder_problem(state_dir) or fault_cause(exc)) from None
    except Exception as exc:
        raise database_problem(database_url, exc) from None
    try:
        repo = open_repository(state_dir, database_url)
    except (sqlite3.Error, OSError) as exc:
        state.close()
        raise StorageUnavailableError(state_dir, folder_problem(state_dir) or fault_cause(exc)) from None
    except Exception as exc:
        state.close()
        raise database_problem(database_url, exc) from None
    return state, repo


def _bearer_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (None for none or another scheme)."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _caller(request: Request) -> Operator:
    """The authenticated operator (401 without a valid key; the open operator in open mode)."""
    tenants: Registry = request.app.state.tenants
    operator = authenticate_operator(tenants, _bearer_key(request))
    if operator is None:
        raise HTTPException(
            status_code=401,
            detail="unknown_operator: send a valid operator key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="cld-submission"'},
        )
    return operator


Caller = Annotated[Operator, Depends(_caller)]


def _routes(
    app: FastAPI, wf: SubmissionWorkflow, broker: KafkaBroker, settings: SubmissionSettings, tenants: Registry
) -> None:
    def refused(exc: TransitionRefusedError) -> HTTPException:
        return HTTPException(status_code=409, detail=str(exc))

    def not_found(submission_id: str) -> HTTPException:
        return HTTPException(status_code=404, detail="no such submission")

    def guard(op: Operator, la_code: str, action: OperatorAction, submission_id: str | None = None) -> None:
        decision = authorise_operator(op, la_code, action)
        if not decision.allowed:
            reason = decision.reason.value if decision.reason else "refused"
            wf.audit_denied(
                operator=op.name, action=action.value, la_code=la_code, reason=reason, submission_id=submission_id
            )
            raise HTTPException(status_code=decision.http_status, detail=f"{reason}: {decision.detail}")

    def acting_as(op: Operator, named: str | None, role: str) -> str:
        """The name recorded as requester/approver: the authenticated operator (``named`` must agree)."""
        if tenants.open_mode:
            if not named:
                raise HTTPException(status_code=422, detail=f"open tenancy mode: name the {role} in the body")
            return named
        if named is not None and named != op.name:
            raise HTTPException(
                status_code=403,
                detail=f"operator_mismatch: the {role} is the authenticated operator {op.name!r}, "
                "not the name given in the body",
            )
        return op.name

    def load(submission_id: str, op: Operator, action: OperatorAction) -> Submission:
        try:
            sub = wf.get(submission_id)
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None
        guard(op, sub.la_code, action, submission_id)
        return sub

    @app.post("/v1/submissions", status_code=201, response_model=RequestAnswer)
    async def request_submission(body: RequestSubmission, response: Response, op: Caller) -> RequestAnswer:
        guard(op, body.la_code, OperatorAction.REQUEST_SUBMISSION)
        who = acting_as(op, body.requested_by, "requester")
        try:
            sub, created = await wf.request(
                la_code=body.la_code,
                period_start=body.period_start,
                period_end=body.period_end,
                requested_by=who,
            )
        except PeriodError as exc:
            raise HTTPException(status_code=422, detail=f"period: {exc}") from None
        except TransitionRefusedError as exc:
            raise refused(exc) from None
        if not created:
            response.status_code = 200
        return RequestAnswer(submission=sub, created=created)

    @app.get("/v1/submissions", response_model=list[Submission])
    async def history(op: Caller, la: Annotated[str | None, Query(pattern=r"^\d{3}$")] = None) -> list[Submission]:
        """Submissions, oldest first: of one LA (403 when out of the operator's scope) or of every LA the
        operator sees."""
        if la is not None:
            guard(op, la, OperatorAction.VIEW)
            return wf.history(la)
        return [s for s in wf.history(None) if sees_la(op, s.la_code)]

    @app.get("/v1/submissions/{submission_id}", response_model=SubmissionDetail)
    async def show(submission_id: str, op: Caller) -> SubmissionDetail:
        sub = load(submission_id, op, OperatorAction.VIEW)
        try:
            return SubmissionDetail(submission=sub, summary=wf.summary(submission_id))
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None

    @app.get(
        "/v1/submissions/{submission_id}/report",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}, "description": "The DQ report page (self-contained)."}},
    )
    async def report(submission_id: str, op: Caller) -> HTMLResponse:
        """The submission's DQ report as one self-contained HTML page (the page of ``cld validate --html``):
        every failed field of its rows with the row as Excel shows it and the rule, its dataset checks and the
        held records left out of the period. No value of a personal field; no script, no external URL."""
        load(submission_id, op, OperatorAction.VIEW)
        try:
            page = await asyncio.to_thread(wf.report_page, submission_id)
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/v1/submissions/{submission_id}/status", response_model=Submission)
    async def status(submission_id: str, op: Caller) -> Submission:
        """The submission's state; while it is being delivered, also the last transport error and the next
        retry (``delivery_problem``), so an outage of MESH shows here, not only in the log."""
        return wf.with_delivery(load(submission_id, op, OperatorAction.VIEW))

    @app.post("/v1/submissions/{submission_id}/approve", response_model=Submission)
    async def approve(submission_id: str, body: ApproveSubmission, op: Caller) -> Submission:
        load(submission_id, op, OperatorAction.APPROVE_SUBMISSION)
        who = acting_as(op, body.by, "approver")
        try:
            return await wf.approve(submission_id, by=who, accept_errors=body.accept_errors)
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None
        except TransitionRefusedError as exc:
            raise refused(exc) from None

    @app.post("/v1/submissions/{submission_id}/exports")
    async def export(submission_id: str, body: RequestExport, op: Caller) -> FileResponse:
        """Export this submission's rows to a recipient other than NHS England, as the sharing policy allows:
        403 (audited) without a legal basis; opt-out/objection-flagged rows left out; pseudonymised by default.
        The answer is the file (CSV); headers carry the export id, SHA-256, form and counts."""
        load(submission_id, op, OperatorAction.EXPORT)
        try:  # the exporter is the authenticated operator ('open' in open mode)
            result = await wf.export(submission_id, recipient_id=body.recipient, requested_by=op.name, form=body.form)
        except ExportRefusedError as exc:
            raise HTTPException(status_code=403, detail=f"{exc.reason}: {exc.detail}") from None
        except ExportUnavailableError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except NotAnExportRecipientError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return FileResponse(
            result.path,
            media_type="text/csv; charset=utf-8",
            filename=result.file_name,
            headers={
                "X-Export-Id": result.export_id,
                "X-Content-SHA256": result.file_sha256,
                "X-Export-Form": result.form.value,
                "X-Export-Recipient": result.recipient_id,
                "X-Records-Considered": str(result.records_considered),
                "X-Records-Included": str(result.records_included),
                "X-Records-Excluded-Opt-Out": str(result.records_excluded_opt_out),
            },
            background=BackgroundTask(result.path.unlink, missing_ok=True),
        )

    @app.get("/v1/state/{la_code}", response_model=StateAnswer)
    async def state(la_code: str, period_start: date, period_end: date, op: Caller) -> StateAnswer:
        """How many records of the LA are in scope for a period now (no record values)."""
        if not la_code.isascii() or not la_code.isdigit() or len(la_code) != 3:
            raise HTTPException(status_code=422, detail="the LA code is 3 digits")
        guard(op, la_code, OperatorAction.VIEW)
        if period_end < period_start:
            raise HTTPException(status_code=422, detail="period_end is before period_start")
        n = await asyncio.to_thread(wf.state.count_in_scope, la_code, period_start, period_end)
        return StateAnswer(la_code=la_code, period_start=period_start, period_end=period_end, in_scope=n)

    @app.get("/v1/submissions/{submission_id}/file")
    async def file(submission_id: str, op: Caller) -> FileResponse:
        sub = load(submission_id, op, OperatorAction.VIEW)
        path = wf.file_path(sub)
        if not path.exists():
            raise HTTPException(status_code=410, detail="the file of this submission is no longer kept")
        return FileResponse(
            path,
            media_type="text/csv; charset=utf-8",
            filename=sub.file_name or path.name,
            headers={"X-Content-SHA256": sub.file_sha256 or ""},
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = metrics_body(app.state.registry)
        return Response(body, media_type=content_type)


def run(settings: SubmissionSettings | None = None) -> None:  # pragma: no cover - process entry point
    import uvicorn

    settings = settings or SubmissionSettings()
    app = create_app(settings)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None)
