"""How an approved CLD submission file leaves the system: over MESH, or as a file for manual upload."""

from .base import (
    DeliveryState,
    DeliveryStatus,
    PermanentTransportError,
    SendResult,
    TransientTransportError,
    Transport,
    TransportError,
    UnknownMessageError,
)
from .file_export import FileExportTransport
from .mesh import MeshSettings, MeshTransport
from .mesh_protocol import MeshHttpError, SentMessage, classify_mesh_error
from .retry import RetryError, RetryPolicy, Transient, retry_async

__all__ = [
    "DeliveryState",
    "DeliveryStatus",
    "FileExportTransport",
    "MeshHttpError",
    "MeshSettings",
    "MeshTransport",
    "PermanentTransportError",
    "RetryError",
    "RetryPolicy",
    "SendResult",
    "SentMessage",
    "Transient",
    "TransientTransportError",
    "Transport",
    "TransportError",
    "UnknownMessageError",
    "classify_mesh_error",
    "retry_async",
]
