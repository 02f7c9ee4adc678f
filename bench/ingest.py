"""Ingest benchmark: Kafka -> recorder -> event store -> timeline visible.

Prints interactions/s for the whole pipeline and, measured in the same run on the
same data, its two floors: the raw aiokafka consume rate of the topic, and the raw
batched ``Application.save`` rate (batches of 100, no Kafka, no dedupe, no view).

    python bench/ingest.py --n 100000 --store sqlite
    python bench/ingest.py --n 100000 --store postgres     # throwaway local cluster

With ``--instances 1,2,3`` it measures scale-out instead: for each count K, a fresh topic of
``--partitions`` (default 6) partitions, a fresh consumer group and a fresh store, K recorder
processes (``switchboard serve recorder``, as in production) sharing the partitions.  Once
each holds its partitions, the records are published in one Kafka transaction, and the run is
timed from its commit until the store holds them all (one unmeasured warm-up run first).  It
prints interactions/s, per instance, the CPU each part spent per 1000 interactions (from
/proc) and the sizing that follows.  PostgreSQL is the scale-out store (SQLite has one writer
per file):

    python bench/ingest.py --instances 1,2,3 --n 30000 --store postgres

Needs a broker: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local one.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from channels.publishing import InteractionPublisher
from contracts import identity_of, parse_interaction
from deploy.ports import free_port
from deploy.simulator import TrafficGenerator, make_customers
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.domain import Customer, customer_id_for
from services.history.customers import interaction_fields

console = Console(stderr=True)


def make_records(n: int, customers: int) -> list[tuple[str, bytes]]:
    """N simulated records, keyed as the channels' publisher keys them (``identity_of`` the
    party: a number's calls, SMS and WhatsApp share a partition); the simulator keys by the
    raw party, which on several partitions would put one person on two recorders."""
    gen = TrafficGenerator(make_customers(customers), duplicate_rate=0.0, malformed_rate=0.0)
    records = gen.records()
    out = []
    for _ in range(n):
        _, value = next(records)
        out.append((identity_of(parse_interaction(value).party), value))
    return out


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


async def pipeline(settings: Settings, n: int) -> tuple[float, float, float, float]:
    """The recorder (here) and the timeline service (its own process, as in production,
    so the two use both cores), until the timeline shows all n.  Returns the seconds until
    recorded and until visible, and the CPU seconds the recorder (this process) and the
    timeline service spent meanwhile: what each costs whatever else the machine does."""
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
    timeline_cpu = 0.0
    try:
        start = time.perf_counter()
        stolen = steal_ticks()
        recorder_cpu = process_cpu(os.getpid())
        timeline_cpu = process_cpu(timeline.pid)
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
        recorder_cpu = process_cpu(os.getpid()) - recorder_cpu
        timeline_cpu = process_cpu(timeline.pid) - timeline_cpu
        stolen = (steal_ticks() - stolen) / _TICK / (total * (os.cpu_count() or 1))
    finally:
        stop.set()
        timeline.terminate()
        timeline.wait(30)
    await task
    console.print(f"recorder: {recorder.stats}")
    console.print(f"steal: {stolen:.0%} of the cores' time went to other guests of the host")
    return recorded_at or total, total, recorder_cpu, timeline_cpu


# --------------------------------------------------------------------------- scale-out

_TICK = os.sysconf("SC_CLK_TCK")
_WARNING_LINE = re.compile(r'\b(WARNING|ERROR|CRITICAL)\b|"level": "(warning|error|critical)"')


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on (the name before it may hold spaces): [1] is the
    parent's pid, [11]/[12] user/system ticks of all threads, [13]/[14] those of the
    children it has waited for."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def steal_ticks() -> int:
    """Ticks the hypervisor gave other guests while this machine wanted the CPU (/proc/stat's
    steal): on a busy host every figure here is lower by about that share."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) if len(fields) > 8 else 0


def process_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of a live process (``reaped``: plus its children that have exited)."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if reaped else 0)
    return ticks / _TICK


