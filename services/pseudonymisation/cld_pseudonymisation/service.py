"""The pseudonymisation-preview service process: ``RecordValidated`` -> ``RecordPseudonymised`` + risk gauges.

Composition root: :func:`create_app`. The domain (``Pseudonymiser``, ``RiskAccumulator``) does the work;
each Kafka batch is one frame per tenant (``Pseudonymiser.pseudonymise_frame``: expressions, HMAC once per
distinct value), its risk rows reduced to one per person by group-by before the accumulators are updated; a
batch the frame cannot hold is redone record by record (one-row frames) so only a bad record is dead-lettered.
This module only wires Kafka, metrics and one read-only HTTP route (``GET /v1/risk``, for operators with an
operator key of the tenants registry, scoped to their LAs as in the submission API). Tenant = the record's
LA code (pseudonyms differ per LA), purpose from settings. One risk accumulator per (LA, reporting period), where
only the collection's periods count as periods of their own and everything else is ``other`` (``periods.py``).

The conversion at this hop (``cld.records.validated.v1`` -> ``cld.records.pseudonymised.v1``): each message is
validated once into ``RecordValidated`` (``cld_runtime.consumer.ConsumedBatch.decode``; dead-lettered if it
cannot be), its record pseudonymised, and the ``RecordPseudonymised`` model built from the validated event's own
provenance without validating again (``RecordPseudonymised.trusted``) and serialised once.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

import polars as pl
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Scope
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import AliasChoices, Field, SecretStr

from cld_governance.tenancy import (
    Operator,
    OperatorAction,
    Registry,
    authenticate_operator,
    authorise_operator,
    sees_la,
)
from cld_pseudonymisation.columnar import AT, PERSON, latest_per_person, person_rows
from cld_pseudonymisation.generalise import PostcodeLookup, parse_date
from cld_pseudonymisation.keys import PseudonymKey, PseudonymKeyError
from cld_pseudonymisation.periods import period_label
from cld_pseudonymisation.policy import Policy, load_policy
from cld_pseudonymisation.pseudonymiser import Pseudonymiser
from cld_pseudonymisation.risk import DEFAULT_K_THRESHOLD, DEFAULT_QI, RiskAccumulator
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
from cld_runtime.http import json_response
from cld_runtime.messages import RawMessage
from cld_schemas import topics
from cld_schemas.events import DeadLetterReason, RecordPseudonymised, RecordValidated

SERVICE: Final = "pseudonymisation"
MAX_ACCUMULATORS: Final = 2000
"""(LA, period) pairs tracked at most: bounds memory and metric label sets (about 153 LAs x a few periods)."""


class PseudonymisationSettings(Settings):
    service_name: str = Field(default=SERVICE, description="Service name in logs, metrics and client ids.")
    http_port: int = Field(
        default=8003,
        ge=0,
        le=65535,
        validation_alias="CLD_PSEUDONYMISATION_PORT",
        description="HTTP port (/metrics, /health, /v1/risk).",
    )
    group_id: str = Field(default="cld-pseudonymisation", description="Kafka consumer group shared by all instances.")
    purpose: str = Field(
        default="nhs-england-preview", description="Purpose (recipient) of the pseudonyms: they differ per purpose."
    )
    pseudo_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CLD_PSEUDO_KEY"),
        description="Pseudonymisation key as hex or base64 text (>= 32 bytes). Prefer pseudo_key_file.",
    )
    pseudo_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CLD_PSEUDO_KEY_FILE"),
        description="File holding the pseudonymisation key (hex or base64 text).",
    )
    pseudo_key_id: str | None = Field(
        default=None, description="Public id of the key for rotation (default: derived from the key)."
    )
    policy_file: Path | None = Field(
        default=None, description="Pseudonymisation policy JSON (default: the shipped one)."
    )
    postcode_lookup_file: Path | None = Field(
        default=None, description="Postcode -> LSOA/MSOA lookup file (optional; without it lsoa/msoa are blank)."
    )
    risk_k_threshold: int = Field(
        default=DEFAULT_K_THRESHOLD, ge=2, description="k below which people count as at risk."
    )
    risk_qi: tuple[str, ...] = Field(default=DEFAULT_QI, description="Quasi-identifiers for the risk figures.")

    def load_key(self) -> PseudonymKey:
        """The pseudonymisation key; raises PseudonymKeyError naming the setting (never key material)."""
        setting = "CLD_PSEUDO_KEY_FILE" if self.pseudo_key_file is not None else "CLD_PSEUDO_KEY"
        try:
            if self.pseudo_key_file is not None:
                return PseudonymKey.from_file(self.pseudo_key_file, key_id=self.pseudo_key_id)
            if self.pseudo_key is not None:
                return PseudonymKey.from_text(self.pseudo_key.get_secret_value(), key_id=self.pseudo_key_id)
        except PseudonymKeyError as exc:
            named = "CLD_PSEUDO_KEY_ID" if "key id" in str(exc) else setting
            raise PseudonymKeyError(f"{named}: {exc}") from None
        raise ValueError("no pseudonymisation key: set CLD_PSEUDO_KEY_FILE (or CLD_PSEUDO_KEY)")


@dataclass
class RiskBook:
    """One accumulator per (LA, reporting period), and the gauges that mirror them."""

    qi: tuple[str, ...]
    k_threshold: int
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.accumulators: dict[tuple[str, str], RiskAccumulator] = {}
        labels = ["la_code", "period"]
        self.min_k = Gauge("cld_risk_min_k", "Smallest equivalence class (people).", labels, registry=self.registry)
        self.unique_ratio = Gauge(
            "cld_risk_unique_records_ratio", "Share of people unique on the QIs.", labels, registry=self.registry
        )
        self.max_prosecutor = Gauge(
            "cld_risk_max_prosecutor",
            "Highest prosecutor re-identification risk (1/min k).",
            labels,
            registry=self.registry,
        )

    def add_frame(self, la_code: str, period: str, pseudonymised: pl.DataFrame) -> tuple[str, str] | None:
        """A frame of pseudonymised records of one LA and period: reduced to each person's latest row by
        group-by, then one accumulator update per person (the same state as ``add`` of each row in order)."""
        key = (la_code, period)
        acc = self.accumulators.get(key)
        if acc is None:
            if len(self.accumulators) >= MAX_ACCUMULATORS:
                return None
            acc = self.accumulators[key] = RiskAccumulator(self.qi, k_threshold=self.k_threshold)
        rows = person_rows(pseudonymised, acc.qi)
        with_person = rows.filter(pl.col(PERSON).is_not_null())
        latest = latest_per_person(with_person)
        qis = zip(*(latest[q].to_list() for q in acc.qi), strict=True)
        acc.add_people(
            zip(latest[PERSON].to_list(), qis, latest[AT].to_list(), strict=True),
            rows=rows.height,
            rows_without_person=rows.height - with_person.height,
        )
        return key

    def publish(self, keys: set[tuple[str, str]]) -> None:
        for la, period in keys:
            s = self.accumulators[(la, period)].summary()
            self.min_k.labels(la, period).set(s.min_k)
            self.unique_ratio.labels(la, period).set(s.unique_share)
            self.max_prosecutor.labels(la, period).set(s.max_prosecutor_risk)


class Pseudonymisers:
    """One ``Pseudonymiser`` per tenant (LA code), built on first use."""

    def __init__(self, policy: Policy, key: PseudonymKey, *, purpose: str, lookup: PostcodeLookup | None) -> None:
        self.policy, self.key, self.purpose, self.lookup = policy, key, purpose, lookup
        self._by_tenant: dict[str, Pseudonymiser] = {}

    def for_tenant(self, la_code: str) -> Pseudonymiser:
        p = self._by_tenant.get(la_code)
        if p is None:
            p = self._by_tenant[la_code] = Pseudonymiser(
                self.policy, self.key, tenant=la_code, purpose=self.purpose, lookup=self.lookup
            )
        return p


class ValidatedRecordsHandler:
    def __init__(
        self,
        *,
        pseudonymisers: Pseudonymisers,
        risk: RiskBook,
        publisher: BatchPublisher,
        log: logging.Logger,
        registry: CollectorRegistry,
    ) -> None:
        self.pseudonymisers = pseudonymisers
        self.risk = risk
        self.publisher = publisher
        self.log = log
        self.count = Counter(
            "cld_records_pseudonymised_total", "Records pseudonymised, by LA.", ["la_code"], registry=registry
        )

        self._counted: dict[str, Any] = {}  # label children by LA: prometheus_client's labels() costs µs
        self._touched: set[tuple[str, str]] = set()

    def pseudonymise(self, event: RecordValidated, *, now: datetime) -> RecordPseudonymised:
        """The pseudonymised event of one validated event."""
        record = self.pseudonymisers.for_tenant(event.la_code).pseudonymise(event.record)
        return self.pseudonymised_event(event, record, now=now)

    def pseudonymised_event(
        self, event: RecordValidated, record: dict[str, str | None], *, now: datetime
    ) -> RecordPseudonymised:
        """``RecordPseudonymised`` of a validated event and its pseudonymised record. Every value already has the
        model's type (the provenance is the validated event's own model), so it is built without validating it
        again (``RecordPseudonymised.trusted``)."""
        p = self.pseudonymisers.for_tenant(event.la_code)
        return RecordPseudonymised.trusted(
            la_code=event.la_code,
            provenance=event.provenance,
            key_id=p.key_id,
            purpose=p.purpose,
            record=record,
            withdrawn=event.withdrawn,
            pseudonymised_at=now,
        )

    def _count(self, la_code: str) -> None:
        child = self._counted.get(la_code)
        if child is None:
            child = self._counted[la_code] = self.count.labels(la_code)
        child.inc()

    def _pseudonymise_group(
        self, p: Pseudonymiser, events: list[tuple[int, RecordValidated]], *, today: date
    ) -> dict[int, dict[str, str | None] | Exception]:
        """One tenant's events of the batch as one frame; the risk of those not withdrawn. On a failure the
        events are redone one by one (one-row frames), so only the record that fails is dead-lettered."""
        try:
            frame = p.records_frame([e.record for _, e in events])
            out = p.pseudonymise_frame(frame)
            records: list[dict[str, str | None]] = out.to_dicts()
        except Exception:  # a value a frame cannot hold: find which record, one at a time
            if len(events) == 1:
                raise
            done: dict[int, dict[str, str | None] | Exception] = {}
            for item in events:
                try:
                    done.update(self._pseudonymise_group(p, [item], today=today))
                except Exception as exc:
                    done[item[0]] = exc
            return done
        self._add_risk(p.tenant, frame, out, [e.withdrawn for _, e in events], today=today)
        return {i: rec for (i, _), rec in zip(events, records, strict=True)}

    def _add_risk(
        self, la_code: str, frame: pl.DataFrame, out: pl.DataFrame, withdrawn: list[bool], *, today: date
    ) -> None:
        """Risk rows of the records not withdrawn, per reporting period (a label per distinct pair of dates)."""
        dates = frame.select("reporting_period_start_date", "reporting_period_end_date")
        pairs = dates.unique(maintain_order=True)
        labels = pairs.with_columns(
            pl.Series(
                "__period",
                [period_label(parse_date(s), parse_date(e), today=today) for s, e in pairs.iter_rows()],
                dtype=pl.String,
            )
        )
        period = dates.join(labels, on=list(dates.columns), how="left", nulls_equal=True, maintain_order="left")
        kept = out.with_columns(period["__period"], pl.Series("__withdrawn", withdrawn, dtype=pl.Boolean)).filter(
            ~pl.col("__withdrawn")
        )
        for (label,), part in kept.group_by("__period", maintain_order=True):
            key = self.risk.add_frame(la_code, str(label), part)
            if key is not None:
                self._touched.add(key)

    async def handle(self, batch: ConsumedBatch) -> None:
        """Decode each message once, pseudonymise the batch as one frame per tenant, then forward or dead-letter
        each record in message order."""
        now = datetime.now(UTC)
        self._touched = set()
        decoded: list[tuple[RawMessage, RecordValidated]] = []
        for msg in batch.messages:
            event = await batch.decode(msg, RecordValidated)
            if event is not None:
                decoded.append((msg, event))
        by_tenant: dict[str, list[tuple[int, RecordValidated]]] = defaultdict(list)
        for i, (_, event) in enumerate(decoded):
            by_tenant[event.la_code].append((i, event))
        results: dict[int, dict[str, str | None] | Exception] = {}
        for la_code, events in by_tenant.items():
            try:
                results.update(
                    self._pseudonymise_group(self.pseudonymisers.for_tenant(la_code), events, today=now.date())
                )
            except Exception as exc:  # e.g. an LA code that is no tenant label: every record of the tenant
                results.update((i, exc) for i, _ in events)
        for i, (msg, event) in enumerate(decoded):
            result = results.get(i)
            if not isinstance(result, dict):
                failure = result if isinstance(result, Exception) else RuntimeError("no result")
                self.log.error(  # a bug or unforeseen input must not stall the partition
                    "processing failed",
                    exc_info=failure,
                    extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
                )
                await batch.dead_letter(
                    msg, DeadLetterReason.PROCESSING_ERROR, f"processing failed ({type(failure).__name__})"
                )
                continue
            self._count(event.la_code)
            await batch.forward(
                self.publisher,
                self.pseudonymised_event(event, result, now=now).wire_json(),
                key=event.la_code.encode(),
                headers={topics.HEADER_EVENT_ID: event.provenance.event_id},
            )
        self.risk.publish(self._touched)


def _bearer_key(scope: Scope) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (None for none or another scheme)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


_UNAUTHENTICATED: Final = {"detail": "unknown_operator: send a valid operator key as 'Authorization: Bearer <key>'"}


def risk_answer(
    risk: RiskBook, operator: Operator | None, la: str | None, period: str | None
) -> tuple[int, dict[str, Any]]:
    """``GET /v1/risk`` as a pure function: (status, body).

    The figures are per-LA statistics of personal data (people count, uniques, class-size histogram), so they are
    an operator's view (``OperatorAction.VIEW``), scoped exactly as the submission API: 401 without a known
    operator, 403 for an LA outside the operator's scope (before any look-up, so a refusal says nothing about
    whether the LA has data), and a listing shows only the operator's LAs. Open tenancy mode's ``open`` operator
    sees every LA.
    """
    if operator is None:
        return 401, _UNAUTHENTICATED
    if la is None:
        available = [
            {"la_code": k[0], "period": k[1], "people": len(acc)}
            for k, acc in sorted(risk.accumulators.items())
            if sees_la(operator, k[0])
        ]
        return 200, {"available": available}
    decision = authorise_operator(operator, la, OperatorAction.VIEW)
    if not decision.allowed:
        reason = decision.reason.value if decision.reason else "refused"
        return decision.http_status, {"detail": f"{reason}: {decision.detail}"}
    matches = {k: acc for k, acc in risk.accumulators.items() if k[0] == la and (period is None or k[1] == period)}
    if not matches:
        return 404, {"detail": "no records for that LA and period"}
    if len(matches) > 1:
        return 400, {"detail": "several periods: give ?period=", "periods": sorted(k[1] for k in matches)}
    [((la_code, per), acc)] = matches.items()
    return 200, {"la_code": la_code, "period": per, **acc.figures().to_dict()}


def risk_route(risk: RiskBook, tenants: Registry) -> Any:
    @get(
        description="Re-identification risk figures for one LA and reporting period (?la=318&period=...). "
        "Operators only: 'Authorization: Bearer <operator key>' (401 without, 403 outside the operator's LAs)."
    )
    async def risk_figures(scope: Scope) -> AsgiResponse:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        la = (query.get("la") or [None])[0]
        period = (query.get("period") or [None])[0]
        operator = authenticate_operator(tenants, _bearer_key(scope))
        status, body = risk_answer(risk, operator, la, period)
        if status == 401:
            return AsgiResponse(
                json.dumps(body).encode(),
                401,
                headers={"content-type": "application/json", "www-authenticate": 'Bearer realm="cld-pseudonymisation"'},
            )
        return json_response(status, body)

    return risk_figures


def create_app(settings: PseudonymisationSettings, *, tenants: Registry | None = None) -> AsgiFastStream:
    """Composition root of the pseudonymisation-preview process (``tenants`` may be injected, e.g. in tests; by
    default the registry comes from ``CLD_TENANTS_FILE`` / ``CLD_TENANCY_MODE``: it guards ``/v1/risk``)."""
    log = configure_logging(service=SERVICE, level=settings.log_level)
    tenants = tenants if tenants is not None else settings.registry()
    registry = CollectorRegistry()
    policy = load_policy(settings.policy_file)
    lookup = PostcodeLookup.from_csv(settings.postcode_lookup_file) if settings.postcode_lookup_file else None
    pseudonymisers = Pseudonymisers(policy, settings.load_key(), purpose=settings.purpose, lookup=lookup)
    Pseudonymiser(policy, pseudonymisers.key, tenant="check", purpose=settings.purpose).check_qi_names(settings.risk_qi)
    risk = RiskBook(settings.risk_qi, settings.risk_k_threshold, registry)

    broker: KafkaBroker = make_broker(settings, registry=registry)
    publisher = broker.publisher(
        settings.topic(topics.PSEUDONYMISED),
        schema=RecordPseudonymised,
        title=topics.PSEUDONYMISED,
        description="The pseudonymised form of each validated record. Key: the LA code.",
    )
    handler = ValidatedRecordsHandler(
        pseudonymisers=pseudonymisers,
        risk=risk,
        publisher=BatchPublisher(broker, publisher, topic=settings.topic(topics.PSEUDONYMISED)),
        log=log,
        registry=registry,
    )
    Consumer.create(broker, settings, registry=registry, consumed=[topics.VALIDATED], log=log).subscribe(
        topics.VALIDATED,
        group_id=settings.group_id,
        handler=handler.handle,
        title=f"{topics.VALIDATED}:pseudonymisation",
        description="Validated records to pseudonymise.",
    )

    async def create_topics() -> None:
        await ensure_topics(
            settings, [settings.topic(t) for t in (topics.VALIDATED, topics.PSEUDONYMISED, topics.DEADLETTER)]
        )

    lag = ConsumerLagMonitor(
        settings, group=settings.group_id, topics=[settings.topic(topics.VALIDATED)], registry=registry
    )
    lag.watch(broker)  # refresh right after each processed batch, not only every interval
    app = make_asgi_app(
        broker,
        settings=settings,
        registry=registry,
        routes=[("/v1/risk", risk_route(risk, tenants))],
        on_startup=[create_topics],
        after_startup=[lag.start],
        on_shutdown=[lag.stop],
    )
    app.context.set_global("registry", registry)
    app.context.set_global("risk", risk)
    return app


__all__ = ["PseudonymisationSettings", "create_app"]
