"""Received-at times are bounded (issue 10, finding 9): a source chooses ``cld-received-at`` and the producer
timestamp; one far in the future used to pin the record's version and switch off the freshness alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cld_runtime.messages import RawMessage
from cld_validation.intake import MAX_AGE, MAX_FUTURE, Intake, read_message, received_at
from tests.support.records import service_record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BROKER = NOW - timedelta(seconds=30)


def msg(received: str | None, timestamp: datetime | None = BROKER) -> RawMessage:
    headers = {"cld-received-at": received.encode()} if received is not None else {}
    return RawMessage(
        value=b"{}",
        key=b"318",
        headers=headers,
        topic="t",
        partition=0,
        offset=1,
        timestamp_ms=None if timestamp is None else int(timestamp.timestamp() * 1000),
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2026-06-01T11:00:00+00:00", datetime(2026, 6, 1, 11, 0, tzinfo=UTC)),  # an hour ago: trusted
        ("2026-06-01T12:04:00+00:00", datetime(2026, 6, 1, 12, 4, tzinfo=UTC)),  # within the skew: trusted
        ("2026-06-01T12:06:00+00:00", BROKER),  # beyond the 5-minute skew
        ("2999-01-01", BROKER),  # the finding
        ("9999-12-31T23:59:59+00:00", BROKER),
        ("0001-01-01", BROKER),  # absurdly old
        ("2020-01-01T00:00:00+00:00", BROKER),  # older than two rolling years
        ("not a date", BROKER),
        (None, BROKER),
    ],
)
def test_an_untrusted_received_at_falls_back_to_the_broker_timestamp(header: str | None, expected: datetime) -> None:
    assert received_at(msg(header), now=NOW) == expected


@pytest.mark.parametrize(
    "timestamp", [NOW + timedelta(days=365 * 900), NOW - MAX_AGE - timedelta(days=1), datetime(1970, 1, 1, tzinfo=UTC)]
)
def test_an_untrusted_broker_timestamp_falls_back_to_now(timestamp: datetime) -> None:
    assert received_at(msg("2999-01-01", timestamp), now=NOW) == NOW
    assert received_at(msg(None, timestamp), now=NOW) == NOW


def test_no_time_at_all_is_now() -> None:
    assert received_at(msg(None, None), now=NOW) == NOW


def test_the_window_is_a_setting() -> None:
    header = "2026-06-01T12:30:00+00:00"
    assert received_at(msg(header), now=NOW) == BROKER
    assert received_at(msg(header), now=NOW, max_future=timedelta(hours=1)) == datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    assert received_at(msg("2026-05-01T00:00:00+00:00"), now=NOW, max_age=timedelta(days=7)) == BROKER


def test_read_message_keeps_the_record_and_bounds_its_time() -> None:
    import json

    m = RawMessage(
        value=json.dumps(service_record()).encode(),
        key=b"318",
        headers={"cld-received-at": b"2999-01-01"},
        topic="t",
        partition=0,
        offset=1,
        timestamp_ms=int(BROKER.timestamp() * 1000),
    )
    out = read_message(m, max_bytes=1 << 20, now=NOW)
    assert isinstance(out, Intake)
    assert out.received_at == BROKER
    assert out.received_at <= NOW + MAX_FUTURE
