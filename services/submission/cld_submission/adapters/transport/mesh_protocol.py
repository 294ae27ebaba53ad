"""What MESH's answers mean, apart from how the transport orchestrates its calls (``mesh.py``): its HTTP errors
and which of them are worth a retry, its message statuses as delivery states, its timestamps, and which of
several messages under one local id to follow. Pure apart from reading a ``requests.Response``.

Error texts hold operation names, HTTP statuses and MESH error codes only: never file contents, never secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import requests

from .base import DeliveryState, TransportError
from .retry import Transient

_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class MeshHttpError(TransportError):
    """A MESH request answered with an unwanted HTTP status. The text holds no payload and no secrets."""

    def __init__(self, operation: str, status_code: int, mesh_error: str = "", retry_after: float | None = None):
        text = f"MESH {operation}: HTTP {status_code}"
        if mesh_error:
            text += f" ({mesh_error})"
        super().__init__(text)
        self.operation = operation
        self.status_code = status_code
        self.mesh_error = mesh_error
        self.retry_after = retry_after


def _mesh_error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    for key in ("errorCode", "errorEvent", "errorDescription"):
        if body.get(key):
            parts.append(str(body[key]))
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and detail[0].get("msg"):
        parts.append(str(detail[0]["msg"]))
    elif isinstance(detail, str):
        parts.append(detail)
    return " ".join(parts)[:160]


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _http_error(operation: str, response: requests.Response) -> MeshHttpError:
    return MeshHttpError(operation, response.status_code, _mesh_error_text(response), _retry_after(response))


def classify_mesh_error(exc: BaseException) -> Transient | None:
    """Transient: connection problems, timeouts, 5xx, 408/425/429. Everything else is permanent."""
    if isinstance(exc, MeshHttpError):
        if exc.status_code >= 500 or exc.status_code in _TRANSIENT_STATUSES:
            return Transient(retry_after=exc.retry_after)
        return None
    if isinstance(exc, requests.exceptions.SSLError):
        return None  # certificate problems do not heal by themselves
    if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError):
        return Transient()
    return None


@dataclass(frozen=True)
class SentMessage:
    """What MESH tracking says about a message in our outbox."""

    message_id: str
    status: str  # MESH status, lower case: uploading, accepted, acknowledged, error, undeliverable...
    chunk_count: int | None = None
    content_encoding: str | None = None
    uploaded_at: datetime | None = None
    local_id: str | None = None

    @property
    def state(self) -> DeliveryState:
        return mesh_state(self.status)


def mesh_state(status: str) -> DeliveryState:
    s = status.strip().lower()
    if s == "accepted":
        return DeliveryState.ACCEPTED
    if s == "acknowledged":
        return DeliveryState.ACKNOWLEDGED
    if s in {"error", "undeliverable", "failed", "expired", "rejected"}:
        return DeliveryState.FAILED
    return DeliveryState.PENDING  # uploading, or anything MESH may add


def _parse_ts(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    for fmt in ("%Y%m%d%H%M%S",):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_DELIVERED_RANK = {DeliveryState.ACKNOWLEDGED: 0, DeliveryState.ACCEPTED: 0}


def _pick(candidates: list[SentMessage]) -> SentMessage | None:
    """Several messages share a local id: prefer a delivered one (earliest), then uploading (latest)."""
    if not candidates:
        return None
    epoch = datetime.min.replace(tzinfo=UTC)
    delivered = [m for m in candidates if m.state in _DELIVERED_RANK]
    if delivered:
        return min(delivered, key=lambda m: m.uploaded_at or epoch)
    pending = [m for m in candidates if m.state is DeliveryState.PENDING]
    if pending:
        return max(pending, key=lambda m: m.uploaded_at or epoch)
    return max(candidates, key=lambda m: m.uploaded_at or epoch)


Decision = Literal["done", "resume", "new"]
