"""Accounting as an invariant (issue 10): for every record a consumer commits there is exactly one outcome, and
per service and topic ``cld_consumed_records_total == sum(cld_consumer_outcomes_total)`` with the outcomes
equal to what was actually forwarded, stored and dead-lettered. Each service gets one mixed batch: readable
records, unreadable values, bad headers."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from cld_pseudonymisation.service import PseudonymisationSettings
from cld_pseudonymisation.service import create_app as pseudonymisation_app
from cld_schemas import topics
from cld_schemas.events import DeadLetter
from cld_submission.adapters.transport import FileExportTransport
from cld_submission.entrypoints.app import create_app as submission_app
from cld_submission.entrypoints.settings import SubmissionSettings
from cld_validation.service import ValidationSettings
from cld_validation.service import create_app as validation_app
from tests.component.test_consumer_headers import good_headers, raw_value, record, subscriber
from tests.component.test_poison_submission import LA_CODE, PERIOD_END, PERIOD_START, a_pseudonymised, a_validated
from tests.component.test_pseudonymisation_service import TEST_KEY, validated
from tests.component.test_submission_service import operators_registry, policy_with_bases
from tests.support.capture import capture
from tests.support.tenancy import make_tenancy

DEADLETTER_KEY = "component-test dead-letter key"
BAD: list[tuple[bytes | None, list[tuple[str, bytes]]]] = [
    (b"{broken", []),
    (None, []),
    (b"", []),
    (b"\xff\xfe", []),
    (b"[1]", []),
    (b"{}", [("cld-source", b"\xff")]),
    (b"{}", [("cld-source", b"a"), ("cld-source", b"b")]),
]


def mixed(topic: str, good: Sequence[bytes], *, key: bytes = b"318") -> tuple[Any, ...]:
    """The good values with a bad message after every third one (offsets in order)."""
    out: list[Any] = []
    bad = iter(BAD)
    for i, value in enumerate(good):
        out.append(record(topic, len(out), value, good_headers(i), key=key))
        if i % 3 == 2 and (b := next(bad, None)) is not None:
            out.append(record(topic, len(out), b[0], b[1], key=key))
    return tuple(out)


def accounting(registry: CollectorRegistry, service: str, topic: str) -> dict[str, float]:
    def value(name: str, **labels: str) -> float:
        return float(registry.get_sample_value(name, {"service": service, "topic": topic, **labels}) or 0.0)

    counts = {o: value("cld_consumer_outcomes_total", outcome=o) for o in ("forwarded", "stored", "deadlettered")}
    return {"consumed": value("cld_consumed_records_total"), **counts}


def assert_invariant(counts: dict[str, float]) -> None:
    assert counts["consumed"] == counts["forwarded"] + counts["stored"] + counts["deadlettered"], counts


async def test_validation_accounts_for_every_record() -> None:
    app = validation_app(
        ValidationSettings(
            kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", deadletter_key=SecretStr(DEADLETTER_KEY)
        ),
        tenants=make_tenancy().registry,
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    out, deadletters = capture(broker, topics.VALIDATED), capture(broker, topics.DEADLETTER)
    batch = mixed(topics.RAW, [raw_value(i) for i in range(21)])
    async with TestKafkaBroker(broker):
        await subscriber(broker, topics.RAW, "cld-validation").process_message(batch)

    counts = accounting(app.context.get("registry"), "validation", topics.RAW)
    assert_invariant(counts)
    assert counts == {"consumed": 28, "forwarded": 21, "stored": 0, "deadlettered": 7}
    assert (len(out.bodies), len(deadletters.bodies)) == (21, 7)
    # The deployment has a dead-letter key: each fingerprint is the HMAC of the payload, not its bare digest.
    by_offset = {r.offset: r.value for r in batch}
    for body in deadletters.bodies:
        letter = DeadLetter.model_validate(body)
        payload = by_offset[letter.offset] or b""
        assert letter.payload_hmac == hmac.new(DEADLETTER_KEY.encode(), payload, hashlib.sha256).hexdigest()
        assert hashlib.sha256(payload).hexdigest() not in json.dumps(body)


async def test_pseudonymisation_accounts_for_every_record() -> None:
    app = pseudonymisation_app(
        PseudonymisationSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", pseudo_key=TEST_KEY),
        tenants=make_tenancy().registry,
    )
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    out, deadletters = capture(broker, topics.PSEUDONYMISED), capture(broker, topics.DEADLETTER)
    good = [validated(f"ev-{i}", event_reference=f"EV{i:05d}").model_dump_json().encode() for i in range(21)]
    async with TestKafkaBroker(broker):
        await subscriber(broker, topics.VALIDATED, "cld-pseudonymisation").process_message(
            mixed(topics.VALIDATED, good)
        )

    counts = accounting(app.context.get("registry"), "pseudonymisation", topics.VALIDATED)
    assert_invariant(counts)
    assert counts == {"consumed": 28, "forwarded": 21, "stored": 0, "deadlettered": 7}
    assert (len(out.bodies), len(deadletters.bodies)) == (21, 7)


async def test_submission_accounts_for_every_record_of_both_consumers(tmp_path: Path) -> None:
    settings = SubmissionSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", state_dir=tmp_path / "s")
    registry, _keys = operators_registry()
    app = submission_app(
        settings, transport=FileExportTransport(tmp_path / "export"), tenants=registry, policy=policy_with_bases()
    )
    broker: KafkaBroker = app.state.broker
    deadletters = capture(broker, topics.DEADLETTER)
    key = LA_CODE.encode()
    good_validated = [a_validated(f"ev-{i}", reference=f"R{i}").model_dump_json().encode() for i in range(21)]
    good_pseudo = [a_pseudonymised(f"ev-{i}").model_dump_json().encode() for i in range(21)]
    async with TestKafkaBroker(broker), app.router.lifespan_context(app):
        await subscriber(broker, topics.VALIDATED, "cld-submission").process_message(
            mixed(topics.VALIDATED, good_validated, key=key)
        )
        await subscriber(broker, topics.PSEUDONYMISED, "cld-submission-pseudonymised").process_message(
            mixed(topics.PSEUDONYMISED, good_pseudo, key=key)
        )
        in_scope = app.state.workflow.state.count_in_scope(LA_CODE, PERIOD_START, PERIOD_END)

    metrics: CollectorRegistry = app.state.registry
    for topic in (topics.VALIDATED, topics.PSEUDONYMISED):
        counts = accounting(metrics, "submission", topic)
        assert_invariant(counts)
        assert counts == {"consumed": 28, "forwarded": 0, "stored": 21, "deadlettered": 7}, topic
    assert in_scope == 21
    assert len(deadletters.bodies) == 14
