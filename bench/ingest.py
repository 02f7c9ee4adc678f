"""Ingest benchmark: Kafka -> recorder -> event store -> timeline visible.

Prints interactions/s for the whole pipeline and, measured in the same run on the
same data, its two floors: the raw aiokafka consume rate of the topic, and the raw
batched ``Application.save`` rate (batches of 100, no Kafka, no dedupe, no view).

    python bench/ingest.py --n 100000 --store sqlite
    python bench/ingest.py --n 100000 --store postgres     # throwaway local cluster

Needs a broker: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from channels.publishing import InteractionPublisher
from contracts import parse_interaction
from deploy.simulator import TrafficGenerator, make_customers
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.domain import Customer, customer_id_for
from services.history.customers import interaction_fields

console = Console(stderr=True)


def make_records(n: int, customers: int) -> list[tuple[str, bytes]]:
    gen = TrafficGenerator(make_customers(customers), duplicate_rate=0.0, malformed_rate=0.0)
    records = gen.records()
    return [next(records) for _ in range(n)]


async def publish_all(settings: Settings, records: list[tuple[str, bytes]]) -> float:
    start = time.perf_counter()
    async with InteractionPublisher(
        settings.kafka_bootstrap,
        topic=settings.interactions_topic,
        linger_ms=5,
        max_batch_size=256 * 1024,
    ) as pub:
        futures = []
        with Progress(
            TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task("", total=len(records))
            for i, (key, value) in enumerate(records):
                futures.append(await pub.publish_unconfirmed(value, key=key))
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures.clear()
                    bar.update(task, completed=i + 1)
            await asyncio.gather(*futures)
            bar.update(task, completed=len(records))
    return time.perf_counter() - start


async def raw_consume(settings: Settings, n: int) -> float:
    """Floor 1: just pull the records out of Kafka (no parsing, no store)."""
    consumer = AIOKafkaConsumer(
        settings.interactions_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    start = None
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            if start is None and batch:
                start = time.perf_counter()
            seen += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - (start or time.perf_counter())


def raw_save(settings: Settings, records: list[tuple[str, bytes]], batch: int = 100) -> float:
    """Floor 2: the library's batched save of the same interactions (no Kafka, no dedupe)."""
    history = bootstrap(settings).history()
    events = [parse_interaction(value) for _, value in records]
    start = time.perf_counter()
    customers: dict = {}
    for i in range(0, len(events), batch):
        touched = {}
        for e in events[i : i + batch]:
            cid = customer_id_for(e.party)
            c = customers.get(cid)
            if c is None:
                c = customers[cid] = Customer(address=e.party, channel=str(e.channel))
            c.record_interaction(**interaction_fields(e))
            touched[cid] = c
        history.save(*touched.values())
    elapsed = time.perf_counter() - start
    history.close()
    return elapsed


async def pipeline(settings: Settings, n: int) -> tuple[float, float]:
    """The recorder (here) and the timeline service (its own process, as in production,
    so the two use both cores), until the timeline shows all n."""
    recorder = bootstrap(settings).recorder()
    view = bootstrap(settings).timeline_view()
    env = {
        **os.environ,
        **{
            f"SWITCHBOARD_{k.upper()}": str(v)
            for k, v in settings.model_dump().items()
            if v is not None
        },
    }
    timeline = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", "timeline", "--log-level", "WARNING"], env=env
    )
    stop = asyncio.Event()
    try:
        start = time.perf_counter()
        task = asyncio.create_task(recorder.run(stop))
        recorded_at = None
        with Progress(
            TextColumn("recording"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task_id = bar.add_task("", total=n)
            while True:
                await asyncio.sleep(0.02)
                bar.update(task_id, completed=recorder.stats.recorded)
                if recorded_at is None and recorder.stats.recorded + recorder.stats.duplicates >= n:
                    recorded_at = time.perf_counter() - start
                if recorded_at is not None:
                    shown = await asyncio.to_thread(view.max_tracking_id, "switchboard")
                    if (shown or 0) >= recorder.stats.last_notification_id:
                        break
                if task.done():
                    task.result()
                if timeline.poll() is not None:
                    raise RuntimeError("the timeline service exited")
        total = time.perf_counter() - start
    finally:
        stop.set()
        timeline.terminate()
        timeline.wait(30)
    await task
    console.print(f"recorder: {recorder.stats}")
    return recorded_at or total, total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite | postgres (throwaway local cluster) | postgresql://…",
    )
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    cleanups = [lambda: shutil.rmtree(work, ignore_errors=True)]
    try:
        bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not bootstrap:
            from deploy.kafka_local import LocalKafka

            kafka = LocalKafka(work_dir=work / "kafka").start()
            cleanups.append(kafka.stop)
            bootstrap = kafka.bootstrap

        def store_for(name: str) -> str:
            if args.store == "sqlite":
                return f"sqlite:///{work / name}.db"
            if args.store == "postgres":
                return cluster.create_database()
            return args.store

        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            cluster = start_throwaway_cluster()
            cleanups.append(cluster.stop)

        suffix = uuid.uuid4().hex[:6]
        settings = Settings(
            data_dir=work,
            store=store_for("pipeline"),
            kafka_bootstrap=bootstrap,
            interactions_topic=f"bench.interactions.{suffix}",
            deadletter_topic=f"bench.deadletter.{suffix}",
            # The recorder reads the routing decisions too: the bench's own, not the hub's.
            routing_topic=f"bench.routing.{suffix}",
            presence_topic=f"bench.presence.{suffix}",
            recorder_group=f"bench-{suffix}",
            topic_partitions=args.partitions,
        )
        console.print(f"generating {args.n} interactions for {args.customers} customers…")
        records = make_records(args.n, args.customers)
        await ensure_topics(settings, bootstrap)
        publish_s = await publish_all(settings, records)
        consume_s = await raw_consume(settings, args.n)
        save_s = raw_save(settings.model_copy(update={"store": store_for("rawsave")}), records)
        recorded_s, visible_s = await pipeline(settings, args.n)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()

    n = args.n
    pipeline_rate = n / visible_s
    save_rate = n / save_s
    table = Table(
        title=f"ingest, {n} interactions, store={args.store}, "
        f"{args.partitions} partition(s), 2-core machine"
    )
    for col in ("measure", "seconds", "interactions/s"):
        table.add_column(col)
    table.add_row("publish (confirmed, for reference)", f"{publish_s:.2f}", f"{n / publish_s:,.0f}")
    table.add_row("floor: raw aiokafka consume", f"{consume_s:.2f}", f"{n / consume_s:,.0f}")
    table.add_row(
        "floor: raw batched Application.save (100/batch)", f"{save_s:.2f}", f"{save_rate:,.0f}"
    )
    table.add_row(
        "pipeline: recorded in the event store", f"{recorded_s:.2f}", f"{n / recorded_s:,.0f}"
    )
    table.add_row("pipeline: visible on the timeline", f"{visible_s:.2f}", f"{pipeline_rate:,.0f}")
    Console().print(table)
    target = 10_000 if args.store == "sqlite" else 5_000
    print(
        f"pipeline / raw save = {pipeline_rate / save_rate:.0%} (target >= 50%); "
        f"pipeline = {pipeline_rate:,.0f}/s (target >= {target:,}/s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
