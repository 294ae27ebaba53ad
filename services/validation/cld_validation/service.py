"""The validation service process: raw events -> ``RecordValidated`` (or a dead letter), nothing else.

Composition root: :func:`create_app`. The handler is a few lines; the work is in ``intake.read_message``
(reading the message) and ``columnar.validate_records`` (the DQ rules: each Kafka batch's readable records are
validated as one polars frame per release, by the spec compiled once; a single record is a one-row batch).
Records are consumed in batches and the
batch's offsets are committed only after every output has been acknowledged by the broker (at-least-once:
a crash re-delivers, never loses). A message that cannot be processed goes to the dead-letter topic and
the partition moves on: a poison message never stalls it.

The conversion at this hop (``cld.events.raw.v1`` -> ``cld.records.validated.v1``): each raw record's bytes are
decoded once (``intake.read_message``: one JSON parse, the record model only for an unusual value), the rules run
over that dict, and the ``RecordValidated`` model is built from it without validating again
(``RecordValidated.trusted``) and serialised once by its own serializer. The consumer plumbing (batches,
dead letters, confirm-then-commit, accounting) is ``cld_runtime.consumer``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field

from cld_governance.tenancy import Registry
from cld_runtime import (
    ConsumerLagMonitor,
    Settings,
    configure_logging,
    ensure_topics,
    make_asgi_app,
    make_broker,
)
from cld_runtime.broker import BatchPublisher
from cld_runtime.consumer import ConsumedBatch, Consumer
from cld_runtime.messages import RawMessage
from cld_schemas import topics
from cld_schemas.contract import HEADER_OPT_OUT
from cld_schemas.events import DeadLetterReason, Finding, Provenance, RecordValidated
from cld_schemas.spec import Release
from cld_validation.columnar import validate_records
from cld_validation.findings import FieldFinding
from cld_validation.intake import Intake, Rejected, read_message
from cld_validation.release import ReleaseChoice, parse_release, select_release

SERVICE = "validation"


class ValidationSettings(Settings):
    service_name: str = Field(default=SERVICE, description="Service name in logs, metrics and client ids.")
    http_port: int = Field(
        default=8002,
        ge=0,
        le=65535,
        validation_alias="CLD_VALIDATION_PORT",
        description="HTTP port (/metrics, /health).",
    )
    group_id: str = Field(default="cld-validation", description="Kafka consumer group shared by all instances.")
    release: Release | None = Field(
        default=None,
        description="A release to check every record against (r1/r2). Unset: the release in force for each "
        "record's reporting period (the spec's cut-over data), unless the source (tenants registry) or the "
        "upload (cld-release header) says otherwise.",
    )
    received_at_max_future_seconds: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Clock skew allowed for a cld-received-at header ahead of this service's clock; a later time is not "
            "trusted (the broker timestamp, else now, is used instead)."
        ),
    )
    received_at_max_age_days: float = Field(
        default=732.0,
        gt=0,
        description="A cld-received-at older than this is not trusted either (the broker timestamp, else now).",
    )
    max_message_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Raw messages larger than this go to the dead-letter topic (too_large).",
    )


class ValidationMetrics:
    """Domain metrics of docs/TEAM.md's contract, on the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "cld_records_received_total",
            "Records received, by LA and channel.",
            ["la_code", "channel"],
            registry=registry,
        )
        self.validated = Counter(
            "cld_records_validated_total",
            "Records validated, by LA and outcome.",
            ["la_code", "outcome"],
            registry=registry,
        )
        self.findings = Counter(
            "cld_findings_total",
            "DQ findings, by LA, field (spec header) and rule.",
            ["la_code", "field", "rule"],
            registry=registry,
        )
        self.newest = Gauge(
            "cld_newest_record_timestamp_seconds",
            "When the newest record of the LA was received (Unix time).",
            ["la_code"],
            registry=registry,
        )
        self._newest: dict[str, float] = {}

        # Label children cached per label values: prometheus_client's labels() costs a lock and a few µs each.
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Counter, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, event: Validated, *, channel: str) -> None:
        la = event.la_code
        if channel == "kafka":  # http and csv records were counted by the ingest service
            self._child(self.received, la, channel).inc()
        # Never past now (issue 10, finding 9): the gauge only rises, so one time in the future would hide
        # every later silence from the freshness alert. (read_message already bounds received-at times.)
        at = min(event.received_at.timestamp(), time.time())
        if at > self._newest.get(la, 0.0):
            self._newest[la] = at
            self.newest.labels(la).set(at)
        if event.withdrawn:
            return
        self._child(self.validated, la, "failed" if event.failed else "passed").inc()
        for f in event.findings:
            self._child(self.findings, la, f.header, f.rule).inc()


