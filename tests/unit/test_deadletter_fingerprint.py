"""Dead-letter payload fingerprints are keyed (issue 10, finding 10): a 12-byte dead letter whose payload is an
NHS number was reversed by hashing every candidate of the 999 range with plain SHA-256. With the fingerprint an
HMAC under the deployment's secret, the same search finds nothing; without a key there is no fingerprint."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from cld_runtime.deadletter import dead_letter_for, payload_fingerprint
from cld_runtime.settings import Settings
from cld_schemas.events import DeadLetterReason

KEY = b"a deployment secret of some length"
NHS = "9990000018"
PAYLOAD = json.dumps(NHS).encode()  # b'"9990000018"': the 12-byte dead letter of the finding


def letter(key: bytes | None, payload: bytes = PAYLOAD) -> dict[str, object]:
    return dead_letter_for(
        reason=DeadLetterReason.NOT_AN_OBJECT,
        detail="the message value is JSON but not an object",
        payload=payload,
        topic="cld.events.raw.v1",
        partition=0,
        offset=7,
        key=b"318",
        service="validation",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        fingerprint_key=key,
    ).model_dump(mode="json")


def brute_force(fingerprints: set[str], candidates: range) -> list[str]:
    """What an attacker without the key does: hash every candidate payload, plain or as JSON text."""
    hits = []
    for n in candidates:
        for form in (str(n).encode(), json.dumps(str(n)).encode()):
            if hashlib.sha256(form).hexdigest() in fingerprints:
                hits.append(str(n))
    return hits


def test_the_fingerprint_is_an_hmac_under_the_deployment_key() -> None:
    body = letter(KEY)
    assert body["payload_hmac"] == hmac.new(KEY, PAYLOAD, hashlib.sha256).hexdigest()
    assert body["payload_hmac"] != hashlib.sha256(PAYLOAD).hexdigest()
    assert "payload_sha256" not in body
    assert letter(KEY)["payload_hmac"] == body["payload_hmac"]  # same payload, same deployment: same fingerprint
    assert letter(b"another deployment's secret")["payload_hmac"] != body["payload_hmac"]


def test_brute_force_over_the_999_range_finds_nothing_without_the_key() -> None:
    """A slice of the 999 range around the real value (the whole range is 10^7: the same result, slower)."""
    candidates = range(9990000000, 9990050000)
    text = json.dumps(letter(KEY))
    values = {v for v in json.loads(text).values() if isinstance(v, str)}
    assert brute_force(values, candidates) == []
    # ... whereas the unsalted digest that dead letters carried before is found at once:
    assert brute_force({hashlib.sha256(PAYLOAD).hexdigest()}, candidates) == [NHS]


def test_without_a_key_there_is_no_fingerprint_at_all() -> None:
    body = letter(None)
    assert body["payload_hmac"] is None
    assert hashlib.sha256(PAYLOAD).hexdigest() not in json.dumps(body)
    assert payload_fingerprint(PAYLOAD, None) is None


def test_the_key_comes_from_the_settings_or_a_file(tmp_path: Path) -> None:
    assert Settings().deadletter_fingerprint_key() is None
    assert Settings(deadletter_key=SecretStr(KEY.decode())).deadletter_fingerprint_key() == KEY
    path = tmp_path / "dlq.key"
    path.write_text(KEY.decode() + "\n", encoding="utf-8")
    assert Settings(deadletter_key_file=path).deadletter_fingerprint_key() == KEY


def test_a_short_or_unreadable_key_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 characters") as short:
        Settings(deadletter_key=SecretStr("short-secret")).deadletter_fingerprint_key()
    assert "short-secret" not in str(short.value)  # the error never quotes the key
    path = tmp_path / "short.key"
    path.write_text("short", encoding="utf-8")
    with pytest.raises(ValueError, match="CLD_DEADLETTER_KEY"):
        Settings(deadletter_key_file=path).deadletter_fingerprint_key()
    with pytest.raises(ValueError, match="CLD_DEADLETTER_KEY_FILE"):
        Settings(deadletter_key_file=tmp_path / "missing.key").deadletter_fingerprint_key()
