"""The ingest service process: an HTTP API for source systems that publishes each record to the raw topic.

Composition root: :func:`create_app`: a FastAPI app with the broker from ``cld_runtime.make_broker``, started
and stopped by the app's lifespan. (FastStream 0.7's ``faststream.kafka.fastapi.KafkaRouter`` warns that it is
deprecated in favour of the separate ``faststream_fastapi`` package; a plain broker needs neither.)
Responses are 202 only after the broker acknowledged every publish (acks=all): nothing accepted is lost.
Error bodies are JSON and never quote a submitted value (field names and row numbers only).

Tenancy (docs/governance.md): every ``/v1/`` request is authenticated by its API key before its body is read
(:mod:`cld_ingest.auth`, 401), and every record is authorised for its LA (403) before anything is published.
The ``cld-source`` header on the raw topic is the authenticated source's id, never a client's claim.

The conversion at this hop (HTTP -> ``cld.events.raw.v1``): a request's JSON record, or each row of an uploaded
CSV, is read once into a ``CLDRecord`` (the one record model, ``cld_schemas.record``), and its values become
the raw topic's value (``envelope.record_value``: spec fields by snake_case name, blanks left out) with the
contract's headers (``cld_schemas.contract``). Nothing else is built per record.
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Annotated, Any, Final

from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cld_governance.tenancy import Decision, Registry, Source, authorise_source
from cld_ingest.auth import SourceAuthentication, source_of
from cld_ingest.envelope import (
    ID_PATTERN,
    OPT_OUT_PATTERN,
    RELEASE_PATTERN,
    Envelope,
    EnvelopeError,
    envelope,
    opt_out_value,
    release_value,
    resolve_la_code,
    safe_field_name,
)
from cld_ingest.idempotency import Claim, IdempotencyMemory
from cld_ingest.limits import BodySizeLimit, JsonContentType
from cld_runtime import Settings, configure_logging, ensure_topics, make_broker, metrics_body
from cld_runtime.broker import BatchPublisher
from cld_runtime.http import add_health_routes
from cld_schemas import topics
from cld_schemas.contract import HEADER_OPT_OUT, LA_CODE_PATTERN
from cld_schemas.csvfile import CLDFileError, iter_records
from cld_schemas.record import MAX_VALUE_LENGTH, CLDRecord

if TYPE_CHECKING:
    RecordIn = BaseModel
else:
    RecordIn = CLDRecord  # the spec-derived model: documents every field in /openapi.json

SERVICE: Final = "ingest"
UPLOADS_PATH: Final = "/v1/uploads"
RECORDS_PATH: Final = "/v1/records"
BATCH_PATH: Final = "/v1/records/batch"
MAX_LISTED_COLUMNS: Final = 50
MAX_LISTED_ERRORS: Final = 20


class IngestSettings(Settings):
    service_name: str = Field(default=SERVICE, description="Service name in logs, metrics and client ids.")
    http_port: int = Field(
        default=8001, ge=0, le=65535, validation_alias="CLD_INGEST_PORT", description="HTTP port of the ingest API."
    )
    max_batch_records: int = Field(default=1000, ge=1, description="Most records in one POST /v1/records/batch.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest JSON request body (/v1/records, /v1/records/batch)."
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest CSV upload (bytes) on POST /v1/uploads."
    )
    upload_spool_bytes: int = Field(
        default=8 * 1024 * 1024, ge=0, description="CSV uploads larger than this are spooled to a temporary file."
    )
    publish_window: int = Field(
        default=2000, ge=1, description="Publishes in flight at once during a CSV upload (then wait for acks)."
    )
    max_upload_columns: int = Field(
        default=1000, ge=64, description="Most columns in a CSV upload's header (the spec has about 50)."
    )
    max_upload_line_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        description="Longest physical line of a CSV upload, in bytes (a full CLD row is well under 1 MiB).",
    )
    idempotency_window_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description="How long an Idempotency-Key is remembered with its body (a different body -> 409).",
    )
    idempotency_max_keys: int = Field(
        default=100_000, ge=1, description="Most Idempotency-Keys remembered at once (the oldest are forgotten)."
    )


# ---- response bodies (documented in /openapi.json) ----
class RecordAccepted(BaseModel):
    status: str = "accepted"
    la_code: str
    event_id: str


class BatchAccepted(BaseModel):
    status: str = "accepted"
    records: int
    event_ids: list[str]


class UploadAccepted(BaseModel):
    status: str = "accepted"
    upload_id: str
    la_code: str
    rows: int = Field(description="Rows read from the file and published.")
    unknown_columns: list[str] = Field(
        description=f"Column headers the specification does not know (ignored); the first {MAX_LISTED_COLUMNS}."
    )
    unknown_columns_total: int = Field(default=0, description="How many columns the specification does not know.")
    missing_fields: list[str] = Field(description="Spec columns absent from the file (treated as blank).")


class ErrorBody(BaseModel):
    detail: Any


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "The request or file cannot be read."},
    401: {"model": ErrorBody, "description": "No API key, or a key this deployment does not know."},
    403: {"model": ErrorBody, "description": "The source may not submit for this LA (nothing was published)."},
    413: {"model": ErrorBody, "description": "The body or the batch is too large."},
    415: {"model": ErrorBody, "description": "Unsupported content type (JSON paths: not application/json)."},
    422: {"model": ErrorBody, "description": "Not a valid record/envelope (names the field, never its value)."},
    503: {"model": ErrorBody, "description": "The broker did not acknowledge: nothing to rely on, retry."},
}
JSON_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **ERRORS,
    409: {
        "model": ErrorBody,
        "description": "The Idempotency-Key was already used with a different body (nothing was published).",
    },
}

ReleaseHeader = Annotated[
    str | None,
    Header(
        alias=topics.HEADER_RELEASE,
        pattern=RELEASE_PATTERN,
        description="The specification release the records are written to (r1 or r2). Default: the release in "
        "force for each record's reporting period (or the source's configured release).",
    ),
]
OptOutHeader = Annotated[
    str | None,
    Header(
        alias=HEADER_OPT_OUT,
        pattern=OPT_OUT_PATTERN,
        description=(
            "The person's opt-outs for every record of the request: comma-separated national-data-opt-out, "
            "objection. Ignored for NHS England (required by law), applied to any other export."
        ),
    ),
]
LaHeader = Annotated[
    str | None, Header(alias="X-CLD-LA", pattern=LA_CODE_PATTERN, description="LA code, if not in the record.")
]
IdemHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", pattern=ID_PATTERN, description="Idempotency key (same key = same record)."),
]
EventIdHeader = Annotated[
    str | None, Header(alias="X-CLD-Event-Id", pattern=ID_PATTERN, description="Same as Idempotency-Key.")
]


class RawPublisher:
    """Publishes envelopes to the raw topic and waits until the broker has acknowledged them all (through
    ``cld_runtime.broker.BatchPublisher``: the one publish path of every service, in memory as in production)."""

    def __init__(self, publisher: BatchPublisher, *, registry: CollectorRegistry) -> None:
        self.publisher = publisher
        self.received = Counter(
            "cld_records_received_total",
            "Records received, by LA and channel.",
            ["la_code", "channel"],
            registry=registry,
        )

    async def send(self, env: Envelope) -> asyncio.Future[Any] | None:
        return await self.publisher.send(env.value, key=env.la_code.encode(), headers=env.headers)

    async def send_all(self, envelopes: Sequence[Envelope], *, channel: str) -> None:
        pending = [f for env in envelopes if (f := await self.send(env)) is not None]
        await asyncio.gather(*pending)  # a failed publish raises: the request fails, nothing is counted
        self.publisher.count_published()
        for env in envelopes:
            self.received.labels(env.la_code, channel).inc()


class RefusedError(Exception):
    """A tenancy decision refused the request: answered with ``decision.http_status`` and its safe detail."""

    def __init__(self, decision: Decision, prefix: str = "") -> None:
        super().__init__(decision.detail)
        self.decision = decision
        self.prefix = prefix


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without ``input``/``ctx``: they would echo submitted values (personal data).

    An unknown field's name is quoted only when it looks like a misspelt spec field (``safe_field_name``):
    a made-up key may itself be a value. At most ``MAX_LISTED_ERRORS`` entries (a body of 100 000 unknown
    keys must not produce a response of 100 000 lines).
    """
    errors = exc.errors()
    out: list[dict[str, Any]] = []
    for e in errors[:MAX_LISTED_ERRORS]:
        loc: list[Any] = [str(p)[:64] if isinstance(p, str) else p for p in e.get("loc", ())]
        if e.get("type") == "extra_forbidden" and loc and isinstance(loc[-1], str):
            loc[-1] = safe_field_name(loc[-1], CLDRecord.model_fields)
        out.append({"loc": loc, "msg": str(e.get("msg", ""))[:200], "type": e.get("type", "")})
    if len(errors) > MAX_LISTED_ERRORS:
        more = len(errors) - MAX_LISTED_ERRORS
        out.append({"loc": [], "msg": f"and {more} more error(s)", "type": "too_many_errors"})
    return out


