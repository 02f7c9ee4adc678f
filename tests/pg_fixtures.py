"""PostgreSQL fixtures: one throwaway cluster per test session, a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.pg_local import PostgresCluster, start_throwaway_cluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = start_throwaway_cluster()
    try:
        yield cluster
    finally:
        cluster.discard()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database for one test."""
    return postgres_cluster.create_database()