def server_cpu(pid: int) -> float:
    """A server with its worker processes, live or gone (the postmaster and its backends)."""
    total = process_cpu(pid, reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat(int(entry.name))
            if f is not None and int(f[1]) == pid:
                total += (int(f[11]) + int(f[12])) / _TICK
    return total


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by each part, and by the whole machine (all cores)."""

    at: float
    recorders: float
    store: float | None  # None: not a server of ours (SQLite is inside the recorders)
    broker: float | None  # None: a broker we did not start
    bench: float
    machine_busy: float

    @classmethod
    def take(cls, children: list[subprocess.Popen], store_pid: int | None, broker_pid: int | None):
        cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return cls(
            at=time.perf_counter(),
            recorders=sum(process_cpu(c.pid) for c in children),
            store=server_cpu(store_pid) if store_pid else None,
            broker=process_cpu(broker_pid) if broker_pid else None,
            bench=process_cpu(os.getpid()),
            machine_busy=(sum(cpu) - cpu[3] - cpu[4]) / _TICK,  # all but idle and iowait
        )


@dataclass
class ScaleRun:
    instances: int
    split: list[list[int]]  # the interactions partitions each instance held
    n: int  # interactions recorded between start and end
    start: CpuSnapshot  # the records' transaction committed, every instance holding partitions
    end: CpuSnapshot  # the store has recorded every published interaction
    total: int
    publish_s: float  # publishing the transaction, before the measured window
    recorded_before_commit: int  # in the store when the window starts: 0 (read_committed)
    stable_after_s: float  # processes started -> every one holds partitions
    rebalanced: bool  # the split at the end differs from the one at the start
    load: tuple[float, float, float]  # load average before the processes started
    warnings: list[str] = field(default_factory=list)  # the recorders' warning/error lines
    exit_codes: list[int | None] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.end.at - self.start.at

    @property
    def conflicts(self) -> int:
        """Batches rolled back because another recorder had written the same customer."""
        return sum("conflicts with stored state" in line for line in self.warnings)

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    def cpu(self, part: str) -> float | None:
        before, after = getattr(self.start, part), getattr(self.end, part)
        return None if before is None else after - before

    def ms_per_1000(self, part: str) -> float | None:
        used = self.cpu(part)
        return None if used is None else used * 1e6 / self.n

    def cores(self, part: str) -> float | None:
        used = self.cpu(part)
        return None if used is None else used / self.seconds

    @property
    def ours_cores(self) -> float:
        """Cores the pipeline kept busy: recorders, store and broker (the bench's poll not)."""
        return sum(self.cores(p) or 0.0 for p in ("recorders", "store", "broker"))

    @property
    def others_cores(self) -> float:
        """Busy cores not ours: other processes on the machine (others' tests, the shell)."""
        ours = sum(self.cores(p) or 0.0 for p in ("recorders", "store", "broker", "bench"))
        return max(0.0, (self.end.machine_busy - self.start.machine_busy) / self.seconds - ours)


async def group_split(admin: AIOKafkaAdminClient, group: str, topic: str) -> list[list[int]] | None:
    """The partitions of ``topic`` each member of ``group`` holds, once the group is stable."""
    try:
        [response] = await admin.describe_consumer_groups([group])
    except Exception:  # the coordinator is not there yet
        return None
    described = response.groups[0]
    error_code, state, members = described[0], described[2], described[5]
    if error_code or state != "Stable":
        return None
    return [
        sorted(
            p
            for t, partitions in ConsumerProtocolMemberAssignment.decode(m[-1]).assignment
            for p in partitions
            if t == topic
        )
        for m in members
    ]


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def publish_in_one_transaction(
    settings: Settings, records: list[tuple[str, bytes]]
) -> dict[int, list[int]]:
    """Publish every record in one Kafka transaction.  The recorders read committed records
    only, so they see none until the commit and then all at once: every partition has its
    whole backlog and no publisher competes for the cores while they are measured.  Returns
    each partition's record offsets (the commit markers take offsets of their own)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"bench-scale-{uuid.uuid4().hex[:8]}",
        linger_ms=5,
        max_batch_size=256 * 1024,
        transaction_timeout_ms=600_000,
    )
    offsets: dict[int, list[int]] = {}

    def note(sent: list) -> None:
        for meta in sent:
            offsets.setdefault(meta.partition, []).append(meta.offset)

    await producer.start()
    try:
        with Progress(
            TextColumn("publishing (one transaction)"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("", total=len(records))
            async with producer.transaction():
                futures = []
                for i, (key, value) in enumerate(records):
                    futures.append(
                        await producer.send(
                            settings.interactions_topic,
                            value,
                            key=key.encode(),
                            headers=[("content-type", b"application/json")],
                        )
                    )
                    if len(futures) >= 5000:
                        note(await asyncio.gather(*futures))
                        futures.clear()
                        bar.update(task, completed=i + 1)
                note(await asyncio.gather(*futures))
            bar.update(task, completed=len(records))
    finally:
        await producer.stop()
    return {p: sorted(found) for p, found in offsets.items()}


async def scale_run(
    settings: Settings,
    records: list[tuple[str, bytes]],
    instances: int,
    *,
    work: Path,
    store_pid: int | None,
    broker_pid: int | None,
    timeout_s: float,
) -> ScaleRun:
    """K recorder processes in one group on a fresh, empty topic; once each holds its
    partitions the records are published in one transaction, and the run is measured from
    its commit (every partition's backlog visible at once, no publisher competing for the
    cores) until the store has them all."""
    bootstrap_servers = settings.kafka_bootstrap
    assert bootstrap_servers is not None
    topic = settings.interactions_topic
    await ensure_topics(settings, bootstrap_servers)
    # Opened before the recorders start: the store's tables exist before they race to make them.
    history = bootstrap(settings).history()
    env = {**os.environ, **settings.to_env()}
    command = [sys.executable, "-m", "services", "serve", "recorder", "--log-level", "WARNING"]
    logs = [work / f"{settings.recorder_group}-{i}.log" for i in range(instances)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="bench-scale")
    await admin.start()
    children: list[subprocess.Popen] = []
    load = os.getloadavg()

    def check_children() -> None:
        for child, path in zip(children, logs, strict=True):
            if child.poll() is not None:
                raise RuntimeError(
                    f"recorder {child.pid} exited ({child.returncode}):\n{_tail(path)}"
                )

    try:
        spawned = time.perf_counter()
        for path in logs:
            # Each its own port for its probes and metrics (one host here, not one pod each).
            own = {**env, "SWITCHBOARD_HTTP_PORT": str(free_port())}
            with path.open("wb") as out:
                children.append(
                    subprocess.Popen(command, env=own, stdout=out, stderr=subprocess.STDOUT)
                )
        while True:  # until the group is stable with every instance holding partitions
            await asyncio.sleep(0.1)
            check_children()
            held = await group_split(admin, settings.recorder_group, topic)
            if held is not None and len(held) == instances and all(held):
                split = sorted(held)
                break
            if time.perf_counter() - spawned > timeout_s:
                raise TimeoutError(f"{instances} recorder(s) not all holding partitions: {held}")
        stable_s = time.perf_counter() - spawned
        publishing = time.perf_counter()
        offsets = await publish_in_one_transaction(settings, records)
        publish_s = time.perf_counter() - publishing
        total = sum(len(found) for found in offsets.values())

        def recorded() -> int:
            """Interactions in the store: those before the Kafka position that each
            partition's events were committed with."""
            return sum(
                bisect.bisect_left(found, history.tracked_offset(topic, p) or 0)
                for p, found in offsets.items()
            )

        start = CpuSnapshot.take(children, store_pid, broker_pid)
        done_at_start = await asyncio.to_thread(recorded)
        with Progress(
            TextColumn(f"{instances} recorder(s)"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
        ) as bar:
            task_id = bar.add_task("", total=total)
            while True:
                await asyncio.sleep(0.1)
                check_children()
                done = await asyncio.to_thread(recorded)
                bar.update(task_id, completed=done)
                if done >= total:
                    end = CpuSnapshot.take(children, store_pid, broker_pid)
                    break
                if time.perf_counter() - start.at > timeout_s:
                    raise TimeoutError(
                        f"{instances} recorder(s): {done} of {total} recorded after {timeout_s} s"
                    )
        held_at_end = await group_split(admin, settings.recorder_group, topic)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        await admin.close()
        history.close()
    warnings = [
        line
        for path in logs
        for line in path.read_text(errors="replace").splitlines()
        if _WARNING_LINE.search(line)
    ]
    return ScaleRun(
        instances=instances,
        split=split,
        n=total - done_at_start,
        start=start,
        end=end,
        total=total,
        publish_s=publish_s,
        recorded_before_commit=done_at_start,
        stable_after_s=stable_s,
        rebalanced=held_at_end is None or sorted(held_at_end) != split,
        load=load,
        warnings=warnings,
        exit_codes=[c.returncode for c in children],
    )


def report_scale(runs: list[ScaleRun], *, store: str, partitions: int) -> None:
    cores = os.cpu_count() or 1
    out = Console(width=None if sys.stdout.isatty() else 160)

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:,.0f}"

    base = next((r for r in runs if r.instances == 1), None)
    table = Table(
        title=f"recorder scale-out: {runs[0].total:,} interactions per run, {partitions} "
        f"partitions, store={store}, {cores} cores"
    )
    for col in (
        "instances",
        "partitions each",
        "interactions/s",
        "per instance",
        "scaling vs 1",
        "recorder CPU ms / 1000",
        "cores per recorder",
        "store CPU ms / 1000",
        "broker CPU ms / 1000",
        "others' load (cores)",
        "/s per core of ours",
        "conflicts",
    ):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(
            str(r.instances),
            "+".join(str(len(held)) for held in r.split),
            f"{r.rate:,.0f}",
            f"{r.rate / r.instances:,.0f}",
            f"{r.rate / base.rate:.2f}x" if base else "—",
            ms(r.ms_per_1000("recorders")),
            f"{(r.cores('recorders') or 0) / r.instances:.2f}",
            ms(r.ms_per_1000("store")),
            ms(r.ms_per_1000("broker")),
            f"{r.others_cores:.2f}",
            f"{r.rate / r.ours_cores:,.0f}",
            str(r.conflicts),
        )
    out.print(table)
    loads = "; ".join(
        f"K={r.instances}: {r.load[0]:.2f} {r.load[1]:.2f} {r.load[2]:.2f}" for r in runs
    )
    print(f"machine: os.cpu_count() = {cores}; load average (1/5/15 min) before each run: {loads}")
    print(
        "interactions/s: each run's recorders first join one group on an empty topic; once "
        "each holds its partitions the interactions are published in one Kafka transaction "
        "(the recorders read committed records only), and the rate is measured from its "
        "commit to the store holding all, polled every 0.1 s (recorded before the commit: "
        + ", ".join(f"K={r.instances}: {r.recorded_before_commit}" for r in runs)
        + "). Group stable after "
        + ", ".join(f"{r.stable_after_s:.1f} s" for r in runs)
        + f"; rebalances during a run: {sum(r.rebalanced for r in runs)}; recorder warnings "
        f"logged: {sum(len(r.warnings) for r in runs)}; recorder exit codes: "
        + ", ".join(str(r.exit_codes) for r in runs)
        + "."
    )
    for r in runs:
        for line in r.warnings[:3]:
            print(f"  K={r.instances} warning: {line[:300]}")
    if not store.startswith(("postgres", "postgresql://")):
        print(
            "note: SQLite has one writer per file, so K recorders serialize on it and its cost is "
            "inside the recorders' CPU; PostgreSQL is the scale-out store (--store postgres)."
        )
    ref = base or max(runs, key=lambda r: r.rate / r.instances)
    per_instance = ref.rate / ref.instances
    rec_ms = ref.ms_per_1000("recorders") or 0.0
    store_ms = ref.ms_per_1000("store")
    broker_ms = ref.ms_per_1000("broker")
    demand = rec_ms + (store_ms or 0.0) + (broker_ms or 0.0)  # ms of CPU per 1000
    best = max(runs, key=lambda r: r.rate)
    busy = (best.end.machine_busy - best.start.machine_busy) / best.seconds
    print(
        f"ceiling: this machine has {cores} cores and the recorders, the store and the broker "
        f"share them: at {demand:,.0f} ms of CPU per 1000 interactions (K={ref.instances}: "
        f"recorder {rec_ms:,.0f} + store {ms(store_ms)} + broker {ms(broker_ms)}) the cores "
        f"allow at most ~{cores * 1e6 / demand:,.0f}/s whatever K; the best run "
        f"(K={best.instances}, {best.rate:,.0f}/s) had {busy:.2f} of {cores} cores busy, "
        f"{best.others_cores:.2f} of them others'. More instances than free cores cannot "
        "scale here: the scaling column measures the cores, not the design."
    )
    print(
        f"per instance: one recorder costs {rec_ms:,.0f} ms of CPU per 1000 interactions "
        f"(a full core: ~{1e6 / rec_ms:,.0f}/s); measured alone it recorded "
        f"{per_instance:,.0f}/s on {(ref.cores('recorders') or 0) / ref.instances:.2f} cores."
    )
    print(
        f"sizing: instances = ceil(target / {per_instance:,.0f}); partitions >= the most "
        "instances you will run (a multiple of it, so they split evenly: 6, 12, 24); "
        "a core per instance"
        + (f", and the store ~{store_ms:,.0f} ms of CPU per 1000 interactions" if store_ms else "")
        + (f", the broker ~{broker_ms:,.0f}" if broker_ms else "")
        + "."
    )
    sizing = Table(
        title=f"sizing: instances at the measured {per_instance:,.0f}/s each, and (upper "
        f"bound) at a full core each, {rec_ms:,.0f} ms per 1000"
    )
    for col in (
        "contacts/s",
        "recorder instances",
        "if a core each",
        "partitions",
        "store cores",
        "broker cores",
    ):
        sizing.add_column(col, justify="right")
    for target in (500, 1_000, 2_000, 5_000, 10_000, 20_000):
        k = math.ceil(target / per_instance)
        sizing.add_row(
            f"{target:,}",
            str(k),
            str(math.ceil(target * rec_ms / 1e6)),
            str(6 * math.ceil(k / 6)),
            "—" if store_ms is None else f"{target * store_ms / 1e6:.1f}",
            "—" if broker_ms is None else f"{target * broker_ms / 1e6:.1f}",
        )
    out.print(sizing)


def drop_cluster(cluster) -> None:
    """Stop the throwaway PostgreSQL cluster and remove its temp dir (data and log, ~250 MB
    and more after a run): left behind, every run leaked it.  Kept if the server did not
    stop (its postmaster.pid remains), so no files are removed under a running server."""
    if not cluster.discard():
        console.print(f"PostgreSQL in {cluster.data_dir} did not stop: left in place")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite | postgres (throwaway local cluster) | postgresql://…",
    )
    parser.add_argument(
        "--partitions", type=int, default=None, help="default 1; 6 with --instances"
    )
    parser.add_argument(
        "--instances",
        default=None,
        help="scale-out mode: recorder process counts to run in turn, e.g. 1,2,3",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds one scale-out run may take"
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=1,
        help="scale-out runs of the first count before the measured ones (default 1)",
    )
    args = parser.parse_args()
    counts = [int(v) for v in args.instances.split(",")] if args.instances else []
    if args.partitions is None:
        args.partitions = 6 if counts else 1

    # SIGTERM too unwinds through the cleanups below (broker, PostgreSQL, temp dirs).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    work = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    cleanups = [lambda: shutil.rmtree(work, ignore_errors=True)]
    broker_pid = None  # the broker's, when the bench starts it
    try:
        bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not bootstrap:
            from deploy.kafka_local import LocalKafka

            kafka = LocalKafka(work_dir=work / "kafka").start()
            cleanups.append(kafka.stop)
            bootstrap = kafka.bootstrap
            broker_pid = kafka.pid

        def store_for(name: str) -> str:
            if args.store == "sqlite":
                return f"sqlite:///{work / name}.db"
            if args.store == "postgres":
                return cluster.create_database()
            return args.store

        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            cluster = start_throwaway_cluster()
            cleanups.append(lambda: drop_cluster(cluster))

        if counts:
            console.print(f"generating {args.n} interactions for {args.customers} customers…")
            records = make_records(args.n, args.customers)
            runs = []
            # A first run warms the broker's JIT and the caches; without it K=1, run first,
            # measured half the rate of the same K=1 run last (broker CPU 108 vs 24 ms/1000).
            for k, warm_up in [(counts[0], True)] * args.warm_up + [(k, False) for k in counts]:
                suffix = uuid.uuid4().hex[:6]
                settings = Settings(
                    data_dir=work / f"scale-{k}-{suffix}",
                    store=store_for(f"scale-{k}-{suffix}"),
                    kafka_bootstrap=bootstrap,
                    interactions_topic=f"bench.interactions.{suffix}",
                    deadletter_topic=f"bench.deadletter.{suffix}",
                    routing_topic=f"bench.routing.{suffix}",
                    presence_topic=f"bench.presence.{suffix}",
                    outbound_topic=f"bench.outbound.{suffix}",
                    recorder_group=f"bench-scale-{suffix}",
                    topic_partitions=args.partitions,
                )
                run = await scale_run(
                    settings,
                    records,
                    k,
                    work=work,
                    store_pid=cluster.pid if args.store == "postgres" else None,
                    broker_pid=broker_pid,
                    timeout_s=args.timeout,
                )
                console.print(
                    f"{k} recorder(s){' (warm-up, not counted)' if warm_up else ''}: "
                    f"{run.rate:,.0f}/s, partitions {run.split}"
                )
                if not warm_up:
                    runs.append(run)
        else:
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
            recorded_s, visible_s, recorder_cpu, timeline_cpu = await pipeline(settings, args.n)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()

    if counts:
        report_scale(runs, store=args.store, partitions=args.partitions)
        return
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
    print(
        f"CPU per interaction in the pipeline: recorder {recorder_cpu / n * 1e6:.0f} µs, "
        f"timeline service {timeline_cpu / n * 1e6:.0f} µs (this machine: 2 cores, shared "
        "with the broker and, on PostgreSQL, the database)"
    )
    target = 10_000 if args.store == "sqlite" else 5_000
    print(
        f"pipeline / raw save = {pipeline_rate / save_rate:.0%} (target >= 50%); "
        f"pipeline = {pipeline_rate:,.0f}/s (target >= {target:,}/s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
