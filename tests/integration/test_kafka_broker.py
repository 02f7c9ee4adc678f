"""What Switchboard relies on from the Kafka broker, checked with aiokafka against a real broker.

Every wait is bounded (by a message count and a deadline), so a misbehaving broker fails a
test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from deploy.kafka_local import LocalKafka
from tests.kafka_fixtures import ExternalKafka, TopicFactory

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def consume_n(consumer: AIOKafkaConsumer, n: int, within: float) -> list[ConsumerRecord]:
    """Up to n records, or fewer if the deadline passes first."""
    out: list[ConsumerRecord] = []
    deadline = time.monotonic() + within
    while len(out) < n and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=100, max_records=n - len(out))
        for records in batch.values():
            out.extend(records)
    return out


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def consumer(bootstrap: str, *topics: str, **kwargs: object) -> AIOKafkaConsumer:
    kwargs.setdefault("auto_offset_reset", "earliest")
    kwargs.setdefault("fetch_max_wait_ms", 10)
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, **kwargs)


# --------------------------------------------------------------------------- admin + basics


async def test_admin_create_describe_delete(
    kafka_broker: LocalKafka | ExternalKafka, kafka_bootstrap: str
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        name = uniq("adm")
        created = await admin.create_topics([NewTopic(name, 4, 1)])
        assert [e["error_code"] for e in created.to_object()["topic_errors"]] == [0]
        assert name in await admin.list_topics()
        (described,) = await admin.describe_topics([name])
        assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2, 3]
        assert all(p["leader"] >= 0 for p in described["partitions"])

        cluster = await admin.describe_cluster()
        assert cluster["cluster_id"]
        assert len(cluster["brokers"]) >= 1
        if isinstance(kafka_broker, LocalKafka):
            assert cluster["cluster_id"] == kafka_broker.cluster_id
            assert cluster["brokers"][0]["host"] == "127.0.0.1"

        duplicate = await admin.create_topics([NewTopic(name, 4, 1)])
        assert [e["error_code"] for e in duplicate.to_object()["topic_errors"]] == [
            TOPIC_ALREADY_EXISTS
        ]

        (configs,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = {
            e["config_names"]: e["config_value"]
            for e in configs.to_object()["resources"][0]["config_entries"]
        }
        assert "cleanup.policy" in entries
        if isinstance(kafka_broker, LocalKafka):  # our template's log.segment.bytes applies
            assert entries["segment.bytes"] == "16777216"

        deleted = await admin.delete_topics([name])
        assert [e["error_code"] for e in deleted.to_object()["topic_error_codes"]] == [0]
        remaining: list[str] = []
        for _ in range(50):
            remaining = await admin.list_topics()
            if name not in remaining:
                break
            await asyncio.sleep(0.1)
        assert name not in remaining
    finally:
        await admin.close()


async def test_roundtrip(kafka_bootstrap: str, new_topic: TopicFactory) -> None:
    topic = await new_topic()
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        meta = await producer.send_and_wait(topic, b"hello", key=b"k")
    assert (meta.partition, meta.offset) == (0, 0)
    async with consumer(kafka_bootstrap, topic) as c:
        records = await consume_n(c, 1, 10)
    assert [(r.key, r.value, r.offset) for r in records] == [(b"k", b"hello", 0)]


async def test_autocreate_on_produce(kafka_bootstrap: str) -> None:
    topic = uniq("auto")
    async with AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000
    ) as producer:
        meta = await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 10)
    assert meta.topic == topic and meta.offset == 0


async def test_keys_follow_murmur2_and_stay_on_one_partition(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic(6)
    partitioner = DefaultPartitioner()
    partitions = list(range(6))
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        for i in range(60):
            key = f"key-{i % 12}".encode()
            meta = await producer.send_and_wait(topic, f"v{i}".encode(), key=key)
            # Java clients use the same murmur2 mapping: other services agree on key -> partition.
            assert meta.partition == partitioner(key, partitions, partitions)
    async with consumer(kafka_bootstrap, topic) as c:
        records = await consume_n(c, 60, 15)
    assert len(records) == 60
    partitions_of: dict[bytes | None, set[int]] = {}
    for r in records:
        partitions_of.setdefault(r.key, set()).add(r.partition)
    assert len(partitions_of) == 12
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({r.partition for r in records}) > 1  # 12 keys do spread


async def test_headers_and_timestamp_roundtrip(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic()
    headers = [("trace-id", b"abc123"), ("content-type", b"application/json"), ("empty", b"")]
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        await producer.send_and_wait(topic, b"{}", headers=headers, timestamp_ms=1700000000123)
    async with consumer(kafka_bootstrap, topic) as c:
        (record,) = await consume_n(c, 1, 10)
    assert list(record.headers) == headers
    assert record.timestamp == 1700000000123
    assert record.timestamp_type == 0  # CreateTime


async def test_acks_all_and_acks_zero(kafka_bootstrap: str, new_topic: TopicFactory) -> None:
    topic = await new_topic()
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all") as producer:
        offsets = [(await producer.send_and_wait(topic, b"a%d" % i)).offset for i in range(10)]
    assert offsets == list(range(10))

    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks=0) as fire_and_forget:
        for _ in range(10):
            await fire_and_forget.send(topic, b"z")
        await fire_and_forget.flush()

    tp = TopicPartition(topic, 0)
    async with consumer(kafka_bootstrap) as c:
        end = 0
        for _ in range(50):  # acks=0 gives no confirmation: poll the end offset
            end = (await c.end_offsets([tp]))[tp]
            if end == 20:
                break
            await asyncio.sleep(0.1)
    assert end == 20


async def test_idempotent_producer_no_duplicates_keeps_key_order(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic(3)
    async with AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True
    ) as producer:
        futures = [await producer.send(topic, b"m%d" % i, key=b"%d" % (i % 5)) for i in range(300)]
        await asyncio.gather(*futures)
    async with consumer(kafka_bootstrap, topic) as c:
        records = await consume_n(c, 300, 15)
        records += await consume_n(c, 1, 0.5)  # anything beyond 300 would be a duplicate
    values = [int(r.value[1:]) for r in records]
    assert sorted(values) == list(range(300))
    by_key: dict[bytes | None, list[int]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(int(r.value[1:]))
    assert all(seq == sorted(seq) for seq in by_key.values())


async def test_list_offsets_and_offsets_for_times(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic(2)
    base = 1700000000000
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        for i in range(10):
            await producer.send_and_wait(topic, b"x", partition=0, timestamp_ms=base + i * 1000)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    async with consumer(kafka_bootstrap) as c:
        assert await c.beginning_offsets([p0, p1]) == {p0: 0, p1: 0}
        assert await c.end_offsets([p0, p1]) == {p0: 10, p1: 0}
        found = await c.offsets_for_times({p0: base + 4500, p1: base})
    assert found[p0] is not None and found[p0].offset == 5
    assert found[p0].timestamp == base + 5000
    assert found[p1] is None


# --------------------------------------------------------------------------- consumer groups


async def test_commit_then_restart_resumes_without_loss_or_duplicates(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic, group = await new_topic(3), uniq("g")
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        for i in range(90):
            await producer.send(topic, b"%d" % i, key=b"%d" % i)
        await producer.flush()

    kw = dict(group_id=group, enable_auto_commit=False)
    async with consumer(kafka_bootstrap, topic, **kw) as c:
        first = await consume_n(c, 40, 15)
        commit = {}
        for r in first:
            commit[TopicPartition(r.topic, r.partition)] = r.offset + 1
        await c.commit(commit)
    assert len(first) == 40

    async with consumer(kafka_bootstrap, topic, **kw) as c2:
        rest = await consume_n(c2, 50, 15)
        rest += await consume_n(c2, 1, 0.5)  # nothing more may come
        committed = {tp: await c2.committed(tp) for tp in commit}
    assert committed == commit
    assert sorted(int(r.value) for r in first + rest) == list(range(90))

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        groups = await admin.list_consumer_groups()
        offsets = await admin.list_consumer_group_offsets(group)
        (description,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    assert group in {g[0] for g in groups}
    assert {tp: om.offset for tp, om in offsets.items()} == commit
    (group_info,) = description.to_object()["groups"]
    assert group_info["group"] == group and group_info["error_code"] == 0
    assert group_info["state"] == "Empty"  # both consumers left cleanly


async def test_autocommit_then_restart_rereads_nothing(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic, group = await new_topic(2), uniq("g")
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        for i in range(50):
            await producer.send(topic, b"%d" % i)
        await producer.flush()
    kw = dict(group_id=group, enable_auto_commit=True, auto_commit_interval_ms=100)
    async with consumer(kafka_bootstrap, topic, **kw) as c:
        first = await consume_n(c, 50, 10)
    # stop() commits the consumed positions
    async with consumer(kafka_bootstrap, topic, **kw) as c2:
        again = await consume_n(c2, 1, 2)
    assert len(first) == 50
    assert again == []


class RecordingListener(ConsumerRebalanceListener):
    def __init__(self, who: str, events: list[tuple[str, str, list[int]]]) -> None:
        self.who, self.events = who, events

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.events.append((self.who, "revoked", sorted(tp.partition for tp in revoked)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.events.append((self.who, "assigned", sorted(tp.partition for tp in assigned)))


async def test_group_rebalance_on_join_and_leave(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic, group = await new_topic(6), uniq("g")
    events: list[tuple[str, str, list[int]]] = []
    got: dict[str, list[int]] = {"c1": [], "c2": []}
    kw = dict(
        group_id=group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
        enable_auto_commit=False,
    )

    async def pump(c: AIOKafkaConsumer, who: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=100)
            for tp, records in batch.items():
                got[who].extend(int(r.value) for r in records)
                await c.commit({tp: records[-1].offset + 1})

    def parts(c: AIOKafkaConsumer) -> set[int]:
        return {tp.partition for tp in c.assignment()}

    c1 = consumer(kafka_bootstrap, client_id="c1", **kw)
    c2 = consumer(kafka_bootstrap, client_id="c2", **kw)
    c1.subscribe([topic], listener=RecordingListener("c1", events))
    c2.subscribe([topic], listener=RecordingListener("c2", events))
    stop1, stop2 = asyncio.Event(), asyncio.Event()
    await c1.start()
    t1 = asyncio.create_task(pump(c1, "c1", stop1))
    t2: asyncio.Task[None] | None = None
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        assert await wait_until(lambda: len(parts(c1)) == 6, 10), "c1 alone gets all 6"

        await c2.start()
        t2 = asyncio.create_task(pump(c2, "c2", stop2))
        joined = await wait_until(
            lambda: (
                bool(parts(c1))
                and bool(parts(c2))
                and not parts(c1) & parts(c2)
                and len(parts(c1) | parts(c2)) == 6
            ),
            20,
        )
        assert joined, f"after c2 joined: c1={parts(c1)} c2={parts(c2)}"

        for i in range(120):
            await producer.send(topic, b"%d" % i, key=b"k%d" % i)
        await producer.flush()
        assert await wait_until(lambda: len(got["c1"]) + len(got["c2"]) >= 120, 10)
        assert got["c1"] and got["c2"], "both members consume"

        stop2.set()
        await t2
        await c2.stop()  # LeaveGroup: c1 takes over at once, no session timeout
        assert await wait_until(lambda: len(parts(c1)) == 6, 10), "c1 takes all 6 back"

        before = len(got["c1"])
        for i in range(120, 180):
            await producer.send(topic, b"%d" % i, key=b"k%d" % i)
        await producer.flush()
        assert await wait_until(lambda: len(got["c1"]) - before >= 60, 10)
        await asyncio.sleep(0.3)  # let any duplicate show up
    finally:
        stop1.set()
        stop2.set()
        await t1
        if t2 is not None:
            await t2
        await producer.stop()
        await c1.stop()
        await c2.stop()

    everything = got["c1"] + got["c2"]
    assert sorted(everything) == list(range(180)), "no loss, no duplicates"
    # the listeners saw it too: c2 got a share, and c1's last assignment is everything
    assert any(who == "c2" and kind == "assigned" and p for who, kind, p in events), events
    c1_assigned = [p for who, kind, p in events if who == "c1" and kind == "assigned"]
    assert c1_assigned[-1] == [0, 1, 2, 3, 4, 5], events


CRASH_CHILD = """
import asyncio, sys, time
from aiokafka import AIOKafkaConsumer

