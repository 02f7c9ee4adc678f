"""Campaign dispatch benchmark: planned sends -> the campaign runner -> committed commands.

Prints commands/s of the ``CampaignRunner`` (Kafka transactions of ``--batch-size`` commands
plus the progress record, exactly once on the topic) beside its floor measured in the same
run on the same commands: the raw produce rate of a plain producer (no transaction,
acks=all), serialising and keying each command the same way.

    python bench/campaign_dispatch.py --n 100000

Needs a broker: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer

from contracts import dump_command
from services.bootstrap.kafka_topics import ensure_topics, topic_size
from services.bootstrap.settings import Settings
from services.campaigns.limits import RateLimits
from services.campaigns.recipients import PlannedSend
from services.campaigns.runner import CampaignRunner, RunnerKafka
from tests.campaign_plans import plan


class Running:
    def state(self, campaign_id: uuid.UUID) -> str:
        return "running"


async def raw_produce(bootstrap: str, topic: str, sends: list[PlannedSend]) -> float:
    """Seconds to produce every command with a plain producer, all acknowledged."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, dump_command(s.command), key=str(s.customer_id).encode())
            for s in sends
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def campaign_run(kafka: RunnerKafka, sends: list[PlannedSend]) -> tuple[float, float, int]:
    """(seconds producing, seconds in all with start-up, transactions) of one runner."""
    marks: list[float] = []
    runner = CampaignRunner(
        sends[0].campaign_id,
        sends,
        control=Running(),
        limits=RateLimits(),
        kafka=kafka,
        on_progress=lambda produced, total: marks.append(time.perf_counter()),
    )
    started = time.perf_counter()
    summary = await runner.run()
    assert summary.outcome == "done" and summary.produced == len(sends), summary
    return marks[-1] - marks[0], time.perf_counter() - started, summary.transactions


def _settings(work: Path, bootstrap: str, partitions: int) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        data_dir=work / "var",
        kafka_bootstrap=bootstrap,
        topic_partitions=partitions,
        outbound_topic=f"bench.outbound.{suffix}",
        campaign_progress_topic=f"bench.campaign-progress.{suffix}",
        interactions_topic=f"bench.interactions.{suffix}",
        deadletter_topic=f"bench.deadletter.{suffix}",
        routing_topic=f"bench.routing.{suffix}",
        presence_topic=f"bench.presence.{suffix}",
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-seconds", type=float, default=0.1)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="floor and runner, in turn")
    args = parser.parse_args()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    work = Path(tempfile.mkdtemp(prefix="sb-bench-campaign-"))
    cleanups = [lambda: shutil.rmtree(work, ignore_errors=True)]
    try:
        bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not bootstrap:
            from deploy.kafka_local import LocalKafka

            kafka = LocalKafka(work_dir=work / "kafka").start()
            cleanups.append(kafka.stop)
            bootstrap = kafka.bootstrap
        print(f"planning {args.n} sends…", file=sys.stderr)
        sends = plan(args.n, channels=("sms", "email"))
        floors: list[float] = []
        runs: list[tuple[float, float, int, int]] = []
        for round_ in range(args.rounds):
            # Fresh topics each round: the runner starts the campaign from zero again.
            settings = _settings(work, bootstrap, args.partitions)
            await ensure_topics(settings, bootstrap)
            floor_topic = settings.interactions_topic  # a topic like the outbound one
            await raw_produce(bootstrap, floor_topic, sends[:2000])  # connections, metadata
            floors.append(await raw_produce(bootstrap, floor_topic, sends))
            kafka = RunnerKafka(
                bootstrap=bootstrap,
                outbound_topic=settings.outbound_topic,
                progress_topic=settings.campaign_progress_topic,
                batch_size=args.batch_size,
                batch_seconds=args.batch_seconds,
            )
            producing, overall, transactions = await campaign_run(kafka, sends)
            on_topic = await topic_size(bootstrap, settings.outbound_topic)
            runs.append((producing, overall, transactions, on_topic))
            print(
                f"round {round_ + 1}: floor {args.n / floors[-1]:.0f}/s, "
                f"runner {args.n / producing:.0f}/s",
                file=sys.stderr,
            )

        n = args.n
        floor = min(floors)
        producing, overall, transactions, on_topic = min(runs)
        print(
            f"commands                 {n}  ({args.partitions} partitions, best of {args.rounds})"
        )
        print(f"raw produce (floor)      {n / floor:10.0f} commands/s  ({floor:.2f} s)")
        print(
            f"campaign runner          {n / producing:10.0f} commands/s  ({producing:.2f} s; "
            f"{transactions} transactions of up to {args.batch_size})"
        )
        print(
            f"  with start-up          {n / overall:10.0f} commands/s  ({overall:.2f} s: "
            "plan check, fencing, progress read)"
        )
        print(f"runner / floor           {floor / producing:10.0%}")
        print(f"offsets on the topic     {on_topic}  (commands + transaction markers)")
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


if __name__ == "__main__":
    asyncio.run(main())
