"""Create the contract topics a service uses, with the configured partitions, before its consumers start.

Relying on broker auto-creation gives whatever the broker's default is (a consumer's metadata request can
create a topic with a single partition), and one partition means one consumer per group does all the work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cld_runtime.settings import Settings

log = logging.getLogger("cld.runtime.topics")


async def ensure_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create any of ``names`` (already prefixed) that do not exist yet; existing topics are left alone."""
    if not settings.create_topics:
        return
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), client_id=f"cld-{settings.service_name}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return
        new = [
            NewTopic(n, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication)
            for n in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another instance won the race: fine
            await admin.create_topics(new)
        log.info("topics created", extra={"topics": ",".join(missing)})
    finally:
        await admin.close()
