"""An append-only, hash-chained audit log of submissions (JSON lines in the state directory).

Each line is a JSON object with ``seq`` (1, 2, ...), ``prev`` (the SHA-256 of the previous line's bytes,
64 zeros for the first line), ``self`` (the SHA-256 of the entry without ``self``) and the entry's fields:
who asked, who approved, file hash, row counts, MESH message id and outcome. Every append is flushed and
fsync'd before it returns. Changing, removing or reordering any line breaks the chain at that point, which
``verify_audit_log`` reports. (A chain shows tampering; it cannot stop someone who rewrites the whole file
and recomputes every hash: keep a copy of the latest line hash elsewhere for that.)

Entries carry no personal data: ids, LA codes, dates, hashes, counts and operator names.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cld_runtime.files import private_dir, tighten

GENESIS: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    lines: int
    first_bad_line: int | None = None
    reason: str | None = None
    last_hash: str = GENESIS


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry without its own ``self`` field: an edit of the LAST line is detected too."""
    body = {k: v for k, v in entry.items() if k != "self"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


class AuditLog:
    """Appends chained entries. Safe for threads of one process (one writer per file)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        private_dir(self._path.parent)
        tighten(self._path)  # an audit log written by an earlier version (0640)
        self._lock = threading.Lock()
        check = verify_audit_log(self._path)
        if not check.ok:
            # Refuse to extend a broken chain: the break must be looked at, not buried under new lines.
            raise RuntimeError(f"audit log {self._path.name} fails verification at line {check.first_bad_line}")
        self._seq = check.lines
        self._last = check.last_hash

    @property
    def path(self) -> Path:
        return self._path

    def append(self, action: str, **fields: Any) -> str:
        """Append one entry; returns its line hash."""
        with self._lock:
            entry = {
                "seq": self._seq + 1,
                "at": datetime.now(UTC).isoformat(),
                "action": action,
                **{k: v for k, v in fields.items() if v is not None},
                "prev": self._last,
            }
            entry["self"] = _entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq += 1
            self._last = _line_hash(line)
            return self._last


def verify_audit_log(path: Path) -> AuditVerification:
    """Check every line's ``prev`` and ``seq``; a missing file is an empty, valid log."""
    prev = GENESIS
    n = 0
    if not Path(path).exists():
        return AuditVerification(ok=True, lines=0)
    with Path(path).open("rb") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\n")
            try:
                entry = json.loads(line)
            except ValueError:
                return AuditVerification(False, n - 1, n, "not JSON", prev)
            if not isinstance(entry, dict) or entry.get("prev") != prev:
                return AuditVerification(False, n - 1, n, "chain broken (prev hash differs)", prev)
            if entry.get("self") != _entry_hash(entry):
                return AuditVerification(False, n - 1, n, "entry hash differs (line edited)", prev)
            if entry.get("seq") != n:
                return AuditVerification(False, n - 1, n, "sequence number out of order", prev)
            if not raw.endswith(b"\n"):
                return AuditVerification(False, n - 1, n, "last line incomplete", prev)
            prev = _line_hash(line)
    return AuditVerification(ok=True, lines=n, last_hash=prev)


def read_audit_log(path: Path, *, submission_id: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        with Path(path).open("rb") as f:
            for raw in f:
                entry = json.loads(raw)
                if submission_id is None or entry.get("submission_id") == submission_id:
                    out.append(entry)
    except FileNotFoundError:
        return []
    return out
