"""The hub creates its topics, and counts what a topic holds (tests rely on that count)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from services.bootstrap.kafka_topics import ensure_topics, topic_size
from services.bootstrap.settings import Settings


async def test_topics_are_created_once_and_their_records_counted(hub_settings: Settings) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)  # idempotent
    assert await topic_size(hub_settings.kafka_bootstrap, hub_settings.interactions_topic) == 0
    producer = AIOKafkaProducer(bootstrap_servers=hub_settings.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(7):  # spread over the partitions by key
            await producer.send_and_wait(hub_settings.interactions_topic, b"{}", key=b"k%d" % i)
    finally:
        await producer.stop()
    assert await topic_size(hub_settings.kafka_bootstrap, hub_settings.interactions_topic) == 7
