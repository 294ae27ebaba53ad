"""The submission service's consumers when storing fails, and exports joined on the full pseudonymised key.

- A readable record whose storage fails on its own (the state cannot key it: ValueError; an IntegrityError) is
  dead-lettered (processing_error, a pointer, never the payload) after its batch is split, and the records after
  it are stored: no stalled partition.
- A transient storage error (sqlite3.OperationalError: 'database is locked', disk I/O) is not dead-lettered: the
  handler fails, so the batch is redelivered, and nothing is lost.
- Two sources (and another LA) reusing one event id keep their own pseudonymised forms, and an export picks
  each row's own.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from cld_schemas import topics
from cld_schemas.events import DeadLetter, DeadLetterReason, Provenance, RecordPseudonymised, RecordValidated
from cld_schemas.spec import Release
from cld_submission.adapters.sqlite_record_store import StateStore
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.domain.records import Incoming
from cld_submission.entrypoints.app import create_app
from cld_submission.entrypoints.settings import SubmissionSettings
from cld_submission.service_layer.workflow import SubmissionWorkflow
from tests.component.test_submission_service import (
    GRACE,
    OTHER_LA,
    PERIOD,
    TEST_ICB,
    operators_registry,
    policy_with_bases,
)
from tests.support.builders import LA_CODE, a_request_row, a_service_row
from tests.support.capture import Captured, capture

T0 = datetime(2025, 4, 2, 9, 0, tzinfo=UTC)
PERIOD_START = datetime(2024, 4, 1, tzinfo=UTC).date()
PERIOD_END = datetime(2025, 3, 31, tzinfo=UTC).date()
BAD_PERSON = "P-BAD-9990000018"
"""A value of the record whose storage fails: it must not appear in the dead letter."""


def a_validated(event_id: str, reference: str, *, source: str = "case-system", person: str | None = None) -> bytes:
    row = a_request_row(event_reference=reference, la_person_unique_identifier=person or f"P-{reference}")
    event = RecordValidated(
        la_code=LA_CODE,
        release=Release.R1,
        provenance=Provenance(source=source, event_id=event_id, received_at=T0 + timedelta(seconds=1)),
        record=row,
        findings=[],
        failed=False,
        validated_at=T0,
    )
    return event.model_dump_json().encode()


def a_pseudonymised(event_id: str, source: str, record: dict[str, str | None], *, la_code: str = LA_CODE) -> bytes:
    event = RecordPseudonymised(
        la_code=la_code,
        provenance=Provenance(source=source, event_id=event_id, received_at=T0),
        key_id="test-key",
        purpose=TEST_ICB,
        record=record,
        pseudonymised_at=T0,
    )
    return event.model_dump_json().encode()


@dataclass
class Harness:
    broker: KafkaBroker
    workflow: SubmissionWorkflow
    deadletters: Captured
    client: httpx.AsyncClient

    @property
    def state(self) -> StateStore:
        return self.workflow.state

    def stored(self) -> set[str]:
        return {r.event_id for r in self.state.iter_in_scope(LA_CODE, PERIOD_START, PERIOD_END)}

    def fail_storing(self, monkeypatch: pytest.MonkeyPatch, event_id: str, error: Callable[[], Exception]) -> None:
        """Make storing the record with this event id raise ``error()`` (whatever batch it is in)."""
        real = self.state._apply_one  # the injection point of the fault

        def failing(cur: sqlite3.Cursor, item: Incoming, next_offsets: dict[tuple[str, int], int]) -> object:
            if item.event.provenance.event_id == event_id:
                raise error()
            return real(cur, item, next_offsets)

        monkeypatch.setattr(self.state, "_apply_one", failing)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        log_level="WARNING",
        state_dir=tmp_path / "state",
        consumer_batch_timeout_ms=1,
    )
    registry, keys = operators_registry()
    app = create_app(
        settings, transport=FileExportTransport(tmp_path / "export"), tenants=registry, policy=policy_with_bases()
    )
    broker: KafkaBroker = app.state.broker
    deadletters = capture(broker, topics.DEADLETTER)
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {keys[GRACE]}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://submission", headers=headers) as client:
            yield Harness(broker, app.state.workflow, deadletters, client)


@pytest.mark.parametrize(
    "error",
    [
        lambda: ValueError("cannot key the record"),
        lambda: sqlite3.IntegrityError("UNIQUE constraint failed"),
    ],
    ids=["value-error", "integrity-error"],
)
async def test_a_record_that_cannot_be_stored_is_dead_lettered_and_the_following_ones_are_stored(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, error: Callable[[], Exception]
) -> None:
    harness.fail_storing(monkeypatch, "bad", error)
    bad = a_validated("bad", "R-BAD", person=BAD_PERSON)
    batch = [a_validated("good-0", "R0"), bad, a_validated("good-1", "R1"), a_validated("good-2", "R2")]

    await harness.broker.publish_batch(*batch, topic=topics.VALIDATED)  # the handler does not raise: acked

    assert harness.stored() == {"good-0", "good-1", "good-2"}
    [body] = harness.deadletters.bodies
    letter = DeadLetter.model_validate(body)
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert letter.service == "submission"
    assert letter.topic == topics.VALIDATED
    assert letter.payload_hmac is None  # no dead-letter key: no fingerprint
    assert letter.payload_bytes == len(bad)
    assert "storing failed" in letter.detail
    text = repr(body)
    assert BAD_PERSON not in text
    assert "R-BAD" not in text
    assert "cannot key" not in text  # the exception's message is not carried either
    assert "UNIQUE" not in text

    # The next batch on the partition goes through as usual.
    await harness.broker.publish_batch(a_validated("good-3", "R3"), topic=topics.VALIDATED)
    assert harness.stored() == {"good-0", "good-1", "good-2", "good-3"}
    assert len(harness.deadletters.bodies) == 1


@pytest.mark.parametrize("message", ["database is locked", "disk I/O error"])
async def test_a_transient_storage_error_is_retried_not_dead_lettered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    harness.fail_storing(monkeypatch, "flaky", lambda: sqlite3.OperationalError(message))
    batch = [a_validated("good-0", "R0"), a_validated("flaky", "R-FLAKY"), a_validated("good-1", "R1")]

    # The handler fails (the batch is nacked, so Kafka delivers it again): nothing is dead-lettered.
    with pytest.raises(sqlite3.OperationalError):
        await harness.broker.publish_batch(*batch, topic=topics.VALIDATED)
    assert harness.deadletters.bodies == []
    assert "flaky" not in harness.stored()

    # The redelivery after the database recovers stores every record, once.
    monkeypatch.undo()
    await harness.broker.publish_batch(*batch, topic=topics.VALIDATED)
    assert harness.stored() == {"good-0", "flaky", "good-1"}
    assert harness.deadletters.bodies == []


async def test_a_pseudonymised_record_that_cannot_be_stored_is_dead_lettered_and_the_rest_are_stored(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = harness.state.apply_pseudonymised

    def failing(events: list[RecordPseudonymised]) -> int:
        if any(e.provenance.event_id == "bad" for e in events):
            raise ValueError("cannot store")
        return real(events)

    monkeypatch.setattr(harness.state, "apply_pseudonymised", failing)
    forms = [a_pseudonymised(e, "case-system", {"event_pseudonym": f"ep-{e}"}) for e in ("a", "bad", "b")]
    await harness.broker.publish_batch(*forms, topic=topics.PSEUDONYMISED)

    [body] = harness.deadletters.bodies
    assert DeadLetter.model_validate(body).reason is DeadLetterReason.PROCESSING_ERROR
    assert "ep-bad" not in repr(body)
    found = harness.state.pseudonymised_for(LA_CODE, TEST_ICB, ["a", "bad", "b"])
    assert found == {"a": {"event_pseudonym": "ep-a"}, "b": {"event_pseudonym": "ep-b"}}


async def test_two_sources_reusing_an_event_id_each_export_their_own_pseudonymised_form(harness: Harness) -> None:
    # Two sources of LA 318 send different records under the same event id ...
    await harness.broker.publish(a_validated("shared-1", "A", source="case-system"), topics.VALIDATED)
    await harness.broker.publish(a_validated("shared-1", "B", source="care-provider"), topics.VALIDATED)
    service = RecordValidated.model_validate_json(a_validated("own-1", "S"))
    service = service.model_copy(
        update={"record": a_service_row(event_reference="S", la_person_unique_identifier="P-S")}
    )
    await harness.broker.publish(service.model_dump_json().encode(), topics.VALIDATED)
    # ... and each gets its own pseudonymised form; another LA reuses the id too (published last: under the
    # old (event id, purpose) key it would have overwritten the others).
    await harness.broker.publish(
        a_pseudonymised("shared-1", "case-system", {"event_pseudonym": "ep-A"}), topics.PSEUDONYMISED
    )
    await harness.broker.publish(
        a_pseudonymised("shared-1", "care-provider", {"event_pseudonym": "ep-B"}), topics.PSEUDONYMISED
    )
    await harness.broker.publish(
        a_pseudonymised("own-1", "case-system", {"event_pseudonym": "ep-S"}), topics.PSEUDONYMISED
    )
    await harness.broker.publish(
        a_pseudonymised("shared-1", "case-system", {"event_pseudonym": "ep-OTHER-LA"}, la_code=OTHER_LA),
        topics.PSEUDONYMISED,
    )

    forms = harness.state.pseudonymised_forms(
        LA_CODE, TEST_ICB, [("case-system", "shared-1"), ("care-provider", "shared-1")]
    )
    assert forms == {
        ("case-system", "shared-1"): {"event_pseudonym": "ep-A"},
        ("care-provider", "shared-1"): {"event_pseudonym": "ep-B"},
    }
    assert harness.state.pseudonymised_forms(OTHER_LA, TEST_ICB, [("case-system", "shared-1")]) == {
        ("case-system", "shared-1"): {"event_pseudonym": "ep-OTHER-LA"}
    }

    resp = await harness.client.post("/v1/submissions", json=PERIOD)
    assert resp.status_code == 201, resp.text
    sub = resp.json()["submission"]
    assert sub["rows"] == 3
    exported = await harness.client.post(
        f"/v1/submissions/{sub['submission_id']}/exports", json={"recipient": TEST_ICB}
    )
    assert exported.status_code == 200, exported.text
    got = sorted(r["event_pseudonym"] for r in csv.DictReader(io.StringIO(exported.content.decode("utf-8"))))
    assert got == ["ep-A", "ep-B", "ep-S"]


async def test_an_la_operators_listing_never_contains_another_las_submission(tmp_path: Path) -> None:
    """Both LAs have a submission: each LA operator's listing (``cld submission history`` calls this API, with
    or without ``--la``) holds only their own LA's; the hub operator of both sees both."""
    from tests.component.test_submission_service import ADA, OLU

    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", state_dir=tmp_path / "state"
    )
    registry, keys = operators_registry()
    app = create_app(
        settings, transport=FileExportTransport(tmp_path / "export"), tenants=registry, policy=policy_with_bases()
    )
    broker: KafkaBroker = app.state.broker
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://submission") as client:
            ids: dict[str, str] = {}
            for la, op in ((LA_CODE, GRACE), (OTHER_LA, OLU)):
                event = RecordValidated.model_validate_json(a_validated(f"ev-{la}", f"R-{la}"))
                event = event.model_copy(update={"la_code": la})
                await broker.publish(event.model_dump_json().encode(), topics.VALIDATED, key=la.encode())
                body = {**PERIOD, "la_code": la}
                resp = await client.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {keys[op]}"})
                assert resp.status_code == 201, resp.text
                ids[la] = resp.json()["submission"]["submission_id"]

            def listing(op: str, la: str | None = None) -> list[tuple[str, str]]:
                return [(s["la_code"], s["submission_id"]) for s in seen[(op, la)]]

            seen: dict[tuple[str, str | None], list[dict[str, str]]] = {}
            for op in (GRACE, OLU, ADA):
                for asked in (None, LA_CODE, OTHER_LA):
                    resp = await client.get(
                        "/v1/submissions",
                        params={"la": asked} if asked else {},
                        headers={"Authorization": f"Bearer {keys[op]}"},
                    )
                    seen[(op, asked)] = resp.json() if resp.status_code == 200 else []
                    if op != ADA and asked is not None and asked != (LA_CODE if op == GRACE else OTHER_LA):
                        assert resp.status_code == 403, (op, asked)

            assert listing(GRACE) == listing(GRACE, LA_CODE) == [(LA_CODE, ids[LA_CODE])]
            assert listing(OLU) == listing(OLU, OTHER_LA) == [(OTHER_LA, ids[OTHER_LA])]
            assert listing(GRACE, OTHER_LA) == listing(OLU, LA_CODE) == []
            assert sorted(listing(ADA)) == sorted([(LA_CODE, ids[LA_CODE]), (OTHER_LA, ids[OTHER_LA])])


