"""Shared fixtures: real servers (Kafka, PostgreSQL) started once per session, stopped by PID."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from channels.publishing import InteractionPublisher
from contracts import SendMessage, dump_command
from services.hub import build_recorder
from services.outbound.dispatcher import OutboundDispatcher
from services.recorder import Recorder
from services.settings import Settings
from services.store.open import open_history, open_outbound_ledger
from services.topics import ensure_topics

pytest_plugins = ["tests.kafka_fixtures", "tests.pg_fixtures", "tests.mail_fixtures"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def hub_settings(store_url: str, tmp_path: Path, kafka_bootstrap: str) -> Settings:
    """Settings isolated per test: own topics, consumer group and store."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        data_dir=tmp_path / "var",
        store=store_url,
        kafka_bootstrap=kafka_bootstrap,
        interactions_topic=f"sb.interactions.{suffix}",
        deadletter_topic=f"sb.deadletter.{suffix}",
        outbound_topic=f"sb.outbound.{suffix}",
        outbound_group=f"sb-outbound-{suffix}",
        recorder_group=f"sb-recorder-{suffix}",
        topic_partitions=3,
        session_timeout_ms=3000,
        recorder_batch=200,
    )


@pytest.fixture
async def running_recorder(hub_settings: Settings) -> AsyncIterator[Recorder]:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    recorder = build_recorder(hub_settings, hub_settings.kafka_bootstrap)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    await recorder.wait_started()
    yield recorder
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def publisher(hub_settings: Settings) -> AsyncIterator[InteractionPublisher]:
    async with InteractionPublisher(
        hub_settings.kafka_bootstrap, topic=hub_settings.interactions_topic
    ) as pub:
        yield pub


@pytest.fixture
async def start_dispatcher(hub_settings: Settings):
    """Start the real outbound dispatcher with the given senders; stopped at teardown."""
    running: list[tuple[asyncio.Event, asyncio.Task]] = []

    async def start(senders, *, retry_delays: tuple[float, ...] = (0.05, 0.05)):
        await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
        dispatcher = OutboundDispatcher(
            open_history(hub_settings, cached=False),
            ledger=open_outbound_ledger(hub_settings),
            senders=senders,
            bootstrap=hub_settings.kafka_bootstrap,
            topic=hub_settings.outbound_topic,
            interactions_topic=hub_settings.interactions_topic,
            deadletter_topic=hub_settings.deadletter_topic,
            group_id=hub_settings.outbound_group,
            retry_delays=retry_delays,
            session_timeout_ms=3000,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        await dispatcher.wait_started()
        running.append((stop, task))
        return dispatcher

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 30)  # also closes the senders


@pytest.fixture
async def send_command(hub_settings: Settings) -> AsyncIterator:
    """Publish a SendMessage on the outbound topic, as the agent desk or a campaign would."""
    producer = AIOKafkaProducer(bootstrap_servers=hub_settings.kafka_bootstrap)
    await producer.start()

    async def send(command: SendMessage) -> SendMessage:
        await producer.send_and_wait(
            hub_settings.outbound_topic, dump_command(command), key=command.to.encode()
        )
        return command

    yield send
    await producer.stop()
