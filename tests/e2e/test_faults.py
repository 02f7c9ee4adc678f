"""Nothing lost, nothing doubled: the recorder and the broker killed and restarted mid-stream.

Each test publishes a known set of interactions (with provider retries among them),
breaks something while the recorder is working, and then checks the system of record:
every interaction is in the customer history exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from tests.e2e.processes import RecorderProcess
from tests.helpers import eventually, recorded_refs, recorded_to_end

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def interaction(i: int) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms,
        party=f"+4930{60000000 + i % 97:08d}",
        provider_ref=f"SM{i:06d}",
        occurred_at=T0 + timedelta(seconds=i),
        body=f"message {i}",
    )


async def publish_stream(settings: Settings, n: int, *, rate: float, retry_every: int = 10) -> None:
    """Publish n distinct interactions at ``rate``/s; every ``retry_every``-th is sent twice."""
    async with InteractionPublisher(
        settings.kafka_bootstrap, topic=settings.interactions_topic
    ) as pub:
        for i in range(n):
            event = interaction(i)
            await pub.publish(event)
            if i % retry_every == 0:
                await pub.publish(event)  # the provider delivered it again
            await asyncio.sleep(1 / rate)


def assert_each_recorded_once(settings: Settings, n: int) -> None:
    counts = recorded_refs(settings)
    doubled = {k: v for k, v in counts.items() if v != 1}
    missing = {f"message.received.v1|SM{i:06d}" for i in range(n)} - set(counts)
    assert not doubled, f"recorded more than once: {sorted(doubled)[:10]}"
    assert not missing, f"lost: {sorted(missing)[:10]}"
    assert len(counts) == n


def total_recorded(settings: Settings) -> int:
    return sum(recorded_refs(settings).values())


async def test_recorder_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    hub_settings: Settings, tmp_path: Path
) -> None:
    n = 1500
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    first = RecorderProcess(hub_settings, tmp_path / "recorder-1.log").start()
    # Traffic starts once the recorder consumes, so it records at the publishing pace and the
    # kill lands mid-stream even when a loaded machine makes the process slow to start.
    await eventually(
        lambda: bool(first.assignments()), timeout=60, what="the recorder's partitions"
    )
    stream = asyncio.create_task(publish_stream(hub_settings, n, rate=400))
    await eventually(
        lambda: total_recorded(hub_settings) > 200,
        timeout=60,
        what="the first recorder to record a few hundred",
    )
    first.kill()
    killed_at = total_recorded(hub_settings)
    second = RecorderProcess(hub_settings, tmp_path / "recorder-2.log").start()
    try:
        await stream
        await eventually(
            lambda: total_recorded(hub_settings) >= n,
            timeout=90,
            what=f"all {n} recorded after the restart",
        )
        await recorded_to_end(hub_settings)  # handled to the end: anything doubled shows
    finally:
        second.stop()
    assert killed_at < n, "the kill came after everything was recorded: not mid-stream"
    assert_each_recorded_once(hub_settings, n)


async def test_two_recorders_share_partitions_and_the_survivor_takes_over_a_killed_one(
    hub_settings: Settings, tmp_path: Path
) -> None:
    n = 1500
    settings = hub_settings.model_copy(update={"topic_partitions": 6})
    await ensure_topics(settings, settings.kafka_bootstrap)
    a = RecorderProcess(settings, tmp_path / "a.log").start()
    b = RecorderProcess(settings, tmp_path / "b.log").start()
    try:
        # Both members hold partitions before traffic starts.
        await eventually(
            lambda: (
                a.assignments()
                and b.assignments()
                and "{}" not in a.assignments()[-1]
                and "{}" not in b.assignments()[-1]
            ),
            timeout=60,
            what="both recorders to be assigned partitions",
        )
        stream = asyncio.create_task(publish_stream(settings, n, rate=400))
        await eventually(
            lambda: total_recorded(settings) > 300,
            timeout=60,
            what="a few hundred recorded by the pair",
        )
        a.kill()
        await stream
        await eventually(
            lambda: total_recorded(settings) >= n,
            timeout=90,
            what="the survivor to record the rest",
        )
        await recorded_to_end(settings)
        # After the session timeout the survivor owns all six partitions (of each topic).
        await eventually(
            lambda: f"'{settings.interactions_topic}': [0, 1, 2, 3, 4, 5]" in b.assignments()[-1],
            what="the survivor to own all six partitions",
        )
    finally:
        a.kill()
        b.stop()
    assert_each_recorded_once(settings, n)


async def test_broker_stopped_and_started_mid_stream_loses_and_doubles_nothing(
    restartable_kafka, store_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "var",
        store=store_url,
        kafka_bootstrap=restartable_kafka.bootstrap,
        topic_partitions=3,
        session_timeout_ms=3000,
        recorder_batch=200,
    )
    n_before, n_after = 800, 400
    await ensure_topics(settings, settings.kafka_bootstrap)
    await publish_stream(settings, n_before, rate=5000)
    recorder = bootstrap(settings).recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        await eventually(
            lambda: recorder.stats.recorded > 0, timeout=60, what="the recorder to start recording"
        )
        await asyncio.to_thread(restartable_kafka.stop)  # mid-stream
        stopped_at = total_recorded(settings)
        await asyncio.sleep(2.0)  # the outage: the recorder keeps trying meanwhile
        await asyncio.to_thread(restartable_kafka.start)
        # The producer side: interactions published after the broker came back.
        async with InteractionPublisher(
            settings.kafka_bootstrap, topic=settings.interactions_topic
        ) as pub:
            for i in range(n_before, n_before + n_after):
                await pub.publish(interaction(i))
        await eventually(
            lambda: total_recorded(settings) >= n_before + n_after,
            timeout=120,
            what="everything recorded after the broker restart",
        )
        await recorded_to_end(settings)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert stopped_at < n_before + n_after
    assert_each_recorded_once(settings, n_before + n_after)
