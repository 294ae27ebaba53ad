"""MESH transport, built on NHS England's ``mesh-client`` (synchronous, requests-based).

This module orchestrates the calls (threads, retries, chunks, idempotency); what MESH's answers mean (errors,
statuses, which message to follow) is in ``mesh_protocol.py``.

Every blocking call runs in a worker thread (``asyncio.to_thread``); retries, backoff and the overall
deadline are handled here (the client's own urllib3 retries are switched off with ``max_retries=0``), so
one policy governs the whole send.

Upload. The message is sent chunk by chunk with ``MeshClient.send_chunk``: each chunk is a bounded view
of the file on disk (``_FileSlice``), streamed by requests; with ``compress`` each chunk is gzipped on the
fly by mesh-client's ``GzipCompressStream`` (HTTP ``Content-Encoding: gzip``, transparent to the
recipient). Nothing is read fully into memory, and a failed chunk is re-read from disk and re-posted.

Idempotency. ``local_id`` goes into ``Mex-LocalID``. Before the first chunk is posted, and again before
every retry of it, the sender's outbox is searched for a message with that local id (MESH "track outbox
by local id", ``GET /messageexchange/{mailbox}/outbox/tracking/{local_id}``; when MESH answers 300
Multiple Choices the rich outbox listing is used to pick one). Found and accepted/acknowledged: its id is
returned and nothing is sent. Found and still uploading with the same chunk count: the remaining chunks
are (re-)posted to that message, completing it. Found and failed: permanent error (a human decides).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import quote

import requests
from mesh_client import MeshClient
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import (
    DeliveryState,
    DeliveryStatus,
    PermanentTransportError,
    SendResult,
    TransientTransportError,
    UnknownMessageError,
)
from .mesh_protocol import (
    _DELIVERED_RANK,
    Decision,
    MeshHttpError,
    SentMessage,
    _http_error,
    _parse_ts,
    _pick,
    classify_mesh_error,
    mesh_state,
)
from .retry import OnRetry, RetryError, RetryPolicy, retry_async

T = TypeVar("T")

_READ_BLOCK = 1024 * 1024
_MIB = 1024 * 1024


class MeshSettings(BaseSettings):
    """MESH connection settings; from the environment with prefix ``CLD_MESH_`` (nested: ``__``).

    Secrets: give either ``password`` or ``password_file`` (likewise ``shared_key``/``shared_key_file``).
    Files are read at connection time, so a rotated secret is picked up without a restart.
    """

    model_config = SettingsConfigDict(env_prefix="CLD_MESH_", env_nested_delimiter="__", frozen=True, extra="ignore")

    url: str = Field(description="MESH base URL, e.g. https://msg.intspineservices.nhs.uk")
    mailbox: str = Field(min_length=1, description="the LA's (sender's) MESH mailbox id")
    password: SecretStr | None = None
    password_file: Path | None = None
    shared_key: SecretStr | None = None
    shared_key_file: Path | None = None
    recipient_mailbox: str = Field(min_length=1, description="NHS England's CLD mailbox id")
    workflow_id: str = Field(min_length=1)
    verify_tls: bool = True
    ca_cert: Path | None = Field(default=None, description="CA bundle to verify the MESH server with")
    client_cert: Path | None = Field(default=None, description="client certificate (PEM); may hold the key too")
    client_key: Path | None = None
    max_chunk_size: int = Field(default=20 * _MIB, ge=64 * 1024, le=100 * _MIB)
    compress: bool = True
    request_timeout: float = Field(default=300.0, gt=0, description="per HTTP request, seconds")
    retry: RetryPolicy = RetryPolicy()
    application_name: str = "cld-mesh"

    @model_validator(mode="after")
    def _check(self) -> MeshSettings:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        for name in ("password", "shared_key"):
            given = getattr(self, name) is not None
            from_file = getattr(self, f"{name}_file") is not None
            if given == from_file:
                raise ValueError(f"give exactly one of {name} and {name}_file")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self

    def password_value(self) -> str:
        return _secret(self.password, self.password_file)

    def shared_key_value(self) -> bytes:
        return _secret(self.shared_key, self.shared_key_file).encode("utf-8")

    def tls_verify(self) -> str | bool:
        return str(self.ca_cert) if self.ca_cert is not None else self.verify_tls

    def tls_cert(self) -> tuple[str] | tuple[str, str] | None:
        if self.client_cert is None:
            return None
        if self.client_key is None:
            return (str(self.client_cert),)
        return (str(self.client_cert), str(self.client_key))


def _secret(value: SecretStr | None, path: Path | None) -> str:
    if value is not None:
        return value.get_secret_value()
    assert path is not None  # guaranteed by MeshSettings._check
    return path.read_text(encoding="utf-8").strip()


def _describe(exc: RetryError) -> str:
    """The retry error's text, plus the last MESH HTTP error (safe: status and MESH error code only)."""
    if isinstance(exc.last_error, MeshHttpError):
        return f"{exc} ({exc.last_error})"
    return str(exc)


