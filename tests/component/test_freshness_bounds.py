"""A source cannot switch off the freshness alert (issue 10, finding 9): ``cld-received-at: 2999-01-01`` used to
set ``cld_newest_record_timestamp_seconds`` to the year 2999, and the gauge only rises."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cld_schemas.events import RecordValidated
from tests.component import test_validation_service
from tests.component.test_validation_service import Harness
from tests.support.records import service_record

harness = test_validation_service.harness  # by assignment: no F811


async def test_a_received_at_in_the_future_moves_neither_the_gauge_nor_the_record_past_now(harness: Harness) -> None:
    before = time.time()
    await harness.send(service_record(), headers={"cld-received-at": "2999-01-01", "cld-event-id": "future"})
    after = time.time()

    gauge = harness.metric("cld_newest_record_timestamp_seconds", {"la_code": "318"})
    assert before - 1 <= gauge <= after + 1, datetime.fromtimestamp(gauge, UTC)
    [body] = harness.validated.bodies
    event = RecordValidated.model_validate(body)
    assert event.provenance.received_at.year != 2999
    assert event.provenance.received_at.timestamp() <= after + 1


async def test_after_a_future_time_a_real_one_still_moves_the_gauge(harness: Harness) -> None:
    await harness.send(service_record(), headers={"cld-received-at": "9999-12-31T23:59:59+00:00"})
    first = harness.metric("cld_newest_record_timestamp_seconds", {"la_code": "318"})
    recent = datetime.now(UTC).isoformat()
    await harness.send(service_record(event_reference="EV2"), headers={"cld-received-at": recent})
    second = harness.metric("cld_newest_record_timestamp_seconds", {"la_code": "318"})
    assert first <= time.time()
    assert second >= first
