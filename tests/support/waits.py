"""Bounded waits on conditions (never fixed sleeps as synchronisation), shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(check: Callable[[], Awaitable[T]], *, what: str, seconds: float, poll: float = 0.2) -> T:
    """Poll ``check`` until it returns a truthy value, which is returned; TimeoutError naming ``what`` after
    ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                value = await check()
                if value:
                    return value
                await asyncio.sleep(poll)  # polling interval of a bounded wait, not synchronisation
    except TimeoutError:
        raise TimeoutError(f"{what}: not within {seconds} s") from None
