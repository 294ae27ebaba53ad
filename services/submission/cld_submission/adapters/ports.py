"""The two storage interfaces of the submission service (issue 12): what the workflow, exports and rebuild need of
the record state and of the submissions repository, whichever engine holds them.

Two adapters implement each: SQLite (``sqlite_record_store.StateStore``, ``sqlite_repository.Repository``: the
embedded default, one instance per state volume) and PostgreSQL (``pg_record_store.PgStateStore``,
``pg_repository.PgRepository``: any number of instances sharing one database). ``stores.open_stores`` picks one by
``CLD_SUBMISSION_DATABASE_URL``. The repository contract tests (``tests/integration/test_repository_contract.py``)
run one suite against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from cld_schemas.events import RecordPseudonymised, RecordValidated, SubmissionEvent, SubmissionState

from ..domain.checks import ManifestEntry
from ..domain.identity import KeyHasher
from ..domain.lifecycle import Submission
from ..domain.records import Applied, HeldOut, Incoming, RowFindings, StoredRecord
from .sqlite_repository import ExportRow


class RecordStore(Protocol):
    """The latest version of every record per LA, applied with the Kafka offsets it came from."""

    @property
    def hasher(self) -> KeyHasher: ...

    def close(self) -> None: ...

    def release(self) -> None:
        """After a storage fault: let go of connections (the next use opens new ones)."""

    def apply(
        self,
        event: RecordValidated,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Applied: ...

    def apply_many(self, items: Iterable[Incoming]) -> list[Applied]:
        """Apply records in order, in ONE transaction that also stores each partition's next offset."""

    def apply_pseudonymised(self, events: Iterable[RecordPseudonymised]) -> int: ...

    def pseudonymised_forms(
        self, la_code: str, purpose: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]: ...

    def pseudonymised_for(
        self, la_code: str, purpose: str, event_ids: Iterable[str], *, source: str | None = None
    ) -> dict[str, dict[str, Any]]: ...

    def next_offsets(self, topic: str) -> dict[int, int]: ...

    def reset(self) -> None: ...

    def la_codes(self) -> list[str]: ...

    def newest_received(self) -> dict[str, datetime]: ...

    def get(self, la_code: str, record_key: str) -> StoredRecord | None: ...

    def count_in_scope(self, la_code: str, period_start: date, period_end: date) -> int: ...

    def iter_left_out(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[HeldOut]: ...

    def iter_in_scope(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[StoredRecord]: ...

    def iter_in_scope_batches(
        self, la_code: str, period_start: date, period_end: date, *, batch: int = 2000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The in-scope rows undecoded, ``RAW_COLUMNS`` order, a batch at a time (assembly decodes a batch at once)."""
        ...


class ManifestSink(Protocol):
    """Where one submission's manifest and row findings stream while its file is written (one transaction)."""

    def add(
        self,
        entry: ManifestEntry,
        *,
        event_id: str | None = None,
        opt_outs: str | None = None,
        source: str | None = None,
    ) -> None: ...

    def add_row_findings(self, failed: RowFindings) -> None: ...

    def flush(self) -> None: ...


class SubmissionsRepository(Protocol):
    """Submissions, their summaries, manifests and row findings, the outbox of their events; and the two
    guarantees several instances need: a submission handed to the transport at most once (``claim_send``), the
    outbox drained by one instance at a time (``outbox_drainer``)."""

    def close(self) -> None: ...

    def release(self) -> None: ...

    def save(
        self,
        subs: Sequence[Submission],
        events: Sequence[SubmissionEvent],
        *,
        expected: Mapping[str, SubmissionState] | None = None,
    ) -> bool:
        """Persist submissions and queue their events, atomically; with ``expected`` (submission id -> state) only
        if each of those is still in its state (else nothing is written and the answer is False)."""

    def save_if(self, sub: Submission, event: SubmissionEvent, *, expected: SubmissionState) -> bool:
        """Persist ``sub`` and queue ``event`` only if the stored submission is still in ``expected`` (a
        compare-and-set); False (nothing written) when another instance moved it first."""

    def get(self, submission_id: str) -> Submission | None: ...

    def history(self, la_code: str | None = None) -> list[Submission]: ...

    def in_states(self, states: Iterable[SubmissionState]) -> list[Submission]: ...

    def counts(self) -> dict[tuple[str, str], int]: ...

    def put_summary(self, submission_id: str, body: str) -> None: ...

    def get_summary(self, submission_id: str) -> str | None: ...

    def write_manifest(self, submission_id: str, entries: Iterable[ManifestEntry]) -> None: ...

    def manifest(self, submission_id: str) -> AbstractContextManager[ManifestSink]:
        """A manifest writer in its own transaction: committed when the block ends, rolled back on an error."""

    def delete_manifest(self, submission_id: str) -> None: ...

    def iter_row_findings(self, submission_id: str, *, batch: int = 5000) -> Iterator[RowFindings]: ...

    def iter_manifest(self, submission_id: str, *, batch: int = 5000) -> Iterator[ManifestEntry]: ...

    def iter_export_manifest(self, submission_id: str, *, batch: int = 5000) -> Iterator[ExportRow]: ...

    def claim_send(self, submission_id: str, *, instance: str, lease: timedelta) -> bool:
        """Claim the right to hand an approved submission to the transport. True for exactly one caller among
        any number of concurrent ones (instances, threads); the claim lapses after ``lease`` (an instance killed
        mid-send: another may claim it then; the transport's local-id check keeps that from sending twice). The
        holder claiming again renews its claim (the sender's heartbeat)."""

    def outbox_drainer(self) -> AbstractContextManager[bool]:
        """Hold the outbox while draining it: True when this caller is now the only drainer, False when another
        is (the caller then skips; the other publishes)."""

    def pending_events(self, limit: int = 500) -> list[tuple[int, SubmissionEvent]]: ...

    def mark_published(self, seqs: Sequence[int]) -> None: ...
