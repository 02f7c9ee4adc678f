"""The store, not Kafka, says where the recorder continues: empty and restored stores catch up.

An operator who starts the recorder on a new, empty store (or restores an older backup)
keeps the consumer group, whose committed offsets in Kafka lie past what that store holds.
Every interaction still on the topic must then be recorded, exactly once, with no gap.

The store is made slow to answer where a partition continues: that is the window in which
aiokafka already fetches from Kafka's committed offset, and a batch from that fetch must
never be recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived, dump_interaction
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.helpers import recorded_refs, recorded_to_end

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def sms(i: int) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms,
        party=f"+4930{70000000 + i % 53:08d}",
        provider_ref=f"SM-pos-{i:06d}",
        occurred_at=T0 + timedelta(seconds=i),
        body=f"message {i}",
    )


async def publish_range(settings: Settings, numbers: range) -> None:
    async with InteractionPublisher(
        settings.kafka_bootstrap, topic=settings.interactions_topic
    ) as pub:
        pending = [
            await pub.publish_unconfirmed(dump_interaction(sms(i)), key=sms(i).party)
            for i in numbers
        ]
        await asyncio.gather(*pending)


def slow_to_say_where(recorder: Recorder, delay: float = 0.4) -> None:
    """Widen the window between assignment and seek, as a busy store would."""
    tracked_offset: Callable[[str, int], int | None] = recorder.history.tracked_offset

    def slowly(topic: str, partition: int) -> int | None:
        time.sleep(delay)
        return tracked_offset(topic, partition)

    recorder.history.tracked_offset = slowly  # type: ignore[method-assign]


@asynccontextmanager
async def recording(settings: Settings) -> AsyncIterator[Recorder]:
    """A recorder on ``settings.store`` in the shared group, until it has read to the end."""
    recorder = bootstrap(settings).recorder()
    slow_to_say_where(recorder)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        await recorder.wait_started()
        yield recorder
        await recorded_to_end(settings)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def assert_recorded_once(settings: Settings, numbers: range) -> None:
    counts = recorded_refs(settings)
    wanted = {f"message.received.v1|SM-pos-{i:06d}" for i in numbers}
    doubled = sorted(k for k, v in counts.items() if v != 1)
    missing = sorted(wanted - set(counts))
    assert not doubled, f"recorded more than once: {doubled[:5]}"
    assert not missing, f"{len(missing)} lost, e.g. {missing[:5]}"
    assert set(counts) == wanted


@pytest.fixture
def second_store(store_url: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """Another empty store of the same kind as ``store_url``."""
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other-history.db'}"
    return request.getfixturevalue("postgres_cluster").create_database()


async def test_empty_and_restored_stores_record_everything_once_though_kafka_kept_its_offsets(
    hub_settings: Settings, second_store: str
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    older = hub_settings  # will play the backup: it stops after the first 600
    newer = hub_settings.model_copy(update={"store": second_store})

    await publish_range(older, range(600))
    async with recording(older):
        pass
    assert_recorded_once(older, range(600))

    # A new, empty store joins the same group, whose offsets in Kafka stand at 600 and more
    # traffic arrives: it must read all of it from the start, not from Kafka's offsets.
    async with recording(newer):
        await publish_range(newer, range(600, 1200))
    assert_recorded_once(newer, range(1200))

    # The older store comes back as if restored from a backup: Kafka's offsets stand at 1200.
    async with recording(older):
        await publish_range(older, range(1200, 1500))
    assert_recorded_once(older, range(1500))
