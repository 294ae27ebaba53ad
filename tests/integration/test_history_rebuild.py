"""On a real broker: ``cld submission rebuild-history`` gives back the submissions and a verified audit chain from
``cld.submissions.v1`` alone, says what it could not read, and never writes over an existing history
(issue 12, item 4)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from cld_cli.main import app
from cld_schemas import topics
from cld_schemas.events import SubmissionEvent, SubmissionState
from cld_submission.adapters.audit_log import read_audit_log, verify_audit_log
from cld_submission.adapters.sqlite_repository import Repository
from cld_submission.domain.lifecycle import Submission, advance, approve, new_submission
from cld_submission.entrypoints.rebuild_history import AUDIT_NAME

pytestmark = pytest.mark.integration

S = SubmissionState
T0 = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


def _lifecycle(sid: str, la: str, t0: datetime, *, until: SubmissionState) -> tuple[Submission, list[SubmissionEvent]]:
    sub, e = new_submission(
        submission_id=sid,
        la_code=la,
        period_start=date(2025, 4, 1),
        period_end=date(2026, 3, 31),
        requested_by="Ada Operator",
        at=t0,
    )
    events = [e]
    steps: list[Callable[[Submission], tuple[Submission, SubmissionEvent]]] = [
        lambda s: advance(s, S.ASSEMBLED, at=t0, by="cld-submission", file_sha256="cd" * 32, rows=4, file_name="f"),
        lambda s: advance(s, S.CHECKED, at=t0, by="cld-submission", detail="0 dataset error(s)"),
        lambda s: approve(s, by="Grace Approver", at=t0 + timedelta(minutes=3)),
        lambda s: advance(
            s, S.SENT, at=t0 + timedelta(minutes=4), by="cld-submission", message_id="M-1", transport="mesh"
        ),
        lambda s: advance(s, S.ACKNOWLEDGED, at=t0 + timedelta(hours=1), by="cld-submission", detail="acknowledged"),
    ]
    for step in steps:
        if sub.state is until:
            break
        sub, e = step(sub)
        events.append(e)
    return sub, events


def test_rebuild_history_from_the_topic(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topic = f"{topic_prefix}{topics.SUBMISSIONS}"
    a, a_events = _lifecycle("sub-a", "318", T0, until=S.ACKNOWLEDGED)
    b, b_events = _lifecycle("sub-b", "319", T0 + timedelta(minutes=1), until=S.CHECKED)

    async def produce(extra: list[bytes]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"segment.bytes": "1024"})])
            for partition, events in ((0, a_events), (1, b_events)):
                for e in events:
                    await producer.send_and_wait(topic, e.model_dump_json().encode(), partition=partition)
            await producer.send_and_wait(topic, a_events[-1].model_dump_json().encode(), partition=0)  # again
            for value in extra:
                await producer.send_and_wait(topic, value, partition=1)
        finally:
            await producer.stop()
            await admin.close()

    asyncio.run(produce([b"[1, 2]"]))
    env = {"CLD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CLD_TOPIC_PREFIX": topic_prefix}
    state_dir = tmp_path / "state"

    result = CliRunner().invoke(app, ["submission", "rebuild-history", "--state-dir", str(state_dir)], env=env)

    assert result.exit_code == 4, result.output  # one event could not be read: said, and not silently complete
    assert "rebuilt 2 submission(s) from 11 event(s)" in result.output
    assert "1 duplicate(s) applied once" in result.output
    assert "MISSING: 1 event(s) could not be read (not_an_object)" in result.output
    assert "DQ summaries" in result.output  # what the events never held is named
    repo = Repository(state_dir)
    try:
        assert repo.history() == [a, b]
        assert repo.pending_events() == []
    finally:
        repo.close()
    audit = state_dir / AUDIT_NAME
    assert verify_audit_log(audit).ok
    lines = read_audit_log(audit)
    assert [(e["action"], e["submission_id"]) for e in lines[:-1]] == [
        (e.state.value, e.submission_id) for e in sorted(a_events + b_events, key=lambda e: e.at)
    ]
    assert lines[-1]["action"] == "history_rebuilt"

    again = CliRunner().invoke(app, ["submission", "rebuild-history", "--state-dir", str(state_dir)], env=env)
    assert again.exit_code == 1, again.output
    assert "already holds 2 submission(s)" in again.output
    assert verify_audit_log(audit).lines == len(lines)  # the rebuilt log was not touched