def _id_from(idempotency_key: str | None, event_id: str | None) -> str:
    return idempotency_key or event_id or str(uuid.uuid4())


bearer_scheme = HTTPBearer(auto_error=False, description="The source system's API key (cldk_...).")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key, as a plain header.")


async def authenticated_source(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    _api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Source:
    """The source :class:`SourceAuthentication` authenticated (the schemes document the key in /openapi.json)."""
    return source_of(request.state)


CallerDep = Annotated[Source, Depends(authenticated_source)]


def create_app(settings: IngestSettings, *, tenants: Registry | None = None) -> FastAPI:
    """Composition root of the ingest process. ``tenants``: the tenants registry (default: from settings,
    ``CLD_TENANTS_FILE``; the process refuses to start without one unless ``CLD_TENANCY_MODE=open``)."""
    log = configure_logging(service=SERVICE, level=settings.log_level)
    tenants = tenants if tenants is not None else settings.registry()
    if tenants.open_mode:
        log.warning(
            "TENANCY OPEN MODE: any caller may submit for any LA and names its own source. Synthetic data only.",
            extra={"tenancy_mode": "open"},
        )
    registry = CollectorRegistry()
    broker = make_broker(settings, registry=registry)

    def source_id(request: Request, source: Source) -> str:
        """The id stamped on ``cld-source``: the authenticated source's. Only in open mode, where nobody is
        authenticated, is the client's ``X-CLD-Source`` taken (as before tenancy), else ``unknown``."""
        if not tenants.open_mode:
            return source.id
        claimed = request.headers.get("x-cld-source")
        if claimed is None:
            return "unknown"
        if not re.fullmatch(ID_PATTERN, claimed):
            raise EnvelopeError("the X-CLD-Source header is not a source id")
        return claimed

    def authorise(source: Source, la_code: str, *, prefix: str = "") -> None:
        decision = authorise_source(source, la_code)
        if not decision.allowed:
            raise RefusedError(decision, prefix)

    idempotency = IdempotencyMemory(
        max_keys=settings.idempotency_max_keys, window_seconds=settings.idempotency_window_seconds
    )

    def claim_key(source: str, endpoint: str, key: str | None, envelopes: Sequence[Envelope]) -> None:
        """A client's idempotency key must carry the same body each time (409 otherwise, nothing published)."""
        if key is None:
            return
        parts: list[bytes | str | None] = [envelopes[0].headers.get(HEADER_OPT_OUT) if envelopes else None]
        for env in envelopes:
            parts += [env.la_code, env.value]
        claim = idempotency.claim(source=source, endpoint=endpoint, key=key, fingerprint=idempotency.fingerprint(parts))
        if claim is Claim.CONFLICT:
            log.warning("idempotency key reused with a different body", extra={"source": source, "path": endpoint})
            raise HTTPException(
                409,
                "this Idempotency-Key (or X-CLD-Event-Id) was already used with a different body; nothing was "
                "published. Send a new key for a new or corrected record (the same key is for retries of the "
                "same body only)",
            )

    raw = RawPublisher(
        BatchPublisher(
            broker,
            broker.publisher(
                settings.topic(topics.RAW),
                schema=CLDRecord,
                title=topics.RAW,
                description=(
                    "One CLD record per message. Key: the LA code. Value: JSON object of spec fields by snake_case "
                    "name. Headers: cld-source, cld-event-id (idempotency), cld-received-at, cld-action."
                ),
            ),
            topic=settings.topic(topics.RAW),
        ),
        registry=registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings, [settings.topic(topics.RAW)])
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()

    # /docs and /redoc serve Swagger UI / ReDoc from the fastapi-offline package, not a CDN (offline too)
    app = FastAPIOffline(
        static_url="/docs-static",
        swagger_ui_parameters={"validatorUrl": None},  # no call to the public validator
        title="CLD ingest",
        version="1",
        description="Submit Adult Social Care Client Level Data records (one, a batch, or an LA's CSV file).",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.broker = broker

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(exc)}, status_code=422)

    @app.exception_handler(RefusedError)
    async def on_refused(request: Request, exc: RefusedError) -> JSONResponse:
        decision = exc.decision
        log.warning(
            "request refused",
            extra={
                "reason": decision.reason.value if decision.reason else "",
                "source": source_of(request.state).id,
                "path": request.url.path,
            },
        )
        return JSONResponse({"detail": exc.prefix + decision.detail}, status_code=decision.http_status)

    @app.exception_handler(EnvelopeError)
    async def on_envelope(request: Request, exc: EnvelopeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(KafkaError)
    async def on_kafka(request: Request, exc: KafkaError) -> JSONResponse:
        log.error("publish not acknowledged", extra={"error": type(exc).__name__})
        return JSONResponse({"detail": "the broker did not acknowledge the records; retry"}, status_code=503)

    # /health/live, /health/ready (broker, tenants registry) and /health (alias of ready): cld_runtime.http
    add_health_routes(app, broker, settings=settings)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = metrics_body(registry)
        return Response(body, media_type=content_type)

    @app.post(RECORDS_PATH, status_code=202, response_model=RecordAccepted, responses=JSON_ERRORS)
    async def post_record(
        request: Request,
        record: RecordIn,
        source: CallerDep,
        x_cld_la: LaHeader = None,
        idempotency_key: IdemHeader = None,
        x_cld_event_id: EventIdHeader = None,
        cld_opt_out: OptOutHeader = None,
        cld_release: ReleaseHeader = None,
    ) -> RecordAccepted:
        """Submit one record (JSON object of spec fields by snake_case name; dates dd/mm/yyyy or yyyy-mm-dd)."""
        values: dict[str, str | None] = record.model_dump()
        la = resolve_la_code(values.get("la_code"), x_cld_la)
        authorise(source, la)
        env = envelope(
            values,
            la_code=la,
            event_id=_id_from(idempotency_key, x_cld_event_id),
            source=source_id(request, source),
            received_at=datetime.now(UTC),
            channel="http",
            opt_out=opt_out_value(cld_opt_out),
            release=release_value(cld_release),
        )
        claim_key(env.headers[topics.HEADER_SOURCE], RECORDS_PATH, idempotency_key or x_cld_event_id, [env])
        await raw.send_all([env], channel="http")
        return RecordAccepted(la_code=la, event_id=env.event_id)

    @app.post(BATCH_PATH, status_code=202, response_model=BatchAccepted, responses=JSON_ERRORS)
    async def post_batch(
        request: Request,
        records: list[RecordIn],
        source: CallerDep,
        x_cld_la: LaHeader = None,
        idempotency_key: IdemHeader = None,
        x_cld_event_id: EventIdHeader = None,
        cld_opt_out: OptOutHeader = None,
        cld_release: ReleaseHeader = None,
    ) -> BatchAccepted:
        """Submit a list of records: all are checked (and authorised for their LA) first, then all published,
        or none. A ``cld-opt-out`` header applies to every record of the batch."""
        if len(records) > settings.max_batch_records:
            raise HTTPException(413, f"a batch holds at most {settings.max_batch_records} records")
        if not records:
            raise HTTPException(422, "the batch is empty")
        now = datetime.now(UTC)
        base = idempotency_key or x_cld_event_id
        stamped = source_id(request, source)
        opt_out = opt_out_value(cld_opt_out)
        release = release_value(cld_release)
        envelopes = []
        for i, record in enumerate(records):
            values: dict[str, str | None] = record.model_dump()
            try:
                la = resolve_la_code(values.get("la_code"), x_cld_la)
            except EnvelopeError as exc:
                raise EnvelopeError(f"record {i}: {exc}") from None
            authorise(source, la, prefix=f"record {i}: ")
            event_id = f"{base}:{i}" if base else str(uuid.uuid4())
            envelopes.append(
                envelope(
                    values,
                    la_code=la,
                    event_id=event_id,
                    source=stamped,
                    received_at=now,
                    channel="http",
                    opt_out=opt_out,
                    release=release,
                )
            )
        claim_key(stamped, BATCH_PATH, base, envelopes)
        await raw.send_all(envelopes, channel="http")
        return BatchAccepted(records=len(envelopes), event_ids=[e.event_id for e in envelopes])

    @app.post(
        UPLOADS_PATH,
        status_code=202,
        response_model=UploadAccepted,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                },
            }
        },
    )
    async def post_upload(
        request: Request,
        la: Annotated[str, Query(pattern=LA_CODE_PATTERN, description="The LA whose file this is.")],
        source: CallerDep,
        cld_opt_out: OptOutHeader = None,
        cld_release: ReleaseHeader = None,
    ) -> UploadAccepted:
        """Upload an LA's CSV file (spec column headers on the first line). Each row is one raw event whose
        event id is derived from the LA code and the row, so uploading the same file again is idempotent.
        The source must be allowed for the LA (checked before the file is read). The multipart file name is
        never used (the file is spooled to an anonymous temporary file)."""
        authorise(source, la)
        stamped = source_id(request, source)
        opt_out = opt_out_value(cld_opt_out)
        release = release_value(cld_release)
        with tempfile.SpooledTemporaryFile(max_size=settings.upload_spool_bytes) as spool:
            await _receive_file(request, spool)
            upload_id = str(uuid.uuid4())
            _check_lines(spool, settings.max_upload_line_bytes)
            header_info, _rows_checked = _check_file(spool, la, max_columns=settings.max_upload_columns)
            now = datetime.now(UTC)
            count = 0
            batch: list[Envelope] = []
            for rec in _rows(spool):
                batch.append(
                    envelope(
                        rec,
                        la_code=la,
                        event_id=None,
                        source=stamped,
                        received_at=now,
                        channel="csv",
                        opt_out=opt_out,
                        release=release,
                    )
                )
                if len(batch) >= settings.publish_window:
                    await raw.send_all(batch, channel="csv")
                    count += len(batch)
                    batch = []
            if batch:
                await raw.send_all(batch, channel="csv")
                count += len(batch)
        log.info("upload accepted", extra={"upload_id": upload_id, "la_code": la, "rows": count, "source": stamped})
        unknown = header_info[0]
        return UploadAccepted(
            upload_id=upload_id,
            la_code=la,
            rows=count,
            unknown_columns=[c[:64] for c in unknown[:MAX_LISTED_COLUMNS]],
            unknown_columns_total=len(unknown),
            missing_fields=list(header_info[1]),
        )

    def limit_for(path: str) -> int:
        return settings.max_upload_bytes if path == UPLOADS_PATH else settings.max_body_bytes

    app.add_middleware(JsonContentType, json_paths=frozenset({RECORDS_PATH, BATCH_PATH}))
    app.add_middleware(BodySizeLimit, limit_for=limit_for)
    # Added last, so it runs first: an unauthenticated request is refused before its body is read.
    app.add_middleware(SourceAuthentication, registry=tenants)
    return app


