"""Pytest plugin: a real single-node Kafka broker for the test session (deploy.kafka_local).

Load with `pytest_plugins = ["tests.kafka_fixtures"]`. Set SWITCHBOARD_KAFKA_BOOTSTRAP=host:port
to run against an already-running broker instead; tests that stop or kill a broker skip then.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.kafka_local import LocalKafka

EXTERNAL_BOOTSTRAP_ENV = "SWITCHBOARD_KAFKA_BOOTSTRAP"

TopicFactory = Callable[..., Awaitable[str]]


@dataclass(frozen=True)
class ExternalKafka:
    """A broker this session did not start: only its address is known, it cannot be restarted."""

    bootstrap: str


def require_local(broker: LocalKafka | ExternalKafka) -> LocalKafka:
    """Skip the calling test unless the broker is one we own (and so may stop or kill)."""
    if not isinstance(broker, LocalKafka):
        pytest.skip(f"needs a broker it may stop; {EXTERNAL_BOOTSTRAP_ENV} is set")
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | ExternalKafka]:
    external = os.environ.get(EXTERNAL_BOOTSTRAP_ENV)
    if external:
        yield ExternalKafka(bootstrap=external)
        return
    broker = LocalKafka(work_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_bootstrap(kafka_broker: LocalKafka | ExternalKafka) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> TopicFactory:
    """`await new_topic(partitions=1)` -> the name of a fresh topic, named after the test."""
    # Topic names allow [a-zA-Z0-9._-]; the test name makes broker logs readable.
    stem = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:60] or "topic"

    async def make(partitions: int = 1) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1)]
            )
        finally:
            await admin.close()
        # aiokafka does not raise on per-topic errors; they come back in the response.
        for error in response.to_object()["topic_errors"]:
            if error["error_code"]:
                raise RuntimeError(f"create topic {name} failed: {error}")
        return name

    return make


@pytest.fixture
def restartable_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own (keep_data=True) to stop/start/kill mid-test; stopped after."""
    if os.environ.get(EXTERNAL_BOOTSTRAP_ENV):  # an external broker means: no JVMs of ours
        pytest.skip(f"needs a broker it may stop; {EXTERNAL_BOOTSTRAP_ENV} is set")
    broker = LocalKafka(work_dir=tmp_path / "kafka", keep_data=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