@dataclass(frozen=True, slots=True)
class Validated:
    """A ``RecordValidated`` event as its wire bytes, with what the metrics and headers need."""

    la_code: str
    event_id: str
    source: str
    opt_outs: tuple[str, ...]
    received_at: datetime
    withdrawn: bool
    failed: bool
    findings: Sequence[FieldFinding]
    body: bytes


def findings_of(intake: Intake, *, release: Release) -> Sequence[FieldFinding]:
    """The DQ rules over one readable record alone (a one-row batch; the handler validates whole batches). A
    withdrawal carries no findings: it only names the record."""
    return () if intake.withdrawn else validate_records([intake.record], [release])[0]


def validated_event(
    intake: Intake, msg: RawMessage, *, release: Release, now: datetime, found: Sequence[FieldFinding] | None = None
) -> RecordValidated:
    """One readable record and its findings (default: :func:`findings_of`) as the ``RecordValidated`` event.

    Every value is already of the model's type (the intake read the record once, the rules return the spec's
    enums), so the event is built without validating it again (``RecordValidated.trusted``, about 20 µs a
    record less than ``model_construct``)."""
    if found is None:
        found = findings_of(intake, release=release)
    return RecordValidated.trusted(
        la_code=intake.la_code,
        release=release,
        provenance=Provenance.trusted(
            source=intake.source,
            event_id=intake.event_id,
            received_at=intake.received_at,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            opt_outs=list(intake.opt_outs),
        ),
        record=intake.record,
        findings=[
            Finding.trusted(
                field=f.header, status=f.status, validity=f.validity, rule=f.rule, message=f.message, fix=f.fix
            )
            for f in found
        ],
        failed=any(f.validity.failed for f in found),
        withdrawn=intake.withdrawn,
        validated_at=now,
    )


def validated_message(
    intake: Intake,
    msg: RawMessage,
    *,
    release: Release,
    now: datetime,
    findings: Sequence[FieldFinding] | None = None,
) -> Validated:
    """:func:`validated_event` as its wire bytes, with what the metrics and headers need. ``findings``: the
    record's, from its batch (``columnar.validate_records``); None: the record is validated alone."""
    found = () if intake.withdrawn else findings if findings is not None else findings_of(intake, release=release)
    event = validated_event(intake, msg, release=release, now=now, found=found)
    return Validated(
        la_code=intake.la_code,
        event_id=intake.event_id,
        source=intake.source,
        opt_outs=intake.opt_outs,
        received_at=intake.received_at,
        withdrawn=intake.withdrawn,
        failed=event.failed,
        findings=found,
        body=event.wire_json(),
    )


