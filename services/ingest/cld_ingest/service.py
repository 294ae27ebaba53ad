"""The ingest service process: an HTTP API for source systems that publishes each record to the raw topic.

Composition root: :func:`create_app`: a FastAPI app with the broker from ``cld_runtime.make_broker``, started
and stopped by the app's lifespan. (FastStream 0.7's ``faststream.kafka.fastapi.KafkaRouter`` warns that it is
deprecated in favour of the separate ``faststream_fastapi`` package; a plain broker needs neither.)
Responses are 202 only after the broker acknowledged every publish (acks=all): nothing accepted is lost.
Error bodies are JSON and never quote a submitted value (field names and row numbers only).
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Annotated, Any, Final

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from faststream.kafka.publisher import DefaultPublisher
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cld_ingest.envelope import (
    ID_PATTERN,
    LA_CODE_PATTERN,
    Envelope,
    EnvelopeError,
    envelope,
    resolve_la_code,
)
from cld_ingest.limits import BodySizeLimit
from cld_runtime import Settings, configure_logging, ensure_topics, health_body, make_broker, metrics_body
from cld_schemas import topics
from cld_schemas.csvfile import CLDFileError, iter_records
from cld_schemas.record import MAX_VALUE_LENGTH, CLDRecord

if TYPE_CHECKING:
    RecordIn = BaseModel
else:
    RecordIn = CLDRecord  # the spec-derived model: documents every field in /openapi.json

SERVICE: Final = "ingest"
UPLOADS_PATH: Final = "/v1/uploads"


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
    unknown_columns: list[str] = Field(description="Column headers the specification does not know (ignored).")
    missing_fields: list[str] = Field(description="Spec columns absent from the file (treated as blank).")


class ErrorBody(BaseModel):
    detail: Any


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "The request or file cannot be read."},
    413: {"model": ErrorBody, "description": "The body or the batch is too large."},
    415: {"model": ErrorBody, "description": "Unsupported content type."},
    422: {"model": ErrorBody, "description": "Not a valid record/envelope (names the field, never its value)."},
    503: {"model": ErrorBody, "description": "The broker did not acknowledge: nothing to rely on, retry."},
}

SourceHeader = Annotated[str, Header(alias="X-CLD-Source", pattern=ID_PATTERN, description="The source system's id.")]
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
    """Publishes envelopes to the raw topic and waits until the broker has acknowledged them all."""

    def __init__(self, publisher: DefaultPublisher, *, registry: CollectorRegistry) -> None:
        self.publisher = publisher
        self.received = Counter(
            "cld_records_received_total",
            "Records received, by LA and channel.",
            ["la_code", "channel"],
            registry=registry,
        )

    async def send(self, env: Envelope) -> asyncio.Future[Any] | None:
        result = await self.publisher.publish(env.value, key=env.la_code.encode(), headers=env.headers, no_confirm=True)
        return result if isinstance(result, asyncio.Future) else None

    async def send_all(self, envelopes: Sequence[Envelope], *, channel: str) -> None:
        pending = [f for env in envelopes if (f := await self.send(env)) is not None]
        await asyncio.gather(*pending)
        for env in envelopes:
            self.received.labels(env.la_code, channel).inc()


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without ``input``/``ctx``: they would echo submitted values (personal data)."""
    out = []
    for e in exc.errors():
        loc = [str(p)[:64] if isinstance(p, str) else p for p in e.get("loc", ())]
        out.append({"loc": loc, "msg": str(e.get("msg", ""))[:200], "type": e.get("type", "")})
    return out


def _id_from(idempotency_key: str | None, event_id: str | None) -> str:
    return idempotency_key or event_id or str(uuid.uuid4())


