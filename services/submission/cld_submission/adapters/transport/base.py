"""Transport-neutral types: the ``Transport`` protocol, send results, delivery status and errors.

Nothing here knows about MESH or files. Error messages raised by transports carry operation names,
HTTP status codes, MESH error codes and message ids only: never file contents, and never credentials.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class SendResult(BaseModel):
    """What a transport reports once a file has been handed over."""

    model_config = ConfigDict(frozen=True)

    transport: str = Field(description="transport name, e.g. 'mesh' or 'file_export'")
    message_id: str = Field(description="MESH message id, or the export file name")
    sent_at: datetime = Field(description="UTC time the transport accepted the file (first upload if deduplicated)")
    bytes_sent: int = Field(ge=0, description="size of the payload file in bytes (before any transport compression)")
    sha256: str = Field(description="hex SHA-256 of the payload file")
    deduplicated: bool = Field(
        default=False,
        description="True when an earlier send with this local id was found and no new message was created",
    )


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # handed over but not yet complete (e.g. MESH chunks still uploading)
    ACCEPTED = "accepted"  # complete and waiting in the recipient's inbox (or in the export directory)
    ACKNOWLEDGED = "acknowledged"  # the recipient downloaded and acknowledged it
    FAILED = "failed"  # the transport reports an error/undeliverable message


class DeliveryStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str
    state: DeliveryState
    detail: str = ""


@runtime_checkable
class Transport(Protocol):
    """How an approved submission file leaves the system."""

    async def send(self, *, path: Path, filename: str, submission_id: str, local_id: str) -> SendResult:
        """Hand the file at ``path`` over; idempotent per ``local_id``."""
        ...

    async def status(self, message_id: str) -> DeliveryStatus:
        """Where the message with this id is now."""
        ...


class TransportError(Exception):
    """Base class. ``str()`` of every subclass is safe to log: no personal data, no secrets."""


class PermanentTransportError(TransportError):
    """Retrying will not help (bad credentials, unknown recipient, rejected request, conflicting file...)."""


class TransientTransportError(TransportError):
    """The transport kept failing in a way that may clear up: retries or the deadline ran out."""


class UnknownMessageError(TransportError):
    """The transport has no record of this message id."""
