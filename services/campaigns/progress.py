"""A campaign's progress on Kafka: how far each channel's sends were produced.

The runner writes one record per transaction to the compacted progress topic, keyed by the
campaign, in the same Kafka transaction as the commands it counts: the record is committed
exactly when those commands are.  ``lanes`` holds, per channel, how many of that channel's
planned sends (in plan order) are on the outbound topic — the place to continue from.

Reading it back must see every committed record of this campaign and nothing uncommitted,
even while other campaigns' transactions are open on the same partition (they hold the last
stable offset back).  So ``read_progress`` reads ``read_committed`` up to the high watermark
taken *after* this campaign's transactional producer was initialised (which completes, by
commit or abort, the transaction a killed predecessor left open).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.errors import SwitchboardError, Unavailable
from services.consumers import kafka_reader, partitions_of

RunState = Literal["running", "paused", "cancelled", "done", "stopped"]


class ProgressUnreadable(SwitchboardError):
    """The progress record of a campaign is not one this runner wrote (a bug or a foreign
    writer): continuing from it could send twice, so the runner refuses to start."""


@dataclass
class CampaignProgress:
    campaign_id: UUID
    total: int
    lanes: dict[str, int] = field(default_factory=dict)  # channel -> sends produced, in order
    state: RunState = "running"

    @property
    def produced(self) -> int:
        return sum(self.lanes.values())

    def key(self) -> bytes:
        return str(self.campaign_id).encode()

    def dump(self) -> bytes:
        return json.dumps(
            {
                "campaign_id": str(self.campaign_id),
                "total": self.total,
                "produced": self.produced,
                "lanes": self.lanes,
                "state": self.state,
                "at": time.time(),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> CampaignProgress:
        try:
            data = json.loads(raw)
            lanes = {str(k): int(v) for k, v in data["lanes"].items()}
            return cls(UUID(data["campaign_id"]), int(data["total"]), lanes, data["state"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ProgressUnreadable(f"unreadable campaign progress record: {e}") from None


async def read_progress(
    bootstrap: str,
    topic: str,
    campaign_id: UUID,
    *,
    timeout: float = 90.0,
    committed_only: bool = False,
) -> CampaignProgress | None:
    """The last committed progress of ``campaign_id``, or None if it never produced.

    The runner reads to the high watermark (its predecessor's last transaction is over by
    then).  Anyone else (``committed_only``: a status query) reads to the last stable
    offset, so a runner's transaction open now does not keep them waiting: they see the
    progress as of its last commit."""
    raw = await read_last(
        bootstrap,
        topic,
        str(campaign_id).encode(),
        timeout=timeout,
        committed_only=committed_only,
    )
    return None if raw is None else CampaignProgress.load(raw)


async def read_last(
    bootstrap: str,
    topic: str,
    key: bytes,
    *,
    timeout: float = 90.0,
    committed_only: bool = False,
) -> bytes | None:
    """The value of the last committed record with ``key`` on the progress topic (read as
    ``read_progress`` says), or None."""
    partitions = [
        TopicPartition(topic, p)
        for p in sorted((await partitions_of(bootstrap, [topic], "switchboard-campaigns"))[topic])
    ]
    watermarks = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="switchboard-campaigns-progress",
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await watermarks.start()
    try:
        # Every record of ours lies below the high watermark now: our predecessor's last
        # transaction completed while our producer was initialised.
        ends = await watermarks.end_offsets(partitions)
    finally:
        await watermarks.stop()
    reader = kafka_reader(
        bootstrap=bootstrap, client_id="switchboard-campaigns-progress", fetch_max_wait_ms=100
    )
    await reader.start()
    found: bytes | None = None
    deadline = time.monotonic() + timeout
    try:
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"campaign progress on {topic} not readable to its end within {timeout:.0f}s "
                    "(a transaction of another runner stays open?)"
                )
            batches = await reader.getmany(*pending, timeout_ms=200, max_records=5000)
            for records in batches.values():
                for record in records:
                    if record.key == key and record.value is not None:
                        found = record.value
            for tp in list(pending):
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
            await asyncio.sleep(0)
    finally:
        await reader.stop()
    return found


__all__ = ["CampaignProgress", "ProgressUnreadable", "RunState", "read_last", "read_progress"]
