"""Manual route: place the submission file in an export directory for the LA to upload by hand.

The file appears atomically (written to a hidden temporary name in the same directory, fsynced, then
renamed) together with a ``<name>.sha256`` sidecar in ``sha256sum`` format. Sending the same content under
the same name again is a no-op; different content under an existing name is refused rather than replacing
a file that may already have been uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cld_runtime.files import private_dir

from .base import DeliveryState, DeliveryStatus, PermanentTransportError, SendResult, UnknownMessageError

_COPY_BLOCK = 1024 * 1024
SIDECAR_SUFFIX = ".sha256"


def _check_name(filename: str) -> None:
    if (
        not filename
        or filename in {".", ".."}
        or filename.startswith(".")
        or "/" in filename
        or "\\" in filename
        or "\x00" in filename
        or filename.endswith(SIDECAR_SUFFIX)
    ):
        raise PermanentTransportError("export file name must be a plain, non-hidden file name")


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_COPY_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(directory: Path, name: str, write: Callable[[BinaryIO], object]) -> None:
    """Create ``directory/name`` atomically; ``write`` is called with the open temporary file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # personal data: private to the service's user (issue 10)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _sidecar_text(sha256: str, name: str) -> bytes:
    return f"{sha256}  {name}\n".encode()


class FileExportTransport:
    """Writes files into ``directory``; ``message_id`` is the file name."""

    name = "file_export"

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)

    @property
    def directory(self) -> Path:
        return self._directory

    async def send(self, *, path: Path, filename: str, submission_id: str, local_id: str) -> SendResult:
        return await asyncio.to_thread(self._send_sync, Path(path), filename)

    async def status(self, message_id: str) -> DeliveryStatus:
        return await asyncio.to_thread(self._status_sync, message_id)

    def _send_sync(self, source: Path, filename: str) -> SendResult:
        _check_name(filename)
        private_dir(self._directory)
        target = self._directory / filename
        sidecar_name = filename + SIDECAR_SUFFIX

        if target.exists():
            existing_sha, existing_size = _sha256_of(target)
            source_sha, _ = _sha256_of(source)
            if existing_sha != source_sha:
                raise PermanentTransportError(
                    f"export file {filename!r} already exists with different content; refusing to replace it"
                )
            # Same content: make sure the sidecar is there (a crash may have happened between the renames).
            sidecar = self._directory / sidecar_name
            if not sidecar.exists() or sidecar.read_bytes() != _sidecar_text(existing_sha, filename):
                _atomic_write(self._directory, sidecar_name, lambda f: f.write(_sidecar_text(existing_sha, filename)))
            return SendResult(
                transport=self.name,
                message_id=filename,
                sent_at=datetime.fromtimestamp(target.stat().st_mtime, tz=UTC),
                bytes_sent=existing_size,
                sha256=existing_sha,
                deduplicated=True,
            )

        digest = hashlib.sha256()
        size = 0

        def copy(out: BinaryIO) -> None:
            nonlocal size
            with source.open("rb") as src:
                while block := src.read(_COPY_BLOCK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)

        _atomic_write(self._directory, filename, copy)
        sha = digest.hexdigest()
        _atomic_write(self._directory, sidecar_name, lambda f: f.write(_sidecar_text(sha, filename)))
        return SendResult(
            transport=self.name,
            message_id=filename,
            sent_at=datetime.now(UTC),
            bytes_sent=size,
            sha256=sha,
        )

    def _status_sync(self, message_id: str) -> DeliveryStatus:
        _check_name(message_id)
        target = self._directory / message_id
        if not target.exists():
            raise UnknownMessageError(f"no export file named {message_id!r}")
        return DeliveryStatus(
            message_id=message_id,
            state=DeliveryState.ACCEPTED,
            detail="written to the export directory; upload it by hand (no acknowledgement is tracked)",
        )