async def test_a_storage_fault_makes_the_service_not_ready_until_a_write_succeeds(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, finding 3: while storing fails the service says so (readiness names the state store), it
    stays alive, logs the real cause (not a failed ROLLBACK's), and is ready again after the next good write."""
    ready = (await harness.client.get("/health/ready")).json()
    assert ready["state_store"] == "writable"
    assert "state_store" not in ready.get("failing", [])

    harness.fail_storing(monkeypatch, "full", lambda: sqlite3.OperationalError("database or disk is full"))
    batch = [a_validated("a-0", "RA0"), a_validated("full", "R-FULL"), a_validated("a-1", "RA1")]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):  # the real error, not 'cannot rollback'
        await harness.broker.publish_batch(*batch, topic=topics.VALIDATED)

    response = await harness.client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503
    assert body["state_store"] == "unavailable"
    assert "state_store" in body["failing"]
    assert "disk is full" in body["state_store_cause"]
    assert (await harness.client.get("/health")).json()["state_store"] == "unavailable"  # the alias
    assert (await harness.client.get("/health/live")).status_code == 200
    assert not harness.state._db.is_open  # its files were let go (a full or read-only disk can be fixed)

    monkeypatch.undo()
    await harness.broker.publish_batch(*batch, topic=topics.VALIDATED)
    assert harness.stored() == {"a-0", "full", "a-1"}
    assert (await harness.client.get("/health/ready")).json()["state_store"] == "writable"


async def test_every_handler_call_is_reported_to_consumer_progress(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readiness middleware sees the consumers' calls: a failing batch starts a failure streak, the next
    good one ends it (``cld_runtime.http.ConsumerProgress``)."""
    progress = harness.client._transport.app.state.readiness.progress  # type: ignore[attr-defined]
    harness.fail_storing(monkeypatch, "x", lambda: sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(sqlite3.OperationalError):
        await harness.broker.publish_batch(a_validated("x", "RX"), topic=topics.VALIDATED)
    assert progress._failures == 1
    monkeypatch.undo()
    await harness.broker.publish_batch(a_validated("x", "RX"), topic=topics.VALIDATED)
    assert progress._failures == 0
    assert progress._last_ok is not None
