"""A small retry helper: exponential backoff with jitter, bounded by attempts and an overall deadline.

Pure apart from the injected ``sleep``/``clock``/``random`` callables, so tests drive it with a fake clock.
The caller decides which failures are worth retrying through ``classify``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=10, ge=1, description="attempts per operation (1 = no retry)")
    base_delay: float = Field(default=1.0, gt=0, description="seconds before the first retry")
    max_delay: float = Field(default=60.0, gt=0, description="cap on one backoff delay, seconds")
    deadline: float = Field(default=900.0, gt=0, description="overall budget for a whole send, seconds")

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryPolicy:
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must be >= base_delay")
        return self

    def backoff(self, retry_number: int, rnd: float) -> float:
        """Delay before retry ``retry_number`` (1-based); ``rnd`` in [0, 1) gives equal jitter in [d/2, d)."""
        exp = min(self.max_delay, self.base_delay * float(2 ** min(retry_number - 1, 62)))
        return exp / 2 + (exp / 2) * rnd


@dataclass(frozen=True)
class Transient:
    """``classify`` returns this for a failure worth retrying; ``retry_after`` honours a server's hint."""

    retry_after: float | None = None


class RetryError(Exception):
    """Gave up on a transient failure. ``reason`` is 'max_attempts' or 'deadline'; the cause is chained."""

    def __init__(self, operation: str, reason: str, attempts: int, last_error: BaseException) -> None:
        super().__init__(
            f"{operation}: gave up after {attempts} attempt(s) ({reason}); last error: {type(last_error).__name__}"
        )
        self.operation = operation
        self.reason = reason
        self.attempts = attempts
        self.last_error = last_error


OnRetry = Callable[[str, int, float, BaseException], None]
"""Called before each backoff sleep with (operation, failed attempt number, delay, error)."""


async def retry_async(
    operation: str,
    fn: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], Transient | None],
    deadline_at: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rnd: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
) -> T:
    """Run ``fn(attempt)`` (attempt is 1-based) until it succeeds.

    A failure that ``classify`` maps to ``None`` is permanent and propagates unchanged at once.
    A transient failure is retried after a backoff delay unless ``policy.max_attempts`` is used up or the
    delay would end after ``deadline_at`` (a ``clock()`` value; default now + ``policy.deadline``); then
    ``RetryError`` is raised from the last error.
    """
    if deadline_at is None:
        deadline_at = clock() + policy.deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn(attempt)
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                raise
            if attempt >= policy.max_attempts:
                raise RetryError(operation, "max_attempts", attempt, exc) from exc
            delay = policy.backoff(attempt, rnd())
            if verdict.retry_after is not None:
                delay = max(delay, min(verdict.retry_after, policy.max_delay))
            if clock() + delay > deadline_at:
                raise RetryError(operation, "deadline", attempt, exc) from exc
            if on_retry is not None:
                on_retry(operation, attempt, delay, exc)
            await sleep(delay)
