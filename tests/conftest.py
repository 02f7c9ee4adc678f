"""Shared fixtures: real servers (Kafka, PostgreSQL) started once per session, stopped by PID."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.settings import Settings

pytest_plugins = ["tests.kafka_fixtures", "tests.pg_fixtures"]


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
        recorder_group=f"sb-recorder-{suffix}",
        topic_partitions=3,
        session_timeout_ms=3000,
        recorder_batch=200,
    )
