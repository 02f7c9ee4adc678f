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
from deploy.ports import free_port
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.helpers import bearer_of_every_role

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
        routing_topic=f"sb.routing.{suffix}",
        presence_topic=f"sb.presence.{suffix}",
        campaign_progress_topic=f"sb.campaign-progress.{suffix}",
        outbound_group=f"sb-outbound-{suffix}",
        recorder_group=f"sb-recorder-{suffix}",
        router_group=f"sb-router-{suffix}",
        topic_partitions=3,
        session_timeout_ms=3000,
        recorder_batch=200,
        # Every hub process listens (the API, or a worker's probes): a port of its own.
        http_port=free_port(),
        # A test's hub stops at once (bench/k8s shutdowns refuse webhooks for a while).
        drain_refuse_seconds=0,
    )


@pytest.fixture
def auth_header(hub_settings: Settings) -> dict[str, str]:
    """``Authorization: Bearer …`` of a user with every role, in the test's store."""
    return bearer_of_every_role(hub_settings)


@pytest.fixture
async def running_recorder(hub_settings: Settings) -> AsyncIterator[Recorder]:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    recorder = bootstrap(hub_settings).recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    await recorder.wait_started()
    yield recorder
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def publisher(hub_settings: Settings) -> AsyncIterator[InteractionPublisher]:
    async with bootstrap(hub_settings).publisher() as pub:
        yield pub


@pytest.fixture
async def start_dispatcher(hub_settings: Settings):
    """Start the real outbound dispatcher with the given senders; stopped at teardown."""
    running: list[tuple[asyncio.Event, asyncio.Task]] = []

    async def start(senders, *, retry_delays: tuple[float, ...] = (0.05, 0.05)):
        await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
        dispatcher = bootstrap(hub_settings, senders=senders).dispatcher(retry_delays=retry_delays)
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