async def main():
    topic, group, session_ms, bootstrap = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         session_timeout_ms=session_ms, heartbeat_interval_ms=session_ms // 4,
                         fetch_max_wait_ms=10, auto_offset_reset="earliest",
                         enable_auto_commit=False)
    await c.start()
    deadline = time.monotonic() + 60  # never outlive a broken test by much
    while time.monotonic() < deadline:
        await c.getmany(timeout_ms=100)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_crashed_member_in_other_process_expires(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """A member SIGKILLed in another process (no LeaveGroup) is expired after session_timeout_ms
    and its partitions go to the survivor."""
    session_ms = 3000
    topic, group = await new_topic(4), uniq("g")
    c1 = consumer(
        kafka_bootstrap,
        topic,
        group_id=group,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=session_ms // 4,
        enable_auto_commit=False,
    )
    await c1.start()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_CHILD, topic, group, str(session_ms), kafka_bootstrap
    )
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and len(c1.assignment()) != 2:
            await c1.getmany(timeout_ms=100)
        assert len(c1.assignment()) == 2, "the child joined and took half"

        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 5)
        killed = time.monotonic()
        deadline = killed + 3 * session_ms / 1000 + 10
        while time.monotonic() < deadline and len(c1.assignment()) < 4:
            await c1.getmany(timeout_ms=100)
        took = time.monotonic() - killed
        assert len(c1.assignment()) == 4, (
            f"survivor holds {len(c1.assignment())}/4 after {took:.1f}s"
        )
        # expired by the session timeout, not earlier (that would mean it left cleanly)
        assert took >= session_ms / 1000 * 0.5
    finally:
        if child.returncode is None:
            child.kill()
            await asyncio.wait_for(child.wait(), 5)
        await c1.stop()


