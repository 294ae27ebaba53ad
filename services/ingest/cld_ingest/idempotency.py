"""Idempotency keys of the JSON endpoints: the same key with the same body is a replay, a different body a conflict.

The ingest publishes every accepted request and downstream keeps one record per event id, so a key reused
with a *different* body would be answered 202 and its body silently dropped downstream (issue 10, finding 8).
:class:`IdempotencyMemory` remembers, per (source, endpoint, key), a keyed fingerprint of what the key first
carried and refuses a different body with 409. Pure and in-process: no HTTP or Kafka in here.

What is remembered is an HMAC-SHA256 under a random per-process secret (never the body, never a plain hash a
reader could reverse to an NHS number), bounded in count and age. Limits, documented in docs/contract.md: the
memory is per process and lost on a restart, so a conflict is caught within one ingest process and the
window (``CLD_IDEMPOTENCY_WINDOW_SECONDS``, default 24 h; ``CLD_IDEMPOTENCY_MAX_KEYS`` most recent keys).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Claim(StrEnum):
    NEW = "new"
    """The key was not seen (within the window): publish."""
    REPLAY = "replay"
    """The key was seen with the same body: publish again (idempotent downstream) and answer 202."""
    CONFLICT = "conflict"
    """The key was seen with a different body: refuse with 409, publish nothing."""


@dataclass(frozen=True, slots=True)
class _Seen:
    fingerprint: bytes
    at: float


class IdempotencyMemory:
    """Bounded memory of idempotency keys and the fingerprint of the body each first carried."""

    def __init__(
        self,
        *,
        max_keys: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        secret: bytes | None = None,
    ) -> None:
        if max_keys < 1 or window_seconds <= 0:
            raise ValueError("max_keys and window_seconds must be positive")
        self._max = max_keys
        self._window = window_seconds
        self._clock = clock
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._seen: OrderedDict[tuple[str, str, str], _Seen] = OrderedDict()

    def fingerprint(self, parts: Iterable[bytes | str | None]) -> bytes:
        """A keyed digest of the request's meaning (the published values, LA code, opt-outs), in order."""
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in parts:
            data = b"\x00" if part is None else (part.encode("utf-8") if isinstance(part, str) else part)
            mac.update(len(data).to_bytes(8, "big"))
            mac.update(data)
        return mac.digest()

    def claim(self, *, source: str, endpoint: str, key: str, fingerprint: bytes) -> Claim:
        """Record ``key`` for ``fingerprint`` unless it is already held by another one (then CONFLICT).

        A claim stays even if the publish that follows fails: a retry must carry the same body.
        """
        now = self._clock()
        self._expire(now)
        slot = (source, endpoint, key)
        seen = self._seen.get(slot)
        if seen is not None:
            if hmac.compare_digest(seen.fingerprint, fingerprint):
                return Claim.REPLAY
            return Claim.CONFLICT
        self._seen[slot] = _Seen(fingerprint, now)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return Claim.NEW

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest.at > horizon:
                return
            self._seen.popitem(last=False)
