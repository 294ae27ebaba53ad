"""Create the contract topics a service uses, with the configured partitions and the contract's retention,
before its consumers start.

Relying on broker auto-creation gives whatever the broker's default is (a consumer's metadata request can
create a topic with a single partition and the broker's 7-day retention), and one partition means one consumer
per group does all the work.

Retention is part of the contract (:data:`TOPIC_CONFIGS`; the same values are in ``deploy/k8s/kafka-topics.yaml``
and the compose ``kafka-init`` service, checked by tests/deploy). ``cld.records.validated.v1`` keeps
:data:`VALIDATED_RETENTION_DAYS` days because ``cld submission rebuild-state`` rebuilds the submission state of a
rolling 12-month reporting period from it (issue 10, finding 12): 12 months, the month-long submission window
after the quarter end, and a margin for a late-noticed lost volume. The topic is keyed by LA code, so it cannot be
compacted to one message per record; a compacted per-record state topic would need keys per record and its own
producer, and the submission state already holds the same identifiable data for the same rolling year.

An existing topic is never changed (an operator may have tuned it), but a retention shorter than the contract's
is logged as a warning at start, naming the topic, both values and the command that fixes it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from cld_runtime.settings import Settings
from cld_schemas import topics

log = logging.getLogger("cld.runtime.topics")

DAY_MS: Final = 86_400_000
RAW_RETENTION_DAYS: Final = 14
"""Raw, identifiable, as sent: long enough to re-drive after a late-noticed source problem, no longer."""
VALIDATED_RETENTION_DAYS: Final = 400
"""Rolling 12 months (365/366 days) + the submission window (one month after the quarter end) + a margin: what
``rebuild-state`` needs to rebuild the state a submission is assembled from."""
PSEUDONYMISED_RETENTION_DAYS: Final = 14
DEADLETTER_RETENTION_DAYS: Final = 30

TOPIC_CONFIGS: Final[Mapping[str, Mapping[str, str]]] = {
    topics.RAW: {"retention.ms": str(RAW_RETENTION_DAYS * DAY_MS), "cleanup.policy": "delete"},
    topics.VALIDATED: {"retention.ms": str(VALIDATED_RETENTION_DAYS * DAY_MS), "cleanup.policy": "delete"},
    topics.PSEUDONYMISED: {"retention.ms": str(PSEUDONYMISED_RETENTION_DAYS * DAY_MS), "cleanup.policy": "delete"},
    # The audit trail: kept for ever, not compacted (compaction would keep only the last event per key).
    topics.SUBMISSIONS: {"retention.ms": "-1", "cleanup.policy": "delete"},
    topics.DEADLETTER: {"retention.ms": str(DEADLETTER_RETENTION_DAYS * DAY_MS), "cleanup.policy": "delete"},
}
"""Per contract topic (unprefixed name): the topic configs a service creates it with."""


def topic_config(settings: Settings, name: str) -> Mapping[str, str]:
    """The contract configs of a deployed (prefixed) topic name; empty for a name outside the contract."""
    for contract, config in TOPIC_CONFIGS.items():
        if settings.topic(contract) == name:
            return config
    return {}


def new_topics(settings: Settings, names: Iterable[str]) -> list[NewTopic]:
    """The topics to create: configured partitions and replication, and the contract's retention."""
    return [
        NewTopic(
            n,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            topic_configs=dict(topic_config(settings, n)),
        )
        for n in dict.fromkeys(names)
    ]


def retention_shortfalls(
    required: Mapping[str, Mapping[str, str]], actual: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, int, int]]:
    """(topic, actual ms, required ms) for each topic whose retention is shorter than required (-1 = for ever)."""
    short: list[tuple[str, int, int]] = []
    for name, config in required.items():
        want_text, have_text = config.get("retention.ms"), actual.get(name, {}).get("retention.ms")
        if want_text is None or have_text is None:
            continue
        want, have = int(want_text), int(have_text)
        if have == -1 or (want != -1 and have >= want):
            continue
        short.append((name, have, want))
    return short


def _described(responses: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Topic -> {config: value} from aiokafka's DescribeConfigsResponse objects (tolerant of versions)."""
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in getattr(response, "resources", ()):
            error_code, _, _, name, entries = resource[:5]
            if error_code == 0:
                out[str(name)] = {str(e[0]): str(e[1]) for e in entries if e[1] is not None}
    return out


async def _warn_on_short_retention(admin: AIOKafkaAdminClient, settings: Settings, existing: list[str]) -> None:
    required = {n: topic_config(settings, n) for n in existing if topic_config(settings, n)}
    if not required:
        return
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, configs={"retention.ms": None}) for n in required]
        )
    except Exception as exc:  # only a check: never block a start-up
        log.warning("could not read topic configs", extra={"error": type(exc).__name__})
        return
    for name, have, want in retention_shortfalls(required, _described(responses)):
        log.warning(
            "topic retention is shorter than the contract: fix with kafka-configs.sh --alter --entity-type topics "
            f"--entity-name {name} --add-config retention.ms={want}",
            extra={"topic": name, "retention_ms": have, "required_retention_ms": want},
        )


async def ensure_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create any of ``names`` (already prefixed) that do not exist yet, with the contract's configs; existing
    topics are left alone (a retention shorter than the contract's is logged as a warning)."""
    if not settings.create_topics:
        return
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), client_id=f"cld-{settings.service_name}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        await _warn_on_short_retention(admin, settings, [n for n in wanted if n in existing])
        if not missing:
            return
        with contextlib.suppress(TopicAlreadyExistsError):  # another instance won the race: fine
            await admin.create_topics(new_topics(settings, missing))
        log.info("topics created", extra={"topics": ",".join(missing)})
    finally:
        await admin.close()