# --------------------------------------------------------------------------- transactions


@pytest.mark.slow
async def test_transactions_and_read_committed(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    src, dst = await new_topic(), await new_topic()
    group = uniq("txgroup")
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=uniq("tx"), enable_idempotence=True
    )
    await asyncio.wait_for(producer.start(), 15)
    try:
        async with producer.transaction():
            for i in range(5):
                await producer.send(dst, b"commit-%d" % i)
        with pytest.raises(RuntimeError, match="force abort"):
            async with producer.transaction():
                for i in range(5):
                    await producer.send(dst, b"abort-%d" % i)
                raise RuntimeError("force abort")
        async with producer.transaction():
            await producer.send(dst, b"commit-after")
        async with producer.transaction():  # consume-transform-produce: offsets in the txn
            await producer.send(dst, b"with-offsets")
            await producer.send_offsets_to_transaction(
                {TopicPartition(src, 0): OffsetAndMetadata(3, "")}, group
            )
    finally:
        await producer.stop()

    async with consumer(kafka_bootstrap, dst, isolation_level="read_committed") as rc:
        committed = await consume_n(rc, 7, 10)
        committed += await consume_n(rc, 1, 0.5)
    assert [r.value for r in committed] == [
        *(b"commit-%d" % i for i in range(5)),
        b"commit-after",
        b"with-offsets",
    ]

    async with consumer(kafka_bootstrap, dst, isolation_level="read_uncommitted") as ru:
        everything = await consume_n(ru, 12, 10)
        everything += await consume_n(ru, 1, 0.5)
    assert len(everything) == 12
    assert sum(r.value.startswith(b"abort-") for r in everything) == 5

    async with consumer(kafka_bootstrap, group_id=group, enable_auto_commit=False) as c:
        assert await c.committed(TopicPartition(src, 0)) == 3


