"""The Kafka consumer every service of ours reads with, configured once.

Offsets are committed by hand and only after the work is safe (never auto-commit, which
acknowledges before the handler ran); only committed transactions are read; a new group
starts at the beginning of retention.  The services differ only in their group, how long
one poll may take, and how long a fetch may wait for more records (latency vs batch size).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


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