async def _receive_file(request: Request, spool: IO[bytes]) -> None:
    """Copy the CSV (raw ``text/csv`` body or the ``file`` part of a multipart form) into ``spool``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        try:  # closed on every path: an unclosed form leaks its spooled temporary files
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "the form has no 'file' part")
            # upload.filename is never used: it is the client's text, not a path (../../etc/passwd).
            while chunk := await upload.read(1024 * 1024):
                spool.write(chunk)
        finally:
            await form.close()
    elif content_type in ("text/csv", "text/plain", "application/csv", "application/octet-stream"):
        async for chunk in request.stream():
            spool.write(chunk)
    else:
        raise HTTPException(415, "send the file as text/csv or as the 'file' part of multipart/form-data")
    spool.seek(0)


def _text(spool: IO[bytes]) -> io.TextIOWrapper:
    spool.seek(0)
    return io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")


def _check_lines(spool: IO[bytes], limit: int) -> None:
    """No physical line longer than ``limit`` bytes: a line of millions of empty cells would otherwise become
    a list of millions of strings in the CSV reader (hostile input: huge numbers of columns)."""
    spool.seek(0)
    line_no = 0
    while line := spool.readline(limit + 1):
        line_no += 1
        if len(line) > limit and not line.endswith(b"\n"):
            raise HTTPException(422, f"line {line_no} is longer than {limit} bytes")
    spool.seek(0)


def _check_file(spool: IO[bytes], la: str, *, max_columns: int) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], int]:
    """First pass: the whole file must be readable before anything is published (all or nothing)."""
    stream = _text(spool)
    rows = 0
    try:
        header, it = iter_records(stream)
        if len(header.columns) > max_columns:
            raise HTTPException(422, f"the file has {len(header.columns)} columns; at most {max_columns}")
        for rows, rec in enumerate(it, start=1):
            row_la = rec.get("la_code")
            if row_la is not None and row_la != la:
                raise HTTPException(422, f"row {rows}: the LA Code differs from the la query parameter")
            for name, value in rec.items():
                if value is not None and len(value) > MAX_VALUE_LENGTH:
                    raise HTTPException(422, f"row {rows}: {name} is longer than {MAX_VALUE_LENGTH} characters")
    except UnicodeDecodeError:
        raise HTTPException(400, "the file is not UTF-8 text") from None
    except CLDFileError as exc:
        raise HTTPException(422, str(exc)) from None
    finally:
        stream.detach()
    if rows == 0:
        raise HTTPException(422, "the file has a header but no rows")
    return (header.unknown_columns, header.missing_fields), rows


def _rows(spool: IO[bytes]) -> Iterator[dict[str, str | None]]:
    stream = _text(spool)
    try:
        _header, it = iter_records(stream)
        yield from it
    finally:
        stream.detach()
