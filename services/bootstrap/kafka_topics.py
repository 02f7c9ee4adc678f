"""Create the hub's Kafka topics if they are missing (idempotent)."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.errors import ConfigError
from services.bootstrap.settings import Settings
from services.consumers import partitions_of

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
WEEK_MS = 7 * DAY_MS


async def ensure_topics(settings: Settings, bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="switchboard-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            # Raw interactions carry personal data in clear: kept a week (the event store is the
            # system of record), in segments of a day, so a record is gone after at most 8 days
            # (Kafka deletes whole segments) — well inside an erasure's month.
            NewTopic(
                settings.interactions_topic,
                settings.topic_partitions,
                settings.topic_replication,
                topic_configs={"retention.ms": str(WEEK_MS), "segment.ms": str(DAY_MS)},
            ),
            NewTopic(
                settings.outbound_topic,
                settings.topic_partitions,
                settings.topic_replication,
                topic_configs={"retention.ms": str(WEEK_MS), "segment.ms": str(DAY_MS)},
            ),
            # Routing decisions: in the history once recorded; a week to re-read them.
            NewTopic(
                settings.routing_topic,
                settings.topic_partitions,
                settings.topic_replication,
                topic_configs={"retention.ms": str(WEEK_MS), "segment.ms": str(DAY_MS)},
            ),
            # Presence: the latest per agent is the state, kept however old (compacted).
            NewTopic(
                settings.presence_topic,
                1,
                settings.topic_replication,
                topic_configs={"cleanup.policy": "compact"},
            ),
            # Campaign progress: the latest record per campaign is where its runner continues.
            NewTopic(
                settings.campaign_progress_topic,
                1,
                settings.topic_replication,
                topic_configs={"cleanup.policy": "compact"},
            ),
            NewTopic(
                settings.deadletter_topic,
                1,
                settings.topic_replication,
                # room for a 1 MiB payload in base64 plus its reason
                topic_configs={
                    "retention.ms": str(4 * WEEK_MS),
                    "segment.ms": str(DAY_MS),
                    "max.message.bytes": str(4 * 1024 * 1024),
                },
            ),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                # Another service of this hub, starting beside this one, created them.
                log.debug("topics %s created meanwhile", [t.name for t in missing])
            else:
                log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (the offset the next record will get)."""
    try:
        found = await partitions_of(bootstrap, [topic], "switchboard")
    except ConfigError:
        return {}  # no partitions: nothing in it
    partitions = [TopicPartition(topic, p) for p in sorted(found[topic])]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="switchboard-admin")
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records a topic holds: the sum of its partitions' end offsets."""
    return sum((await end_offsets(bootstrap, topic)).values())
