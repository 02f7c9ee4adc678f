"""A campaign runner SIGKILLed ten times mid-campaign: each recipient still gets exactly one
committed command on the outbound topic.

The runner runs as its own process (``services.campaigns.runner_main``) over a 10 000-send
plan file.  Each kill comes at a moment chosen at random and recognised on the broker (never
after a fixed sleep): right after the process starts, or once the outbound topic's high
watermark — records written, committed or not — has moved on by a random count.  The
restarted runner fences the killed one, whose open transaction is aborted, and continues
from its committed progress.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.campaigns.recipients_io import write_plan
from services.consumers import partitions_of
from tests.campaign_plans import committed_commands, duplicates, plan
from tests.e2e.processes import ChildProcess

pytestmark = pytest.mark.slow

RECIPIENTS = 10_000
KILLS = 10


class Watermarks:
    """The outbound topic's high watermark: every record written, whether committed or not."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, isolation_level="read_uncommitted"
        )

    async def __aenter__(self) -> Watermarks:
        found = await partitions_of(self.bootstrap, [self.topic], "test")
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(found[self.topic])]
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def written(self) -> int:
        return sum((await self.consumer.end_offsets(self.partitions)).values())

    async def in_open_transaction(self, written: int, *, within: float = 2.0) -> bool:
        """Whether records up to ``written`` stay in a transaction nobody ends: the topic's last
        stable offset (what a read_committed consumer's end offsets are) still short of them
        ``within`` seconds on.  Right after a SIGKILL that is a kill inside a transaction (the
        broker keeps it open until the restarted producer fences it); a commit that was already
        on its way moves the stable offset up within milliseconds."""
        committed = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, isolation_level="read_committed"
        )
        await committed.start()
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                if sum((await committed.end_offsets(self.partitions)).values()) >= written:
                    return False
                await asyncio.sleep(0.05)
            return True
        finally:
            await committed.stop()

    async def records(self) -> int:
        """Data records on the topic, committed and aborted (markers are not returned)."""
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        ends = await self.consumer.end_offsets(self.partitions)
        count = 0
        while any([await self.consumer.position(tp) < ends[tp] for tp in self.partitions]):
            batches = await self.consumer.getmany(timeout_ms=200, max_records=10000)
            count += sum(len(records) for records in batches.values())
        return count


async def test_a_runner_killed_ten_times_sends_each_recipient_exactly_one_command(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid4().hex[:8]
    settings = Settings(
        data_dir=tmp_path / "var",
        kafka_bootstrap=kafka_bootstrap,
        topic_partitions=3,
        outbound_topic=f"sb.outbound.{suffix}",
        campaign_progress_topic=f"sb.campaign-progress.{suffix}",
        interactions_topic=f"sb.interactions.{suffix}",
        deadletter_topic=f"sb.deadletter.{suffix}",
        routing_topic=f"sb.routing.{suffix}",
        presence_topic=f"sb.presence.{suffix}",
    )
    await ensure_topics(settings, kafka_bootstrap)
    sends = plan(RECIPIENTS, channels=("sms", "email"))
    plan_file = tmp_path / "plan.jsonl"
    write_plan(plan_file, sends)
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    log_path = tmp_path / "runner.log"

    def runner() -> ChildProcess:
        return ChildProcess(
            [
                sys.executable,
                "-m",
                "services.campaigns.runner_main",
                "--bootstrap",
                kafka_bootstrap,
                "--campaign-file",
                str(plan_file),
                "--outbound-topic",
                settings.outbound_topic,
                "--progress-topic",
                settings.campaign_progress_topic,
                # Small transactions: many commits for a kill to fall between.
                "--batch-size",
                "100",
            ],
            log_path,
        ).start()

    started = time.monotonic()
    kills_at: list[int] = []
    async with Watermarks(kafka_bootstrap, settings.outbound_topic) as topic:
        for kill in range(KILLS):
            process = runner()
            if kill % 5 != 4:  # most kills mid-production, some during start-up
                target = await topic.written() + rng.randrange(20, 800)
                deadline = time.monotonic() + 30
                while await topic.written() < target:
                    assert process.proc.poll() is None, log_path.read_text()[-3000:]
                    assert time.monotonic() < deadline, "the runner stopped producing"
                    await asyncio.sleep(rng.uniform(0.001, 0.02))
            process.kill()
            kills_at.append(await topic.written())
        final = runner()
        while final.proc.poll() is None:
            assert time.monotonic() - started < 120, "the campaign did not finish"
            await asyncio.sleep(0.05)
        written = await topic.written()
        records = await topic.records()
    assert final.proc.returncode == 0, log_path.read_text()[-3000:]

    commands = await committed_commands(kafka_bootstrap, settings.outbound_topic, expect=RECIPIENTS)
    aborted = records - len(commands)
    print(
        f"kills at high watermarks {kills_at}; {written} offsets written, {records} commands "
        f"of which {len(commands)} committed and {aborted} aborted; "
        f"{time.monotonic() - started:.1f}s"
    )
    assert aborted > 0, "no kill fell inside a transaction: the test proved less than it says"
    assert not duplicates(commands), f"doubled: {list(duplicates(commands).items())[:5]}"
    assert {c.command_id for c, _, _ in commands} == {s.command.command_id for s in sends}
    per_customer = Counter(key for _, key, _ in commands)
    assert set(per_customer.values()) == {1}
    assert set(per_customer) == {str(s.customer_id).encode() for s in sends}
    assert len(commands) == RECIPIENTS
