"""Records in: consumed batches of validated and pseudonymised records into the record state, one transaction per
batch, split on failure so that one bad-but-readable record cannot stall its partition; storage faults reported to
the storage health (readiness) and retried by Kafka's redelivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from cld_schemas.events import RecordPseudonymised

from ..adapters.storage import is_storage_fault
from ..domain.records import Applied, Incoming
from .parts import WorkflowParts

_Item = TypeVar("_Item")
_T = TypeVar("_T")
_Msg = TypeVar("_Msg")


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error may pass on a retry (the database is locked or busy, the disk full or read-only,
    disk I/O, out of memory, a damaged or unreadable database file) rather than being caused by the record: then
    nothing is dead-lettered and the batch is retried (``adapters.storage.is_storage_fault``). IntegrityError,
    ValueError and the like are the record's own."""
    return is_storage_fault(exc)


async def store_or_split(
    items: Sequence[_Item],
    store: Callable[[list[_Item]], Awaitable[object]],
    reject: Callable[[_Item, Exception], Awaitable[None]],
) -> list[_Item]:
    """Store a consumed batch so that one bad-but-readable record cannot stall its partition.

    The batch is stored in one transaction. When that fails with an error that is not transient, each record
    is stored again on its own, in its own transaction, in order: a record that fails on its own is handed to
    ``reject`` (the caller dead-letters it) and the others are stored. A transient error (``is_transient``),
    in the batch or in the split, is re-raised so the whole batch is redelivered: nothing is lost, and what
    was already stored is recognised again as a repeat. Returns the rejected records."""
    batch = list(items)
    try:
        await store(batch)
        return []
    except Exception as exc:
        if is_transient(exc):
            raise
    rejected: list[_Item] = []
    for item in batch:
        try:
            await store([item])
        except Exception as exc:
            if is_transient(exc):
                raise
            await reject(item, exc)
            rejected.append(item)
    return rejected


class RecordIntake(WorkflowParts):
    """The records-in use cases."""

    async def _stored(self, write: Awaitable[_T]) -> _T:
        """Run a consumer's write and report its outcome to ``storage``: after a storage fault, wait (bounded
        backoff) and re-raise, so the batch is not acknowledged and Kafka hands it back; nothing is lost."""
        try:
            result = await write
        except Exception as exc:
            if is_storage_fault(exc):
                self.storage.failed(exc)
                await self.storage.backoff()
            raise
        self.storage.ok()
        return result

    async def on_records(self, items: list[Incoming]) -> list[Applied]:
        return await asyncio.to_thread(self.state.apply_many, items)

    async def on_records_or_split(
        self, items: Sequence[tuple[_Msg, Incoming]], reject: Callable[[_Msg, Exception], Awaitable[None]]
    ) -> list[_Msg]:
        """``on_records`` for consumed (message, record) pairs, split on failure (``store_or_split``): a record
        whose storage fails on its own goes to ``reject`` with its message. Returns the rejected messages."""

        async def store(batch: list[tuple[_Msg, Incoming]]) -> object:
            return await self.on_records([i for _, i in batch])

        async def rejected(pair: tuple[_Msg, Incoming], exc: Exception) -> None:
            await reject(pair[0], exc)

        return [m for m, _ in await self._stored(store_or_split(items, store, rejected))]

    async def on_pseudonymised_or_split(
        self,
        items: Sequence[tuple[_Msg, RecordPseudonymised]],
        reject: Callable[[_Msg, Exception], Awaitable[None]],
    ) -> list[_Msg]:
        """The pseudonymised records into the record state (``StateStore.apply_pseudonymised``), split on
        failure like ``on_records_or_split``."""

        async def store(batch: list[tuple[_Msg, RecordPseudonymised]]) -> object:
            return await asyncio.to_thread(self.state.apply_pseudonymised, [e for _, e in batch])

        async def rejected(pair: tuple[_Msg, RecordPseudonymised], exc: Exception) -> None:
            await reject(pair[0], exc)

        return [m for m, _ in await self._stored(store_or_split(items, store, rejected))]