# --------------------------------------------------------------------------- the launcher


@pytest.mark.slow
async def test_restart_with_keep_data_keeps_records_and_offsets(
    restartable_kafka: LocalKafka,
) -> None:
    kafka = restartable_kafka
    bootstrap, cluster_id = kafka.bootstrap, kafka.cluster_id
    topic, group = uniq("restart"), uniq("g")
    tp = TopicPartition(topic, 0)
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        for i in range(3):
            await producer.send_and_wait(topic, b"before-%d" % i)
    async with consumer(bootstrap, topic, group_id=group, enable_auto_commit=False) as c:
        assert len(await consume_n(c, 1, 10)) == 1
        await c.commit({tp: 1})

    await asyncio.to_thread(kafka.stop)
    assert not kafka.is_running()
    await asyncio.to_thread(kafka.start)
    assert (kafka.bootstrap, kafka.cluster_id) == (bootstrap, cluster_id)  # clients reconnect

    async with consumer(bootstrap, topic) as c:
        assert [r.value for r in await consume_n(c, 3, 15)] == [b"before-%d" % i for i in range(3)]
    async with consumer(bootstrap, topic, group_id=group, enable_auto_commit=False) as c:
        assert [r.value for r in await consume_n(c, 2, 15)] == [b"before-1", b"before-2"]

    # A crash (SIGKILL, no controlled shutdown) keeps acknowledged records too.
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        await producer.send_and_wait(topic, b"before-crash")
    await asyncio.to_thread(kafka.kill)
    assert not kafka.is_running()
    await asyncio.to_thread(kafka.start)
    async with consumer(bootstrap, topic) as c:
        values = [r.value for r in await consume_n(c, 4, 15)]
    assert values[-1:] == [b"before-crash"] and len(values) == 4
