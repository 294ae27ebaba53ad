"""Dead letters: a pointer to a message that could not be processed and the reason, never its payload.

The original message stays on its topic; topic/partition/offset are enough to find it again and re-drive it
(docs/contract.md). The payload fingerprint is keyed (HMAC-SHA256 with the deployment's dead-letter key,
``CLD_DEADLETTER_KEY[_FILE]``): an unsalted hash of a short payload (one NHS number: at most 10^7 candidates
in the 999 range, 10^10 in all) is reversed by brute force in seconds (issue 10, finding 10). Without a key
there is no fingerprint at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import datetime
from typing import Any, Final

from faststream.kafka import KafkaBroker
from faststream.kafka.publisher import DefaultPublisher
from prometheus_client import CollectorRegistry, Counter

from cld_schemas.contract import HEADER_DEADLETTER_REASON, is_la_code
from cld_schemas.events import DeadLetter, DeadLetterReason
from cld_schemas.topics import DEADLETTER

HEADER_REASON: Final = HEADER_DEADLETTER_REASON


def payload_fingerprint(payload: bytes | None, key: bytes | None) -> str | None:
    """HMAC-SHA256 of the payload under the deployment's dead-letter key (hex), or None without a key.

    Two dead letters of the same payload in one deployment share a fingerprint (to spot a source re-sending
    the same bad message); without the key nobody can test a guess against it.
    """
    if key is None:
        return None
    return hmac.new(key, payload or b"", hashlib.sha256).hexdigest()


def dead_letter_for(
    *,
    reason: DeadLetterReason,
    detail: str,
    payload: bytes | None,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    service: str,
    at: datetime,
    fingerprint_key: bytes | None = None,
) -> DeadLetter:
    """Build the dead letter. The key is kept only when it has the shape of an LA code (3 digits); the payload
    is fingerprinted only with ``fingerprint_key`` (:func:`payload_fingerprint`)."""
    body = payload or b""
    return DeadLetter(
        reason=reason,
        detail=detail,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("ascii") if key is not None and key.isascii() and is_la_code(key.decode("ascii")) else None,
        payload_hmac=payload_fingerprint(body, fingerprint_key),
        payload_bytes=len(body),
        service=service,
        at=at,
    )


class DeadLetterPublisher:
    """Publishes dead letters on the (prefixed) dead-letter topic and counts them (cld_deadletters_total)."""

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        topic: str,
        service: str,
        registry: CollectorRegistry,
        fingerprint_key: bytes | None = None,
    ) -> None:
        self.service = service
        self.fingerprint_key = fingerprint_key
        """The deployment's dead-letter key (``Settings.deadletter_fingerprint_key``), for :func:`dead_letter_for`."""
        self.publisher: DefaultPublisher = broker.publisher(
            topic,
            schema=DeadLetter,
            title=f"{DEADLETTER}:{service}",
            description="What could not be processed: reason and pointer (topic/partition/offset), no payload.",
        )
        self.counter = Counter(
            "cld_deadletters_total",
            "Messages sent to the dead-letter topic, by service and reason.",
            ["service", "reason"],
            registry=registry,
        )
        # Every reason starts at 0 so that Prometheus' increase() sees the first dead letter (alerts.yml).
        for reason in DeadLetterReason:
            self.counter.labels(service, reason.value)

    async def publish(self, letter: DeadLetter, *, confirm: bool = True) -> asyncio.Future[Any] | None:
        """Publish; with ``confirm=False`` return the delivery future (None in the in-memory test broker)."""
        self.counter.labels(self.service, letter.reason.value).inc()
        result = await self.publisher.publish(
            letter.model_dump_json().encode(),
            key=letter.key.encode() if letter.key else None,
            headers={HEADER_REASON: letter.reason.value},
            no_confirm=not confirm,
        )
        return result if isinstance(result, asyncio.Future) else None
