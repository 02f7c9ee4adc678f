"""The Kafka consumers our services read with, configured once.

Offsets are committed by hand and only after the work is safe (never auto-commit, which
acknowledges before the handler ran); only committed transactions are read; a new group
starts at the beginning of retention.  The services differ only in their group, how long
one poll may take, and how long a fetch may wait for more records (latency vs batch size).

``kafka_reader`` is the same without a group, for instances that each read all of some topics
(the routing feed); ``partitions_of`` says which partitions a topic has.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from contracts.errors import ConfigError


def kafka_consumer(
    *topics: str,
    bootstrap: str,
    group_id: str,
    client_id: str,
    session_timeout_ms: int,
    fetch_max_wait_ms: int,
    max_poll_interval_ms: int,
    max_partition_fetch_bytes: int = 1024 * 1024,
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_wait_ms=fetch_max_wait_ms,
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(300, session_timeout_ms // 4),
        max_poll_interval_ms=max_poll_interval_ms,
    )


def kafka_reader(*, bootstrap: str, client_id: str, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
    """A consumer without a group, assigned its partitions by the caller; commits nothing."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )


async def partitions_of(bootstrap: str, topics: list[str], client_id: str) -> dict[str, set[int]]:
    """Each topic's partitions, from the cluster's metadata (a manually assigning consumer
    has no public way to ask for a topic it is not assigned yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{client_id}-admin")
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    found = {t["topic"]: {p["partition"] for p in t["partitions"]} for t in described}
    missing = [t for t in topics if not found.get(t)]
    if missing:
        raise ConfigError(f"topic(s) {', '.join(missing)} have no partitions (do they exist?)")
    return found
