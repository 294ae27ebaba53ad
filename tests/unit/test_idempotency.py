"""The ingest's idempotency memory (issue 10, finding 8): same key + same body is a replay, a different body a
conflict; bounded in count and age; the fingerprint is keyed, so it reveals nothing about the body."""

from __future__ import annotations

import hashlib

import pytest

from cld_ingest.idempotency import Claim, IdempotencyMemory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def memory(clock: Clock | None = None, *, max_keys: int = 10, window: float = 60.0) -> IdempotencyMemory:
    return IdempotencyMemory(max_keys=max_keys, window_seconds=window, clock=clock or Clock(), secret=b"s" * 32)


def test_new_then_replay_then_conflict() -> None:
    m = memory()
    a, b = m.fingerprint([b"318", b'{"x":"1"}']), m.fingerprint([b"318", b'{"x":"2"}'])
    assert m.claim(source="s", endpoint="/v1/records", key="k", fingerprint=a) is Claim.NEW
    assert m.claim(source="s", endpoint="/v1/records", key="k", fingerprint=a) is Claim.REPLAY
    assert m.claim(source="s", endpoint="/v1/records", key="k", fingerprint=b) is Claim.CONFLICT
    # the conflict did not replace the first body
    assert m.claim(source="s", endpoint="/v1/records", key="k", fingerprint=a) is Claim.REPLAY


def test_keys_are_scoped_by_source_and_endpoint() -> None:
    m = memory()
    a, b = m.fingerprint([b"a"]), m.fingerprint([b"b"])
    assert m.claim(source="s1", endpoint="e", key="k", fingerprint=a) is Claim.NEW
    assert m.claim(source="s2", endpoint="e", key="k", fingerprint=b) is Claim.NEW
    assert m.claim(source="s1", endpoint="other", key="k", fingerprint=b) is Claim.NEW


def test_a_key_is_forgotten_after_the_window() -> None:
    clock = Clock()
    m = memory(clock, window=60)
    a, b = m.fingerprint([b"a"]), m.fingerprint([b"b"])
    m.claim(source="s", endpoint="e", key="k", fingerprint=a)
    clock.now += 59
    assert m.claim(source="s", endpoint="e", key="k", fingerprint=b) is Claim.CONFLICT
    clock.now += 2
    assert m.claim(source="s", endpoint="e", key="k", fingerprint=b) is Claim.NEW


def test_at_most_max_keys_are_held_the_oldest_go_first() -> None:
    m = memory(max_keys=3)
    fp = m.fingerprint([b"a"])
    for i in range(5):
        m.claim(source="s", endpoint="e", key=f"k{i}", fingerprint=fp)
    assert len(m) == 3
    assert m.claim(source="s", endpoint="e", key="k0", fingerprint=m.fingerprint([b"b"])) is Claim.NEW
    assert m.claim(source="s", endpoint="e", key="k4", fingerprint=m.fingerprint([b"b"])) is Claim.CONFLICT


def test_the_fingerprint_is_keyed_and_unambiguous() -> None:
    one = IdempotencyMemory(max_keys=1, window_seconds=1, secret=b"1" * 32)
    two = IdempotencyMemory(max_keys=1, window_seconds=1, secret=b"2" * 32)
    body = b'{"nhs_number":"9990000018"}'
    assert one.fingerprint([body]) != two.fingerprint([body])
    assert one.fingerprint([body]) != hashlib.sha256(body).digest()
    assert one.fingerprint([b"ab", b"c"]) != one.fingerprint([b"a", b"bc"])  # parts are length-prefixed
    assert one.fingerprint([None]) != one.fingerprint([b""])


@pytest.mark.parametrize(("max_keys", "window"), [(0, 1.0), (1, 0.0)])
def test_bounds_must_be_positive(max_keys: int, window: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        IdempotencyMemory(max_keys=max_keys, window_seconds=window)
