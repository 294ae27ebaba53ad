"""The repository contract (issue 12): the record store and the submissions repository answer the same on SQLite
(the embedded default) and on a real PostgreSQL server, and keep their guarantees with several writers at once.

Each test runs once per engine (``repository_engine``: SQLite in ``tmp_path``, PostgreSQL started by
``deploy/postgres/postgres.sh`` for the session with a fresh database per test). Concurrency is real: two
stores or repositories (two connections each), two threads, started together by a barrier.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest

from cld_schemas.events import Finding, Provenance, RecordPseudonymised, RecordValidated, SubmissionState
from cld_schemas.spec import FieldStatus, Release, Validity
from cld_submission.adapters.pg import applied_versions, migrate, migrations
from cld_submission.adapters.ports import RecordStore, SubmissionsRepository
from cld_submission.adapters.sqlite_migrations import applied_sqlite_versions, migrate_sqlite, sqlite_migrations
from cld_submission.domain.checks import ManifestEntry
from cld_submission.domain.identity import Kind
from cld_submission.domain.lifecycle import Submission, advance, approve, new_submission
from cld_submission.domain.records import Applied, Incoming, RowFindings
from tests.integration.pg_fixtures import RepositoryEngine
from tests.support.builders import LA_CODE, Row, a_ckba_row, a_request_row, a_service_row

pytestmark = pytest.mark.integration

P_START = date(2024, 4, 1)
P_END = date(2025, 3, 31)
T0 = datetime(2025, 4, 2, 9, 0, tzinfo=UTC)
TOPIC = "cld.records.validated.v1"
S = SubmissionState
_T = TypeVar("_T")
_counter = iter(range(1, 10**9))


def validated(
    row: Row,
    *,
    event_id: str | None = None,
    received_at: datetime | None = None,
    withdrawn: bool = False,
    failed: bool = False,
    la_code: str = LA_CODE,
) -> RecordValidated:
    n = next(_counter)
    findings = (
        [
            Finding(
                field="event_outcome",
                status=FieldStatus.MANDATORY,
                validity=Validity.INVALID,
                rule="CLD002",
                message="not in list",
            )
        ]
        if failed
        else []
    )
    return RecordValidated(
        la_code=la_code,
        release=Release.R1,
        provenance=Provenance(
            source="case-system", event_id=event_id or f"ev-{n}", received_at=received_at or T0 + timedelta(seconds=n)
        ),
        record=row,
        findings=findings,
        failed=failed,
        withdrawn=withdrawn,
        validated_at=T0,
    )


@pytest.fixture
def store(repository_engine: RepositoryEngine) -> Iterator[RecordStore]:
    s = repository_engine.record_store()
    yield s
    s.close()


@pytest.fixture
def repo(repository_engine: RepositoryEngine) -> Iterator[SubmissionsRepository]:
    r = repository_engine.repository()
    yield r
    r.close()


def in_scope(store: RecordStore) -> list[Any]:
    return list(store.iter_in_scope(LA_CODE, P_START, P_END))


def together(n: int, work: Callable[[int], _T]) -> list[_T]:
    """Run ``work(0..n-1)`` in n threads released at the same moment."""
    barrier = threading.Barrier(n)

    def run(i: int) -> _T:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


# -- the record store ---------------------------------------------------------------------------------


def test_records_are_applied_with_their_offsets_and_a_redelivered_tail_is_a_no_op(store: RecordStore) -> None:
    batch = [Incoming(validated(a_request_row(event_reference=f"R{i}")), TOPIC, 0, 100 + i) for i in range(5)]
    assert store.apply_many(batch) == [Applied.INSERTED] * 5
    assert store.next_offsets(TOPIC) == {0: 105}
    assert store.apply_many(batch[3:]) == [Applied.DUPLICATE_EVENT] * 2
    assert store.apply_many([Incoming(validated(a_service_row()), TOPIC, 1, 7)]) == [Applied.INSERTED]
    assert store.next_offsets(TOPIC) == {0: 105, 1: 8}
    assert store.count_in_scope(LA_CODE, P_START, P_END) == len(in_scope(store)) == 6


def test_a_later_version_replaces_the_earlier_and_an_older_offset_is_stale(store: RecordStore) -> None:
    assert store.apply(validated(a_request_row()), topic=TOPIC, partition=0, offset=5) is Applied.INSERTED
    newer = validated(a_request_row(event_end_date="25/05/2024"))
    assert store.apply(newer, topic=TOPIC, partition=0, offset=6) is Applied.REPLACED
    older = validated(a_request_row(event_end_date="21/05/2024"))
    assert store.apply(older, topic=TOPIC, partition=0, offset=4) is Applied.STALE
    [rec] = in_scope(store)
    assert rec.record["event_end_date"] == "25/05/2024"
    assert store.get(LA_CODE, rec.record_key) == rec


def test_one_batch_is_decided_record_by_record_in_order(store: RecordStore) -> None:
    """Versions of one record within one batch: each sees the outcome of the one before it (as applied singly)."""
    v1 = validated(a_service_row(), event_id="v1")
    batch = [
        Incoming(v1, TOPIC, 0, 1),
        Incoming(validated(a_service_row(event_end_date="01/02/2025"), event_id="v2"), TOPIC, 0, 2),
        Incoming(validated(a_service_row(), event_id="v3", withdrawn=True), TOPIC, 0, 3),
        Incoming(validated(a_service_row(), event_id="v0"), TOPIC, 0, 0),
        Incoming(v1, TOPIC, 0, 1),
        Incoming(validated(a_service_row(event_end_date="02/02/2025"), event_id="v4"), TOPIC, 0, 4),
        Incoming(validated(a_request_row(), event_id="other"), TOPIC, 0, 5),
    ]
    assert store.apply_many(batch) == [
        Applied.INSERTED,
        Applied.REPLACED,
        Applied.WITHDRAWN,
        Applied.STALE,
        Applied.DUPLICATE_EVENT,
        Applied.INSERTED,
        Applied.INSERTED,
    ]
    assert sorted(str(r.record["event_end_date"]) for r in in_scope(store)) == ["02/02/2025", "20/05/2024"]
    assert store.next_offsets(TOPIC) == {0: 6}


def test_a_withdrawn_record_is_removed_and_an_older_copy_cannot_bring_it_back(store: RecordStore) -> None:
    store.apply(validated(a_service_row(), received_at=T0))
    assert store.apply(validated(a_service_row(), withdrawn=True, received_at=T0 + timedelta(hours=2))) is (
        Applied.WITHDRAWN
    )
    assert in_scope(store) == []
    assert store.apply(validated(a_service_row(), received_at=T0 + timedelta(hours=1))) is Applied.STALE
    assert in_scope(store) == []
    assert store.apply(validated(a_service_row(), received_at=T0 + timedelta(hours=3))) is Applied.INSERTED
    assert len(in_scope(store)) == 1


def test_scope_left_out_and_failures_are_read_back_alike(store: RecordStore) -> None:
    store.apply(validated(a_request_row(event_reference="IN"), failed=True))
    store.apply(
        validated(a_request_row(event_reference="OUT", event_start_date="01/01/2020", event_end_date="02/01/2020"))
    )
    [rec] = in_scope(store)
    assert rec.record["event_reference"] == "IN"
    assert rec.failed
    assert rec.findings == (("event_outcome", "CLD002", Validity.INVALID.value),)
    [out] = store.iter_left_out(LA_CODE, P_START, P_END)
    assert out.event_reference == "OUT"
    assert store.la_codes() == [LA_CODE]
    assert set(store.newest_received()) == {LA_CODE}


def test_carers_by_association_follow_their_linked_adult_and_reads_stream_in_key_order(store: RecordStore) -> None:
    store.apply(validated(a_ckba_row(adult_1_linked_person_id="SYN-PERSON-0001", la_person_unique_identifier="C1")))
    store.apply(validated(a_ckba_row(adult_1_linked_person_id=None, la_person_unique_identifier="C3")))
    assert [r.kind for r in in_scope(store)] == [Kind.CARER_BY_ASSOCIATION]  # C3: no linked adult to judge by
    store.apply(validated(a_service_row(la_person_unique_identifier="SYN-PERSON-0001")))
    assert sorted(r.kind.value for r in in_scope(store)) == ["carer_by_association", "carer_by_association", "service"]
    for i in range(20):
        store.apply(validated(a_request_row(event_reference=f"R{i:03d}")))
    keys = [r.record_key for r in store.iter_in_scope(LA_CODE, P_START, P_END, batch=7)]
    assert keys == sorted(keys)
    assert len(keys) == store.count_in_scope(LA_CODE, P_START, P_END) == 23
    batches = list(store.iter_in_scope_batches(LA_CODE, P_START, P_END, batch=7))
    assert [len(b) for b in batches] == [7, 7, 7, 2]  # assembly's undecoded batches: the same rows, same order
    assert [row[0] for b in batches for row in b] == keys
    assert all(isinstance(row[7], str) and isinstance(row[10], int) for b in batches for row in b)


def test_reset_then_rebuild_gives_the_same_records_keys_and_offsets(repository_engine: RepositoryEngine) -> None:
    batch = [Incoming(validated(a_request_row(event_reference=f"R{i}")), TOPIC, 0, i) for i in range(4)]
    first = repository_engine.record_store()
    try:
        first.apply_many(batch)
        keys = [r.record_key for r in in_scope(first)]
        first.reset()
        assert in_scope(first) == []
        assert first.next_offsets(TOPIC) == {}
    finally:
        first.close()
    again = repository_engine.record_store()  # a restart: the same secret, so the same record keys
    try:
        assert again.apply_many(batch) == [Applied.INSERTED] * 4
        assert [r.record_key for r in in_scope(again)] == keys
        assert again.next_offsets(TOPIC) == {0: 4}
    finally:
        again.close()


def test_two_writers_of_one_partition_at_once_apply_each_record_exactly_once(
    repository_engine: RepositoryEngine,
) -> None:
    """A rebalance hands a partition to another instance while the first still applies its batch: both apply the
    same records at the same moment; every record is in the state once, applied by exactly one of them."""
    batch = [Incoming(validated(a_request_row(event_reference=f"R{i}")), TOPIC, 0, i) for i in range(60)]
    stores = [repository_engine.record_store() for _ in range(2)]
    try:
        outcomes = together(2, lambda i: stores[i].apply_many(batch))
        for i in range(60):
            assert sorted(o[i] for o in outcomes) == [Applied.DUPLICATE_EVENT, Applied.INSERTED]
        assert len(in_scope(stores[0])) == 60
        assert stores[1].next_offsets(TOPIC) == {0: 60}
    finally:
        for s in stores:
            s.close()


def test_pseudonymised_forms_join_on_the_full_key(store: RecordStore) -> None:
    ev = validated(a_request_row(event_reference="P"), event_id="e1")
    store.apply(ev)
    form = RecordPseudonymised(
        la_code=LA_CODE,
        provenance=ev.provenance,
        purpose="research",
        key_id="k1",
        record={"event_reference": "pseudo"},
        pseudonymised_at=T0,
    )
    assert store.apply_pseudonymised([form, form]) == 2
    assert store.pseudonymised_forms(LA_CODE, "research", [("case-system", "e1"), ("other", "e1")]) == {
        ("case-system", "e1"): {"event_reference": "pseudo"}
    }
    assert store.pseudonymised_for(LA_CODE, "research", ["e1", "missing"]) == {"e1": {"event_reference": "pseudo"}}


# -- the submissions repository -----------------------------------------------------------------------


def a_submission(repo: SubmissionsRepository, sid: str, *, approved: bool = True) -> Submission:
    sub, e1 = new_submission(
        submission_id=sid, la_code=LA_CODE, period_start=P_START, period_end=P_END, requested_by="ops", at=T0
    )
    sub, e2 = advance(sub, S.ASSEMBLED, at=T0, file_sha256="0" * 64, rows=1, size_bytes=10, file_name="f.csv")
    sub, e3 = advance(sub, S.CHECKED, at=T0)
    events = [e1, e2, e3]
    if approved:
        sub, e4 = approve(sub, by="Operator One", at=T0)
        events.append(e4)
    repo.save([sub], events)
    return sub


def test_submissions_summaries_manifests_and_the_outbox(repo: SubmissionsRepository) -> None:
    sub = a_submission(repo, "s-1", approved=False)
    assert repo.get("s-1") == sub
    assert repo.get("nope") is None
    assert repo.history(LA_CODE) == [sub] == repo.in_states([S.CHECKED])
    assert repo.in_states([S.APPROVED]) == []
    assert repo.counts() == {(LA_CODE, "checked"): 1}
    repo.put_summary("s-1", '{"a":1}')
    repo.put_summary("s-1", '{"a":2}')
    assert repo.get_summary("s-1") == '{"a":2}'
    with repo.manifest("s-1") as m:
        for k in ("k2", "k1", "K3"):
            m.add(ManifestEntry(k, "h" + k, k == "k1"), event_id="e" + k, opt_outs="", source="case-system")
        m.add_row_findings(RowFindings(2, "REF", [("f", "CLD002", "invalid", "mandatory", "msg", "fix")]))
    assert [e.record_key for e in repo.iter_manifest("s-1")] == ["K3", "k1", "k2"]  # byte order on both engines
    assert [e.open_service for e in repo.iter_manifest("s-1")] == [False, True, False]
    assert [r.event_id for r in repo.iter_export_manifest("s-1")] == ["eK3", "ek1", "ek2"]
    assert list(repo.iter_row_findings("s-1")) == [
        RowFindings(2, "REF", [("f", "CLD002", "invalid", "mandatory", "msg", "fix")])
    ]
    repo.delete_manifest("s-1")
    assert list(repo.iter_manifest("s-1")) == []
    assert list(repo.iter_row_findings("s-1")) == []
    pending = repo.pending_events()
    assert [e.state for _, e in pending] == [S.REQUESTED, S.ASSEMBLED, S.CHECKED]
    repo.mark_published([seq for seq, _ in pending[:2]])
    assert [e.state for _, e in repo.pending_events()] == [S.CHECKED]


def test_a_manifest_that_fails_leaves_nothing(repo: SubmissionsRepository) -> None:
    a_submission(repo, "s-1", approved=False)

    def fail_midway() -> None:
        with repo.manifest("s-1") as m:
            m.add(ManifestEntry("k1", "h", False))
            m.flush()
            raise RuntimeError("the file could not be written")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert list(repo.iter_manifest("s-1")) == []


def test_save_if_moves_a_submission_once(repo: SubmissionsRepository) -> None:
    sub = a_submission(repo, "s-1")
    sent, ev = advance(sub, S.SENT, at=T0, message_id="m1")
    assert repo.save_if(sent, ev, expected=S.APPROVED)
    assert not repo.save_if(sent, ev, expected=S.APPROVED)  # a second instance's step: it moved already
    assert repo.get("s-1") == sent
    assert [e.state for _, e in repo.pending_events()][-1] is S.SENT
    assert [e.state for _, e in repo.pending_events()].count(S.SENT) == 1


def test_save_with_expected_states_writes_all_or_nothing(repo: SubmissionsRepository) -> None:
    """A new version superseding an earlier one that another instance approved meanwhile is not saved."""
    old = a_submission(repo, "old", approved=False)
    new, e_new = new_submission(
        submission_id="new", la_code=LA_CODE, period_start=P_START, period_end=P_END, requested_by="ops", at=T0
    )
    retired, e_retired = advance(old, S.SUPERSEDED, at=T0, superseded_by="new")
    approved, e_approved = approve(old, by="Operator One", at=T0)
    assert repo.save_if(approved, e_approved, expected=S.CHECKED)  # the other instance's approval
    before = len(repo.pending_events())
    assert not repo.save([new, retired], [e_new, e_retired], expected={"old": S.CHECKED})
    assert repo.get("new") is None
    stored = repo.get("old")
    assert stored is not None
    assert stored.state is S.APPROVED
    assert len(repo.pending_events()) == before
    assert repo.save([new], [e_new], expected={"old": S.APPROVED})
    assert repo.get("new") == new


def test_a_submission_is_claimed_for_sending_by_exactly_one_of_two_concurrent_instances(
    repository_engine: RepositoryEngine,
) -> None:
    repos = [repository_engine.repository() for _ in range(2)]
    try:
        for n in range(5):
            a_submission(repos[0], f"s-{n}")
            sid = f"s-{n}"
            won = together(2, lambda i, sid=sid: repos[i].claim_send(sid, instance=f"i{i}", lease=timedelta(minutes=5)))
            assert sorted(won) == [False, True], n
            winner, loser = (0, 1) if won[0] else (1, 0)
            assert not repos[loser].claim_send(sid, instance=f"i{loser}", lease=timedelta(minutes=5))  # held
            assert repos[loser].claim_send(
                sid, instance=f"i{winner}", lease=timedelta(minutes=5)
            )  # renewed by its holder
        a_submission(repos[0], "checked-only", approved=False)
        assert not repos[1].claim_send("checked-only", instance="i1", lease=timedelta(minutes=5))
        # A claim whose holder died lapses after its lease: another instance may take it over.
        assert repos[1].claim_send("s-0", instance="i1", lease=timedelta(0))
    finally:
        for r in repos:
            r.close()


def test_the_outbox_is_drained_by_one_of_two_concurrent_drainers_and_each_event_published_once(
    repository_engine: RepositoryEngine,
) -> None:
    repos = [repository_engine.repository() for _ in range(2)]
    try:
        for n in range(20):
            a_submission(repos[0], f"s-{n}")  # 4 events each
        published: list[int] = []
        active: list[int] = []  # the drainers holding the outbox right now
        overlaps: list[list[int]] = []
        lock = threading.Lock()

        def drain(i: int) -> int:
            done = 0
            for _ in range(5):
                with repos[i].outbox_drainer() as mine:
                    if not mine:
                        continue
                    with lock:
                        active.append(i)
                        if len(active) > 1:
                            overlaps.append(list(active))
                    try:
                        while batch := repos[i].pending_events(limit=7):
                            with lock:
                                published.extend(seq for seq, _ in batch)
                            repos[i].mark_published([seq for seq, _ in batch])
                            done += len(batch)
                    finally:
                        with lock:
                            active.remove(i)
            return done

        counts = together(2, drain)
        assert overlaps == []
        assert sum(counts) == 80
        assert sorted(published) == sorted(set(published))
        assert len(published) == 80
        assert repos[1].pending_events() == []
        with repos[0].outbox_drainer() as first, repos[1].outbox_drainer() as second:
            assert (first, second) == (True, False)
        with repos[1].outbox_drainer() as after:
            assert after  # released when its holder's block ended
    finally:
        for r in repos:
            r.close()


def test_migrations_are_applied_once_when_several_instances_start_together(
    repository_engine: RepositoryEngine,
) -> None:
    def start(_: int) -> tuple[RecordStore, SubmissionsRepository]:
        return repository_engine.record_store(), repository_engine.repository()

    opened = together(3, start)
    try:
        a_submission(opened[2][1], "s-1")
        assert opened[0][1].get("s-1") is not None
        opened[1][0].apply(validated(a_request_row()))
        assert len(in_scope(opened[0][0])) == 1
    finally:
        for s, r in opened:
            s.close()
            r.close()
    if repository_engine.database_url:  # PostgreSQL: recorded in schema_migrations, each version once
        with psycopg.connect(repository_engine.database_url, autocommit=True) as conn:
            assert applied_versions(conn) == [v for v, _, _ in migrations()]
            assert migrate(conn) == []  # run again: nothing to do
        return
    for database, file in (("records", "records.sqlite3"), ("submissions", "submissions.sqlite3")):
        with closing(sqlite3.connect(repository_engine.state_dir / file, isolation_level=None)) as db:
            assert applied_sqlite_versions(db) == [1, *(v for v, _, _ in sqlite_migrations(database))]
            assert migrate_sqlite(db, database, baseline=lambda: pytest.fail("the baseline ran twice")) == []