class _FileSlice:
    """A read-only window ``[offset, offset+length)`` of an open file, streamed by requests in blocks."""

    def __init__(self, f: BinaryIO, offset: int, length: int) -> None:
        f.seek(offset)
        self._f = f
        self._remaining = length

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0 or n > self._remaining:
            n = self._remaining
        data = self._f.read(n) if n else b""
        self._remaining -= len(data)
        return data

    def __len__(self) -> int:
        return self._remaining

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(64 * 1024):
            yield block


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class MeshTransport:
    """Sends files to ``settings.recipient_mailbox`` over MESH; see the module docstring."""

    name = "mesh"

    def __init__(
        self,
        settings: MeshSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: OnRetry | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._on_retry = on_retry
        self._log = logger or logging.getLogger("cld_submission.transport.mesh")

    @property
    def settings(self) -> MeshSettings:
        return self._settings

    # -- public API -------------------------------------------------------------------------------------

    async def send(self, *, path: Path, filename: str, submission_id: str, local_id: str) -> SendResult:
        if not local_id:
            raise PermanentTransportError("local_id is required (it makes resends idempotent)")
        path = Path(path)
        sha256, size = await asyncio.to_thread(_sha256_of, path)
        deadline_at = self._clock() + self._settings.retry.deadline
        client = await asyncio.to_thread(self.new_client)
        try:
            return await self._send(client, path, filename, submission_id, local_id, sha256, size, deadline_at)
        except RetryError as exc:
            raise TransientTransportError(
                f"MESH send for local id {local_id!r} did not complete: {_describe(exc)}"
            ) from exc
        except MeshHttpError as exc:
            raise PermanentTransportError(f"MESH send for local id {local_id!r} rejected: {exc}") from exc
        finally:
            await asyncio.to_thread(client.close)

    async def status(self, message_id: str) -> DeliveryStatus:
        client = await asyncio.to_thread(self.new_client)
        try:
            tracked = await self._retry(
                "track message", lambda _a: asyncio.to_thread(self._track, client, message_id), None
            )
        except RetryError as exc:
            raise TransientTransportError(f"MESH tracking of {message_id!r} failed: {_describe(exc)}") from exc
        except MeshHttpError as exc:
            if exc.status_code == 404:
                raise UnknownMessageError(f"MESH has no tracking record for message {message_id!r}") from exc
            raise PermanentTransportError(f"MESH tracking of {message_id!r} rejected: {exc}") from exc
        finally:
            await asyncio.to_thread(client.close)
        return tracked

    async def find_by_local_id(self, local_id: str) -> SentMessage | None:
        """The message this mailbox already sent with ``local_id``, if any (see module docstring)."""
        client = await asyncio.to_thread(self.new_client)
        try:
            return await self._retry(
                "lookup by local id", lambda _a: asyncio.to_thread(self._lookup, client, local_id), None
            )
        finally:
            await asyncio.to_thread(client.close)

    def new_client(self) -> MeshClient:
        """A fresh mesh-client session (the caller closes it). No network traffic."""
        s = self._settings
        return MeshClient(
            s.url,
            s.mailbox,
            s.password_value(),
            shared_key=s.shared_key_value(),
            cert=s.tls_cert(),
            verify=s.tls_verify(),
            max_chunk_size=s.max_chunk_size,
            transparent_compress=s.compress,
            max_retries=0,
            timeout=s.request_timeout,
            application_name=s.application_name,
        )

    # -- orchestration ----------------------------------------------------------------------------------

    async def _retry(self, operation: str, fn: Callable[[int], Awaitable[T]], deadline_at: float | None) -> T:
        def on_retry(op: str, attempt: int, delay: float, exc: BaseException) -> None:
            self._log.warning(
                "MESH %s failed (attempt %d, %s: %s); retrying in %.2fs",
                op,
                attempt,
                type(exc).__name__,
                exc if isinstance(exc, MeshHttpError) else "transient",
                delay,
            )
            if self._on_retry is not None:
                self._on_retry(op, attempt, delay, exc)

        return await retry_async(
            operation,
            fn,
            policy=self._settings.retry,
            classify=classify_mesh_error,
            deadline_at=deadline_at,
            sleep=self._sleep,
            clock=self._clock,
            on_retry=on_retry,
        )

    def _decide(self, found: SentMessage | None, total_chunks: int, local_id: str) -> Decision:
        if found is None:
            return "new"
        state = found.state
        if state in (DeliveryState.ACCEPTED, DeliveryState.ACKNOWLEDGED):
            return "done"
        if state is DeliveryState.FAILED:
            raise PermanentTransportError(
                f"MESH message {found.message_id} sent earlier with local id {local_id!r} is in status "
                f"{found.status!r}; investigate, then resend under a new local id"
            )
        if found.chunk_count == total_chunks:
            return "resume"
        self._log.warning(
            "MESH message %s with local id %r is still uploading but has %s chunks (now %d); "
            "leaving it to expire and sending a new message",
            found.message_id,
            local_id,
            found.chunk_count,
            total_chunks,
        )
        return "new"

    async def _send(
        self,
        client: MeshClient,
        path: Path,
        filename: str,
        submission_id: str,
        local_id: str,
        sha256: str,
        size: int,
        deadline_at: float,
    ) -> SendResult:
        chunk_size = self._settings.max_chunk_size
        total_chunks = max(1, -(-size // chunk_size))

        found = await self._retry(
            "lookup by local id", lambda _a: asyncio.to_thread(self._lookup, client, local_id), deadline_at
        )
        decision = self._decide(found, total_chunks, local_id)
        if decision == "done":
            assert found is not None
            return self._result(found.message_id, found.uploaded_at, size, sha256, deduplicated=True)

        compress = self._settings.compress
        if decision == "resume":
            assert found is not None
            message_id = found.message_id
            if found.content_encoding is not None:
                compress = found.content_encoding.strip().lower() == "gzip"
            self._log.info("resuming MESH message %s (local id %r)", message_id, local_id)
        else:
            headers = {
                "workflow_id": self._settings.workflow_id,
                "filename": filename,
                "local_id": local_id,
                "subject": f"CLD submission {submission_id}",
                "checksum": f"SHA256:{sha256}",
            }

            async def first_chunk(attempt: int) -> tuple[Decision, str]:
                if attempt > 1:
                    # The failed attempt may have reached MESH after all: look again before posting.
                    again = await asyncio.to_thread(self._lookup, client, local_id)
                    again_decision = self._decide(again, total_chunks, local_id)
                    if again is not None and again_decision != "new":
                        return again_decision, again.message_id
                mid = await asyncio.to_thread(
                    self._post_first_chunk, client, path, size, total_chunks, compress, headers
                )
                return "new", mid

            decision, message_id = await self._retry("send chunk 1", first_chunk, deadline_at)
            if decision == "done":
                return self._result(message_id, None, size, sha256, deduplicated=True)

        # With "resume" every chunk from 2 is posted again: MESH keeps the last copy of a chunk.
        for chunk_num in range(2, total_chunks + 1):

            async def post(_attempt: int, n: int = chunk_num) -> bool:
                try:
                    await asyncio.to_thread(self._post_chunk, client, path, size, message_id, n, total_chunks, compress)
                except MeshHttpError as exc:
                    if exc.status_code == 423:  # not uploading any more: did an earlier post complete it?
                        tracked = await asyncio.to_thread(self._track, client, message_id)
                        if tracked.state in (DeliveryState.ACCEPTED, DeliveryState.ACKNOWLEDGED):
                            return True
                    raise
                return False

            if await self._retry(f"send chunk {chunk_num}/{total_chunks}", post, deadline_at):
                break

        self._log.info(
            "MESH message %s sent (%d bytes, %d chunk(s), local id %r)",
            message_id,
            size,
            total_chunks,
            local_id,
        )
        return self._result(message_id, None, size, sha256, deduplicated=decision == "resume")

    def _result(
        self, message_id: str, sent_at: datetime | None, size: int, sha256: str, *, deduplicated: bool
    ) -> SendResult:
        return SendResult(
            transport=self.name,
            message_id=message_id,
            sent_at=sent_at or datetime.now(UTC),
            bytes_sent=size,
            sha256=sha256,
            deduplicated=deduplicated,
        )

    # -- blocking MESH calls (run in worker threads) ----------------------------------------------------

    def _post_first_chunk(
        self,
        client: MeshClient,
        path: Path,
        size: int,
        total_chunks: int,
        compress: bool,
        headers: dict[str, str],
    ) -> str:
        operation = "send chunk 1"
        with path.open("rb") as f:
            chunk = _FileSlice(f, 0, min(size, self._settings.max_chunk_size))
            try:
                response = client.send_chunk(
                    self._settings.recipient_mailbox,
                    chunk,
                    chunk_num=1,
                    total_chunks=total_chunks,
                    compress=compress,
                    **headers,
                )
            except requests.HTTPError as exc:
                if exc.response is None:
                    raise
                raise _http_error(operation, exc.response) from None
        if response.status_code not in (200, 202):
            raise _http_error(operation, response)
        body = response.json()
        message_id = body.get("message_id") or body.get("messageID") if isinstance(body, dict) else None
        if not message_id:
            raise MeshHttpError(operation, response.status_code, "no message id in response")
        return str(message_id)

    def _post_chunk(
        self,
        client: MeshClient,
        path: Path,
        size: int,
        message_id: str,
        chunk_num: int,
        total_chunks: int,
        compress: bool,
    ) -> None:
        operation = f"send chunk {chunk_num}/{total_chunks}"
        chunk_size = self._settings.max_chunk_size
        offset = (chunk_num - 1) * chunk_size
        with path.open("rb") as f:
            chunk = _FileSlice(f, offset, min(chunk_size, size - offset))
            try:
                client.send_chunk(
                    self._settings.recipient_mailbox,
                    chunk,
                    chunk_num=chunk_num,
                    total_chunks=total_chunks,
                    compress=compress,
                    message_id=message_id,
                )
            except requests.HTTPError as exc:
                if exc.response is None:
                    raise
                raise _http_error(operation, exc.response) from None

    def _track(self, client: MeshClient, message_id: str) -> DeliveryStatus:
        try:
            data = client.track_message(message_id)
        except requests.HTTPError as exc:
            if exc.response is None:
                raise
            raise _http_error("track message", exc.response) from None
        status = str(data.get("status") or "")
        state = mesh_state(status)
        detail = f"MESH status {status or 'unknown'}"
        extra = " ".join(str(data.get(k) or "") for k in ("status_code", "status_description")).strip()
        if extra:
            detail += f": {extra[:160]}"
        return DeliveryStatus(message_id=str(data.get("message_id") or message_id), state=state, detail=detail)

    def _get(self, client: MeshClient, url: str, accept: str) -> requests.Response:
        # mesh-client has no public call for these two read-only endpoints; reuse its authenticated session.
        session: requests.Session = client._session
        return session.get(url, headers={"Accept": accept}, timeout=self._settings.request_timeout)

    def _lookup(self, client: MeshClient, local_id: str) -> SentMessage | None:
        operation = "lookup by local id"
        response = self._get(
            client, f"{client.mailbox_url}/outbox/tracking/{quote(local_id, safe='')}", "application/json"
        )
        if response.status_code == 404:
            return None
        if response.status_code == 300:
            return self._lookup_rich_outbox(client, local_id)
        if response.status_code != 200:
            raise _http_error(operation, response)
        body = response.json()
        if not isinstance(body, dict) or not (body.get("messageId") or body.get("message_id")):
            raise MeshHttpError(operation, response.status_code, "unexpected tracking response")
        found_local = body.get("localId", body.get("local_id"))
        if found_local is not None and found_local != local_id:
            raise MeshHttpError(operation, response.status_code, "tracking answered for another local id")
        chunk_count = body.get("chunkCount")
        return SentMessage(
            message_id=str(body.get("messageId") or body.get("message_id")),
            status=str(body.get("status") or "").lower(),
            chunk_count=int(chunk_count) if chunk_count is not None else None,
            content_encoding=body.get("contentEncoding"),
            uploaded_at=_parse_ts(body.get("uploadTimestamp") or body.get("upload_timestamp")),
            local_id=found_local,
        )

    def _lookup_rich_outbox(self, client: MeshClient, local_id: str) -> SentMessage | None:
        operation = "list outbox"
        url: str | None = f"{client.mailbox_url}/outbox/rich"
        candidates: list[SentMessage] = []
        pages = 0
        while url and pages < 100:
            pages += 1
            response = self._get(client, url, "application/vnd.mesh.v2+json")
            if response.status_code != 200:
                raise _http_error(operation, response)
            body = response.json()
            for item in body.get("messages", []):
                if item.get("local_id") != local_id:
                    continue
                total = item.get("total_chunks")
                candidates.append(
                    SentMessage(
                        message_id=str(item["message_id"]),
                        status=str(item.get("status") or "").lower(),
                        chunk_count=int(total) if total else None,
                        uploaded_at=_parse_ts(item.get("sent_date")),
                        local_id=local_id,
                    )
                )
            next_link = (body.get("links") or {}).get("next")
            url = f"{client._url}{next_link}" if next_link and next_link.startswith("/") else next_link
        delivered = [m for m in candidates if m.state in _DELIVERED_RANK]
        if len(delivered) > 1:
            self._log.error(
                "MESH outbox holds %d delivered messages with local id %r: %s",
                len(delivered),
                local_id,
                ", ".join(m.message_id for m in delivered),
            )
        return _pick(candidates)