class RawEventsHandler:
    """Turns a batch of raw messages into validated events and dead letters, confirmed before commit."""

    def __init__(
        self,
        *,
        settings: ValidationSettings,
        validated: BatchPublisher,
        metrics: ValidationMetrics,
        log: logging.Logger,
        tenants: Registry,
    ) -> None:
        self.settings = settings
        self._max_future = timedelta(seconds=settings.received_at_max_future_seconds)
        self._max_age = timedelta(days=settings.received_at_max_age_days)
        self.tenants = tenants
        self.source_releases = {s.id: s.release for s in tenants.sources if s.release is not None}
        """Sources with a configured release (the registry is fixed for the process's life)."""
        self.validated = validated
        self.metrics = metrics
        self.log = log

    async def handle(self, batch: ConsumedBatch) -> None:
        read: list[tuple[RawMessage, datetime, Intake | Rejected, Release | None, str]] = []
        for msg in batch.messages:  # read each message (and choose its release) first: the rules run once per batch
            now = datetime.now(UTC)
            channel = "kafka"
            release: Release | None = None
            intake: Intake | Rejected
            try:
                intake = read_message(
                    msg,
                    max_bytes=self.settings.max_message_bytes,
                    tenants=self.tenants,
                    now=now,
                    max_future=self._max_future,
                    max_age=self._max_age,
                )
                if not isinstance(intake, Rejected):
                    channel = intake.channel
                    release = self.release_for(intake, msg).release
            except Exception as exc:  # a bug or an unforeseen input must not stall the partition
                intake = self._failed(msg, exc)
            read.append((msg, now, intake, release, channel))
        found = self._validate(read)
        for (msg, now, intake, release, channel), findings in zip(read, found, strict=True):
            outcome: Validated | Rejected
            if isinstance(intake, Rejected):
                outcome = intake
            elif release is None:  # pragma: no cover - a readable record always has a release
                outcome = Rejected(DeadLetterReason.PROCESSING_ERROR, "processing failed (no release)")
            elif isinstance(findings, Rejected):
                outcome = findings
            else:
                try:
                    outcome = validated_message(intake, msg, release=release, now=now, findings=findings)
                except Exception as exc:
                    outcome = self._failed(msg, exc)
            if isinstance(outcome, Rejected):
                await batch.dead_letter(msg, outcome.reason, outcome.detail)
                continue
            self.metrics.observe(outcome, channel=channel)
            headers = {topics.HEADER_EVENT_ID: outcome.event_id, topics.HEADER_SOURCE: outcome.source}
            if outcome.opt_outs:  # also in the body; the header serves RecordMeta.from_headers readers
                headers[HEADER_OPT_OUT] = ",".join(outcome.opt_outs)
            await batch.forward(self.validated, outcome.body, key=outcome.la_code.encode(), headers=headers)

    def _failed(self, msg: RawMessage, exc: Exception) -> Rejected:
        self.log.exception(
            "processing failed", extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
        )
        return Rejected(DeadLetterReason.PROCESSING_ERROR, f"processing failed ({type(exc).__name__})")

    def _validate(
        self, read: Sequence[tuple[RawMessage, datetime, Intake | Rejected, Release | None, str]]
    ) -> list[tuple[FieldFinding, ...] | Rejected]:
        """The DQ rules over the batch's readable, not withdrawn records: one frame per release. Should the batch
        fail (a bug), each record is tried alone, so only the record that fails goes to the dead letters."""
        todo: list[tuple[int, dict[str, str | None], Release]] = []
        for i, (_msg, _now, intake, release, _channel) in enumerate(read):
            if isinstance(intake, Intake) and not intake.withdrawn and release is not None:
                todo.append((i, intake.record, release))
        out: list[tuple[FieldFinding, ...] | Rejected] = [()] * len(read)
        if not todo:
            return out
        try:
            found = validate_records([r for _i, r, _rel in todo], [rel for _i, _r, rel in todo])
        except Exception:
            self.log.exception("batch validation failed: validating its records one by one")
            for i, record, rel in todo:
                try:
                    out[i] = validate_records([record], [rel])[0]
                except Exception as exc:
                    out[i] = self._failed(read[i][0], exc)
            return out
        for (i, _r, _rel), findings in zip(todo, found, strict=True):
            out[i] = findings
        return out

    def release_for(self, intake: Intake, msg: RawMessage) -> ReleaseChoice:
        """The release this record is checked against: upload header, source, setting, else its period."""
        header = msg.header(topics.HEADER_RELEASE)
        upload = parse_release(header)
        if header is not None and upload is None:
            # Not a reason to lose the record: it is checked by its period, and the operator is told.
            self.log.warning(
                "cld-release header is not r1 or r2: ignored",
                extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
            )
        return select_release(
            intake.record,
            upload=upload,
            source=self.source_releases.get(intake.source),
            configured=self.settings.release,
        )


def create_app(settings: ValidationSettings, *, tenants: Registry | None = None) -> AsgiFastStream:
    """Composition root of the validation process. ``tenants``: the tenants registry (default: from settings,
    ``CLD_TENANTS_FILE``; refuses to start without one unless ``CLD_TENANCY_MODE=open``)."""
    log = configure_logging(service=SERVICE, level=settings.log_level)
    tenants = tenants if tenants is not None else settings.registry()
    if tenants.open_mode:
        log.warning(
            "TENANCY OPEN MODE: records from any source are accepted for any LA. Synthetic data only.",
            extra={"tenancy_mode": "open"},
        )
    registry = CollectorRegistry()
    broker: KafkaBroker = make_broker(settings, registry=registry)
    validated = broker.publisher(
        settings.topic(topics.VALIDATED),
        schema=RecordValidated,
        title=topics.VALIDATED,
        description="Every readable record with its DQ findings. Key: the LA code.",
    )
    handler = RawEventsHandler(
        settings=settings,
        validated=BatchPublisher(broker, validated, topic=settings.topic(topics.VALIDATED)),
        metrics=ValidationMetrics(registry),
        log=log,
        tenants=tenants,
    )
    Consumer.create(broker, settings, registry=registry, consumed=[topics.RAW], log=log).subscribe(
        topics.RAW,
        group_id=settings.group_id,
        handler=handler.handle,
        title=f"{topics.RAW}:validation",
        description=(
            "Raw CLD events from source systems. Key: LA code. Value: one JSON object of spec fields by "
            "snake_case name. Headers: cld-source, cld-event-id, cld-action (upsert|withdraw)."
        ),
    )

    async def create_topics() -> None:
        await ensure_topics(settings, [settings.topic(t) for t in (topics.RAW, topics.VALIDATED, topics.DEADLETTER)])

    lag = ConsumerLagMonitor(settings, group=settings.group_id, topics=[settings.topic(topics.RAW)], registry=registry)
    lag.watch(broker)  # refresh right after each processed batch, not only every interval
    app = make_asgi_app(
        broker,
        settings=settings,
        registry=registry,
        on_startup=[create_topics],
        after_startup=[lag.start],
        on_shutdown=[lag.stop],
    )
    app.context.set_global("registry", registry)
    return app
