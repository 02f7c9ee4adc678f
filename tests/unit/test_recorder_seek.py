"""Seeking a partition this recorder no longer owns is no failure, and positions nothing.

A rebalance can revoke a partition while the recorder reads its stored position (a batch of
it conflicted, say): the seek then finds it gone from the assignment, or aiokafka refuses it
(``IllegalStateError``).  Its new owner seeks it; this recorder must neither fail nor take a
later batch of it for a positioned one.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from channels.publishing import InteractionPublisher
from services.recorder import Recorder

TP = TopicPartition("sb.interactions.v1", 2)


class FakeHistory:
    def __init__(self, offset: int | None) -> None:
        self.offset = offset

    def tracked_offset(self, topic: str, partition: int) -> int | None:
        return self.offset


class FakeConsumer:
    """As much of AIOKafkaConsumer as seeking uses."""

    def __init__(self, assigned: set[TopicPartition], *, refuses: bool = False) -> None:
        self.assigned = assigned
        self.refuses = refuses  # revoked between the assignment check and the seek
        self.seeks: list[tuple[TopicPartition, int | str]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if self.refuses:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.seeks.append((tp, offset))

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        if self.refuses:
            raise IllegalStateError(f"No current assignment for partition {partitions}")
        self.seeks.extend((tp, "beginning") for tp in partitions)


def recorder(offset: int | None, consumer: FakeConsumer) -> Recorder:
    recording = Recorder(
        FakeHistory(offset),  # type: ignore[arg-type]
        bootstrap="127.0.0.1:9",
        topics=[TP.topic],
        deadletter_topic="sb.deadletter.v1",
        group_id="sb-recorder",
        dead_letters=InteractionPublisher("127.0.0.1:9", topic="sb.deadletter.v1"),  # unstarted
    )
    recording.consumer = consumer  # type: ignore[assignment]
    return recording


async def not_positioned(recording: Recorder) -> bool:
    """A batch of the partition fetched now is dropped unread, not recorded."""
    batch = [SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=50, value=b"{}")]
    before = recording.stats.unpositioned
    positioned = await recording._positioned(TP, recording._epochs.get(TP), batch)  # type: ignore[arg-type]
    return not positioned and recording.stats.unpositioned == before + 1


@pytest.mark.parametrize("offset", [42, None], ids=["stored offset", "never stored"])
async def test_a_partition_revoked_while_seeking_it_is_left_to_its_new_owner(
    offset: int | None,
) -> None:
    consumer = FakeConsumer({TP}, refuses=True)
    recording = recorder(offset, consumer)

    await recording.seek_to_stored(TP)  # does not raise

    assert TP not in recording._epochs
    assert await not_positioned(recording)


async def test_a_partition_no_longer_assigned_is_not_sought_at_all() -> None:
    consumer = FakeConsumer(set())
    recording = recorder(42, consumer)

    await recording.seek_to_stored(TP)

    assert consumer.seeks == [] and TP not in recording._epochs
    assert await not_positioned(recording)


@pytest.mark.parametrize(
    ("offset", "sought"), [(42, 42), (None, "beginning")], ids=["stored", "never stored"]
)
async def test_an_owned_partition_is_sought_to_the_stored_position_and_positioned(
    offset: int | None, sought: int | str
) -> None:
    consumer = FakeConsumer({TP})
    recording = recorder(offset, consumer)

    await recording.seek_to_stored(TP)

    assert consumer.seeks == [(TP, sought)]
    assert await recording._positioned(TP, recording._epochs.get(TP), [])