def create_app(settings: IngestSettings) -> FastAPI:
    """Composition root of the ingest process."""
    log = configure_logging(service=SERVICE, level=settings.log_level)
    registry = CollectorRegistry()
    broker = make_broker(settings, registry=registry)
    raw = RawPublisher(
        broker.publisher(
            settings.topic(topics.RAW),
            schema=CLDRecord,
            title=topics.RAW,
            description=(
                "One CLD record per message. Key: the LA code. Value: JSON object of spec fields by snake_case "
                "name. Headers: cld-source, cld-event-id (idempotency), cld-received-at, cld-action."
            ),
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

    app = FastAPI(
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

    @app.exception_handler(EnvelopeError)
    async def on_envelope(request: Request, exc: EnvelopeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(KafkaError)
    async def on_kafka(request: Request, exc: KafkaError) -> JSONResponse:
        log.error("publish not acknowledged", extra={"error": type(exc).__name__})
        return JSONResponse({"detail": "the broker did not acknowledge the records; retry"}, status_code=503)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        status, body = await health_body(broker, service=SERVICE, wait_seconds=settings.health_timeout_seconds)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = metrics_body(registry)
        return Response(body, media_type=content_type)

    @app.post("/v1/records", status_code=202, response_model=RecordAccepted, responses=ERRORS)
    async def post_record(
        record: RecordIn,
        x_cld_source: SourceHeader = "unknown",
        x_cld_la: LaHeader = None,
        idempotency_key: IdemHeader = None,
        x_cld_event_id: EventIdHeader = None,
    ) -> RecordAccepted:
        """Submit one record (JSON object of spec fields by snake_case name; dates dd/mm/yyyy or yyyy-mm-dd)."""
        values: dict[str, str | None] = record.model_dump()
        la = resolve_la_code(values.get("la_code"), x_cld_la)
        env = envelope(
            values,
            la_code=la,
            event_id=_id_from(idempotency_key, x_cld_event_id),
            source=x_cld_source,
            received_at=datetime.now(UTC),
            channel="http",
        )
        await raw.send_all([env], channel="http")
        return RecordAccepted(la_code=la, event_id=env.event_id)

    @app.post("/v1/records/batch", status_code=202, response_model=BatchAccepted, responses=ERRORS)
    async def post_batch(
        records: list[RecordIn],
        x_cld_source: SourceHeader = "unknown",
        x_cld_la: LaHeader = None,
        idempotency_key: IdemHeader = None,
        x_cld_event_id: EventIdHeader = None,
    ) -> BatchAccepted:
        """Submit a list of records: all are checked first, then all published, or none."""
        if len(records) > settings.max_batch_records:
            raise HTTPException(413, f"a batch holds at most {settings.max_batch_records} records")
        if not records:
            raise HTTPException(422, "the batch is empty")
        now = datetime.now(UTC)
        base = idempotency_key or x_cld_event_id
        envelopes = []
        for i, record in enumerate(records):
            values: dict[str, str | None] = record.model_dump()
            try:
                la = resolve_la_code(values.get("la_code"), x_cld_la)
            except EnvelopeError as exc:
                raise EnvelopeError(f"record {i}: {exc}") from None
            event_id = f"{base}:{i}" if base else str(uuid.uuid4())
            envelopes.append(
                envelope(values, la_code=la, event_id=event_id, source=x_cld_source, received_at=now, channel="http")
            )
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
        x_cld_source: SourceHeader = "unknown",
    ) -> UploadAccepted:
        """Upload an LA's CSV file (spec column headers on the first line). Each row is one raw event whose
        event id is derived from the LA code and the row, so uploading the same file again is idempotent."""
        with tempfile.SpooledTemporaryFile(max_size=settings.upload_spool_bytes) as spool:
            await _receive_file(request, spool)
            upload_id = str(uuid.uuid4())
            header_info, _rows_checked = _check_file(spool, la)
            now = datetime.now(UTC)
            count = 0
            batch: list[Envelope] = []
            for rec in _rows(spool):
                batch.append(
                    envelope(rec, la_code=la, event_id=None, source=x_cld_source, received_at=now, channel="csv")
                )
                if len(batch) >= settings.publish_window:
                    await raw.send_all(batch, channel="csv")
                    count += len(batch)
                    batch = []
            if batch:
                await raw.send_all(batch, channel="csv")
                count += len(batch)
        log.info("upload accepted", extra={"upload_id": upload_id, "la_code": la, "rows": count})
        return UploadAccepted(
            upload_id=upload_id,
            la_code=la,
            rows=count,
            unknown_columns=list(header_info[0]),
            missing_fields=list(header_info[1]),
        )

    def limit_for(path: str) -> int:
        return settings.max_upload_bytes if path == UPLOADS_PATH else settings.max_body_bytes

    app.add_middleware(BodySizeLimit, limit_for=limit_for)
    return app


async def _receive_file(request: Request, spool: IO[bytes]) -> None:
    """Copy the CSV (raw ``text/csv`` body or the ``file`` part of a multipart form) into ``spool``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "the form has no 'file' part")
        while chunk := await upload.read(1024 * 1024):
            spool.write(chunk)
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


def _check_file(spool: IO[bytes], la: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], int]:
    """First pass: the whole file must be readable before anything is published (all or nothing)."""
    stream = _text(spool)
    rows = 0
    try:
        header, it = iter_records(stream)
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
