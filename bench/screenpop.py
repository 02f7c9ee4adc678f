"""Screen pop benchmark: voice webhook received -> card on the agent's socket.

The hub's API runs in this process as ``switchboard serve api`` runs it (``run_hub`` with
services=("api",): webhooks, router, routing feed, screen pops; no recorder), on 127.0.0.1 and
a free port, against the real broker. --agents agents (agent01 ...) are available, each with a
WebSocket on /v1/agents/me/stream; one queue serves them all, with room for every call, so a
call goes straight to an agent and what is measured is the pop, not queueing. --customers
callers are recorded through CustomerHistory (with a name, a tier and a language) and applied
to the view before the hub starts: every call comes from a known number, and every pop carries
its card, read from the view on the way.

Two phases, one after the other, at --rate for --duration each (after a one-second warm-up):

- floor: one aiokafka producer (acks=all, idempotent, linger 0, as the hub's publisher) and one
  group-less consumer (fetch_max_wait_ms=20, read_committed, as the routing feed) on a topic of
  as many partitions, in this process; records the size of a real routing decision (674
  bytes), keyed by caller: produce -> consumed, and produce -> acknowledged;
- hub: signed Twilio voice webhooks from one httpx client on an absolute schedule; per call
  t0 = just before the POST, t1 = the pop with its call_id read off an agent's socket (both
  client side). The path is split at the decision's own time (the pop's ``routed_at``) and at
  two moments noted in the hub (``time_the_pops``, a wrapper around ``PopBoard.routed``, wall
  clock): POST -> decided -> read back from Kafka by the routing feed -> pop with its card on
  the agent's stream -> read off the socket.

The load generator (httpx and the 20 WebSockets) runs in a child process, as Twilio and the
consoles are elsewhere: in the hub's process it adds ~4 ms of CPU a call and its objects to the
hub's garbage collections (60 s at 50 calls/s: p99 46 ms inline against 31 in a child).
--inline-client runs it in the hub's loop all the same.

    python bench/screenpop.py                      # 50 calls/s for 60 s, 20 agents
    python bench/screenpop.py --quick              # 10 s
    python bench/screenpop.py --rate 100 --duration 30 --profile /tmp/pop.txt

Kafka: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local broker. Exits 1 when a call did not
pop, popped twice at one agent, or was not answered 200; else 0. It says when the rest of the
machine was busy (over a quarter of a core) or the load generator fell behind: then the figures
are of a loaded machine (with another test suite running here, p99 went from 30 to 50-180 ms).

Measured here (2 cores, quiet), ms, p50 / p99 / max:

    defaults (60 s)                  11.6 / 30.5 / 127   floor 2.9 / 9.4 / 20   p99 3.2x
      POST -> decided                 3.8 /  9.4 / 111
      decided -> Kafka -> the feed    5.0 / 15.8 /  79   floor 2.9 / 9.4 / 20
      feed -> pop on the stream       0.5 /  2.3 /   6
      stream -> read off the socket   1.9 /  7.1 /  16
      webhook answered               10.9 / 27.7 / 121   floor (acked) 2.2 / 7.6 / 15
    --quick                          11.9 / 29.6 /  43   floor 3.9 / 9.3 / 14   p99 3.2x

Where the time goes (py-spy of the hub process over the 60 s): the hub spends 7.6 ms of CPU a
call (37 % of a core at 50 calls/s), the broker 4.6. Of the hub's samples: the webhook ~30 %
(the decision 7 %, of which building the ContactRouted 3 %; the caller's card read from the
view 6 %; FastStream's publish 4 %; the signature 2 %; TwiML 2 %), the Kafka clients ~15 %
(most of it the routing feed's fetches, one every 20 ms even when idle), the routing feed's
handling 7.5 % (the card read a second time for the pop 3 %), the WebSocket send 2 %, idle 18 %.
The p99 is mostly the Kafka leg, 1.7x the raw round trip: the produce request and the fetch
answer are callbacks on a loop that is busy with webhooks a third of the time. The max is the
garbage collector: one gen-2 collection in the minute, 59 ms, walking what the calls left
behind since run_hub's gc.freeze() (each pop with its card, each decision in Router._recent,
the floor's contact; here no call ends, so none of it goes): a full collection takes 3 ms at
the start of a run and 57 ms after 3 000 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect

from bench.webhooks import free_port
from channels.voice.paths import TWILIO_VOICE_PATH
from contracts import (
    AgentPresenceChanged,
    Channel,
    ContactRouted,
    MessageReceived,
    dump_interaction,
)
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.router.board import AgentBoard
from services.router.config import load_routing_config
from services.router.service import Router
from tests.standins.twilio_api import signed_twilio_request

console = Console(stderr=True, soft_wrap=True)

TOKEN = f"bench-token-{uuid.uuid4().hex}"
PUBLIC = "https://hooks.example.com/sb"
HOTLINE = "+18005550100"
ADMIN = "bench-admin"
BATCH = 1000
MAX_CUSTOMERS = 10_000  # +1415555 0000 ... 9999
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
LAST_POPS_S = 10.0  # how long to wait for the last pops after the last call
TARGET_P99_MS = 50.0
TARGET_TEXT = "DESIGN: screen pop p99 <= 50 ms at 50 calls/s (webhook received -> card on socket)"


def caller(i: int) -> str:
    return f"+1415555{i % MAX_CUSTOMERS:04d}"


def agent_name(k: int) -> str:
    return f"agent{k + 1:02d}"


# -- setup ----------------------------------------------------------------------------------------


def routing_yaml(agents: int, capacity: int) -> str:
    """One 24/7 queue, every agent in it with room for every call: no call waits."""
    lines = ["default_queue: support", "queues:", "  support:", "    languages: [en]", "agents:"]
    for k in range(agents):
        lines.append(
            f"  {agent_name(k)}: {{queues: [support], languages: [en], "
            f"capacity: {{voice: {capacity}}}}}"
        )
    return "\n".join(lines) + "\n"


def build_customers(settings: Settings, customers: int) -> None:
    """Each caller's first contact (an SMS) through CustomerHistory, a profile, the view."""
    hub = bootstrap(settings)
    history = hub.history()
    for start in range(0, customers, BATCH):
        history.record_interactions(
            [
                MessageReceived(
                    channel=Channel.sms,
                    party=caller(i),
                    provider_ref=f"SM-screenpop-{i}",
                    occurred_at=EPOCH + timedelta(seconds=i),
                    body="Hello, where is my order?",
                    endpoint=HOTLINE,
                )
                for i in range(start, min(customers, start + BATCH))
            ]
        )
    for i in range(customers):
        customer_id = history.customer_for_address(caller(i))
        assert customer_id is not None
        profile = {"name": f"Customer {i}", "tier": "gold" if i % 10 == 0 else "standard"}
        history.edit_profile(
            customer_id, {**profile, "language": "en"}, by=ADMIN, expected_version=0
        )
    hub.timeline_follower().catch_up()


def make_users(settings: Settings, agents: int) -> dict[str, str]:
    """The admin (without one every /v1 request is refused) and each agent's bearer token."""
    users = bootstrap(settings).user_directory()
    users.register(ADMIN, roles=["admin"])
    tokens = {}
    for k in range(agents):
        users.register(agent_name(k), roles=["agent"])
        tokens[agent_name(k)] = users.issue_token(agent_name(k)).token
    users.close()
    return tokens


def sample_decision(settings: Settings) -> bytes:
    """A routing decision as the hub makes it (known caller, agent free): the floor's size."""
    assert settings.routing_config is not None
    view = bootstrap(settings).timeline_view()
    board = AgentBoard()
    board.presence_changed(
        AgentPresenceChanged(
            agent=agent_name(0), presence="available", occurred_at=datetime.now(UTC), by="bench"
        )
    )
    router = Router(load_routing_config(settings.routing_config), board, view)
    routed = router.route(
        channel="voice",
        party=caller(0),
        contact_ref=f"CA{0:032x}",
        known=router.known(caller(0)),
        dialled=HOTLINE,
    )
    return dump_interaction(routed)


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase saw, per call (or record) index; times in perf_counter seconds."""

    sent: dict[int, float] = field(default_factory=dict)
    sent_wall: dict[int, float] = field(default_factory=dict)
    answered: dict[int, float] = field(default_factory=dict)  # webhook answer / producer ack
    arrived: dict[int, float] = field(default_factory=dict)  # first pop / first consumed
    arrived_wall: dict[int, float] = field(default_factory=dict)
    decided_wall: dict[int, float] = field(default_factory=dict)  # the pop's routed_at
    statuses: Counter = field(default_factory=Counter)
    copies: Counter = field(default_factory=Counter)  # (agent, index) -> pops received
    wrong_agent: int = 0  # popped at an agent other than the decision's target
    queued: int = 0  # routed to the queue rather than to an agent
    without_card: int = 0
    planned: int = 0
    late_max: float = 0.0  # the schedule's worst slip
    cpu: dict[str, float | None] = field(default_factory=dict)  # see cpu_spent
    lag: list[float] = field(default_factory=list)
    everything_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    awaited: set[int] = field(default_factory=set)  # not arrived yet, of those waited for

    _TIMES = ("sent", "sent_wall", "answered", "arrived", "arrived_wall", "decided_wall")
    _COUNTS = ("wrong_agent", "queued", "without_card", "planned", "late_max", "lag", "cpu")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: list(getattr(self, name).items()) for name in self._TIMES}
        out.update({name: getattr(self, name) for name in self._COUNTS})
        out["statuses"] = dict(self.statuses)
        out["copies"] = [[agent, i, n] for (agent, i), n in self.copies.items()]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Phase:
        phase = cls(statuses=Counter(data["statuses"]))
        for name in cls._TIMES:
            setattr(phase, name, {int(i): t for i, t in data[name]})
        for name in cls._COUNTS:
            setattr(phase, name, data[name])
        phase.copies = Counter({(agent, i): n for agent, i, n in data["copies"]})
        return phase

    def arrive(self, i: int) -> None:
        if i not in self.arrived:
            self.arrived[i] = time.perf_counter()
            self.arrived_wall[i] = time.time()
        if i in self.awaited:
            self.awaited.discard(i)
            if not self.awaited:
                self.everything_arrived.set()


async def paced(
    rate: float, seconds: float, first: int, count: int, send: Callable[[int], object]
) -> tuple[list[asyncio.Task], float]:
    """Start ``send(i)`` for i = first ... on an absolute schedule (no drift), until ``count``
    are started or ``seconds`` are over; returns the tasks and the worst slip (s)."""
    tasks: list[asyncio.Task] = []
    late = 0.0
    start = time.perf_counter() + 0.01
    for n in range(count):
        due = start + n / rate
        if due - start >= seconds:
            break
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        late = max(late, time.perf_counter() - due)
        tasks.append(asyncio.create_task(send(first + n)))  # type: ignore[arg-type]
    return tasks, late


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, every thread) a process has used so far; None: unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU time the whole machine has been busy so far (every core; steal counts as busy)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_now(broker_pid: int | None) -> dict[str, float | None]:
    return {
        "wall": time.perf_counter(),
        "own": time.process_time(),
        "broker": cpu_seconds(broker_pid),
        "machine": machine_busy(),
    }


def cpu_spent(since: dict[str, float | None], broker_pid: int | None) -> dict:
    """Seconds of wall clock, and of CPU (this process, the broker, the whole machine)
    since ``since`` (a ``cpu_now``)."""
    spent: dict[str, float | None] = {}
    for key, now in cpu_now(broker_pid).items():
        before = since[key]
        spent[key] = None if now is None or before is None else now - before
    return spent


async def loop_lag(lags: list[float], stop: asyncio.Event, tick: float = 0.01) -> None:
    """How late a 10 ms timer fires: how busy this event loop is."""
    while not stop.is_set():
        at = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(time.perf_counter() - at - tick)


async def wait_arrivals(phase: Phase, indices: range, timeout: float) -> None:
    phase.awaited = {i for i in indices if i not in phase.arrived}
    phase.everything_arrived.clear()
    if not phase.awaited:
        return
    try:
        await asyncio.wait_for(phase.everything_arrived.wait(), timeout)
    except TimeoutError:
        pass


# -- the floor: a raw Kafka round trip ----------------------------------------------------------


async def create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    """Create ``topic`` and wait until every partition has a leader (clients started
    earlier only log errors meanwhile)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (described,) = await admin.describe_topics([topic])
            led = [p for p in described["partitions"] if p["leader"] >= 0]
            if described["error_code"] == 0 and len(led) == partitions:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{topic}: no leader for every partition within 30 s")
    finally:
        await admin.close()


async def floor_phase(
    args: argparse.Namespace, settings: Settings, payload: bytes, broker_pid: int | None
) -> Phase:
    bootstrap_servers = settings.kafka_bootstrap
    topic = f"sb.bench.screenpop-floor.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap_servers, topic, settings.topic_partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=0
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=20,
    )
    phase = Phase()
    stop = asyncio.Event()
    async with producer, consumer:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)

        async def consume() -> None:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                for records in batches.values():
                    for record in records:
                        phase.arrive(int(record.value[:10]))

        async def produce(i: int) -> None:
            value = f"{i:010d}".encode() + payload[10:]
            phase.sent[i] = time.perf_counter()
            await producer.send_and_wait(topic, value, key=caller(i).encode())
            phase.answered[i] = time.perf_counter()

        consuming = asyncio.create_task(consume())
        lagging = asyncio.create_task(loop_lag(phase.lag, stop))
        warm = max(10, round(args.rate))
        tasks, _ = await paced(args.rate, math.inf, 0, warm, produce)
        await asyncio.gather(*tasks)
        await wait_arrivals(phase, range(warm), 15.0)
        if len(phase.arrived) < warm:
            raise RuntimeError(f"the floor consumed {len(phase.arrived)} of {warm} warm-up records")
        phase = _measured_only(phase, warm)
        phase.lag.clear()
        since = cpu_now(broker_pid)
        planned = round(args.rate * args.duration)
        tasks, phase.late_max = await paced(args.rate, args.duration, warm, planned, produce)
        phase.planned = planned
        await asyncio.gather(*tasks)
        await wait_arrivals(phase, range(warm, warm + len(tasks)), LAST_POPS_S)
        phase.cpu = cpu_spent(since, broker_pid)
        stop.set()
        await asyncio.gather(consuming, lagging)
    return phase


def _measured_only(phase: Phase, first: int) -> Phase:
    """Forget the warm-up's figures (the same Phase object keeps its listeners)."""
    for d in (phase.sent, phase.sent_wall, phase.answered, phase.arrived, phase.arrived_wall):
        for i in [i for i in d if i < first]:
            del d[i]
    phase.decided_wall = {i: t for i, t in phase.decided_wall.items() if i >= first}
    phase.copies = Counter({k: n for k, n in phase.copies.items() if k[1] >= first})
    phase.statuses.clear()
    phase.wrong_agent = phase.queued = phase.without_card = 0
    return phase


# -- the hub --------------------------------------------------------------------------------------


def signed_calls(token: str, count: int, customers: int) -> list[tuple[str, dict[str, str]]]:
    """Each call's form body and headers, signed before the run (the client's work, not the
    hub's)."""
    calls = []
    for i in range(count):
        params = {
            "CallSid": f"CA{i:032x}",
            "From": caller(i % customers),
            "To": HOTLINE,
            "Direction": "inbound",
        }
        headers = signed_twilio_request(token, PUBLIC + TWILIO_VOICE_PATH, params)
        calls.append((urlencode(params), headers))
    return calls


async def wait_healthy(client: httpx.AsyncClient, running: asyncio.Task) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if running.done():
            running.result()  # raises what stopped it
            raise RuntimeError("the hub stopped before it answered /healthz")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the hub did not answer /healthz within 60 s")


async def be_available(client: httpx.AsyncClient, token: str) -> None:
    """503 until the hub's producer has connected to Kafka: try again, for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        answer = await client.put(
            "/v1/agents/me/presence",
            json={"presence": "available"},
            headers={"Authorization": f"Bearer {token}"},
        )
        if answer.status_code == 200:
            return
        if answer.status_code != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"presence: {answer.status_code} {answer.text[:200]}")
        await asyncio.sleep(0.2)


async def listen(ws: ClientConnection, agent: str, phase: Phase, index: dict[str, int]) -> None:
    """An agent's console: every pop is timed the moment it is read off the socket."""
    async for raw in ws:
        now, wall = time.perf_counter(), time.time()
        message = json.loads(raw)
        if message.get("kind") != "pop":
            continue  # hello, ping, pop.update, presence
        pop = message["pop"]
        i = index.get(pop["call_id"])
        if i is None:
            continue
        phase.copies[(agent, i)] += 1
        if i not in phase.arrived:
            phase.arrived[i], phase.arrived_wall[i] = now, wall
            phase.decided_wall[i] = datetime.fromisoformat(pop["routed_at"]).timestamp()
            target = pop["target"]
            if target.get("kind") != "agent":
                phase.queued += 1
            elif target.get("agent") != agent:
                phase.wrong_agent += 1
            if pop.get("card") is None:
                phase.without_card += 1
        phase.arrive(i)


async def drive(spec: dict[str, Any], on_measuring: Callable[[], object]) -> Phase:
    """The load generator: the agents become available and connect, then the calls (a
    warm-up that must pop, then the measured ones), then the last pops are waited for."""
    warm, planned = spec["warm"], spec["planned"]
    calls = signed_calls(spec["twilio_token"], warm + planned, spec["customers"])
    index = {f"CA{i:032x}": i for i in range(warm + planned)}
    phase = Phase()
    stop = asyncio.Event()
    base = spec["base"]
    # httpcore scans every pooled connection (and every queued request) on each request:
    # with a hundred connections a stall makes the client slower per call, so it falls
    # further behind. 16 carry 50 calls/s many times over.
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    sockets: list[ClientConnection] = []
    listeners: list[asyncio.Task] = []
    try:
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
            for token in spec["tokens"].values():
                await be_available(client, token)
            for agent, token in spec["tokens"].items():
                ws = await connect(
                    base.replace("http://", "ws://") + "/v1/agents/me/stream",
                    additional_headers={"Authorization": f"Bearer {token}"},
                )
                sockets.append(ws)
                hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if hello.get("kind") != "hello":
                    raise RuntimeError(f"{agent}'s stream began with {hello!r}")
                listeners.append(asyncio.create_task(listen(ws, agent, phase, index)))

            async def post(i: int) -> None:
                body, headers = calls[i]
                phase.sent_wall[i] = time.time()
                phase.sent[i] = time.perf_counter()
                try:
                    answer = await client.post(TWILIO_VOICE_PATH, content=body, headers=headers)
                except httpx.HTTPError as e:
                    phase.statuses[type(e).__name__] += 1
                    return
                phase.answered[i] = time.perf_counter()
                phase.statuses[str(answer.status_code)] += 1

            tasks, _ = await paced(spec["rate"], math.inf, 0, warm, post)
            await asyncio.gather(*tasks)
            await wait_arrivals(phase, range(warm), 15.0)
            if len(phase.arrived) < warm:
                raise RuntimeError(
                    f"only {len(phase.arrived)} of {warm} warm-up calls popped "
                    f"(answers: {dict(phase.statuses)}): is the routing feed reading?"
                )
            phase = _measured_only(phase, warm)
            on_measuring()
            since = cpu_now(None)
            lagging = asyncio.create_task(loop_lag(phase.lag, stop))
            tasks, phase.late_max = await paced(spec["rate"], spec["duration"], warm, planned, post)
            phase.planned = planned
            await asyncio.gather(*tasks)
            await wait_arrivals(phase, range(warm, warm + len(tasks)), LAST_POPS_S)
            phase.cpu = cpu_spent(since, None)
            stop.set()
            await lagging
    finally:
        stop.set()
        for task in listeners:
            task.cancel()
        for ws in sockets:
            await ws.close()
    return phase


def client_main() -> None:
    """(internal) The load generator in its own process: the spec on stdin, a line when the
    measured calls begin, then what it saw, as JSON lines on stdout."""
    spec = json.loads(sys.stdin.read())

    def measuring() -> None:
        print(json.dumps({"measuring": True}), flush=True)

    phase = asyncio.run(drive(spec, measuring))
    print(json.dumps({"phase": phase.to_json()}), flush=True)


@dataclass
class HubSide:
    """What the hub's process saw while the measured calls ran (wall clock per call index)."""

    lag: list[float] = field(default_factory=list)
    cpu: dict = field(default_factory=dict)  # see cpu_spent
    fed: dict[int, float] = field(default_factory=dict)  # the feed hands the decision over
    queued: dict[int, float] = field(default_factory=dict)  # the pop waits for the socket
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)  # (generation, s)


class GcPauses:
    """Times the cyclic collector's pauses in this process while installed."""

    def __init__(self, pauses: list[tuple[int, float]]) -> None:
        self.pauses = pauses
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def install(self) -> None:
        gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def time_the_pops(hub: Hub, side: HubSide) -> None:
    """Note when the routing feed hands each decision to the pop board, and when the pop,
    its card read, waits on the agent's stream.  The hub builds its routing once and keeps
    it (``Hub.routing``): built here first, the feed takes this handler in place of
    ``PopBoard.routed``, which it calls unchanged."""
    routing = hub.routing(hub.timeline_view())
    board_routed = routing.pops.routed

    async def routed(event: ContactRouted) -> None:
        fed = time.time()
        await board_routed(event)
        if event.contact_ref.startswith("CA"):
            i = int(event.contact_ref[2:], 16)
            side.fed.setdefault(i, fed)
            side.queued.setdefault(i, time.time())

    routing.pops.routed = routed  # type: ignore[method-assign]


async def hub_phase(
    args: argparse.Namespace,
    settings: Settings,
    tokens: dict[str, str],
    customers: int,
    broker_pid: int | None,
) -> tuple[Phase, HubSide]:
    """The hub (its API, as ``switchboard serve api``) in this event loop; the load generator
    in a child process, or inline with --inline-client.  Returns what the client saw, and
    what the hub's process saw while the measured calls ran."""
    warm = max(10, round(args.rate))
    spec = {
        "base": f"http://127.0.0.1:{settings.http_port}",
        "tokens": tokens,
        "twilio_token": TOKEN,
        "rate": args.rate,
        "duration": args.duration,
        "warm": warm,
        "planned": round(args.rate * args.duration),
        "customers": customers,
    }
    stop = asyncio.Event()
    hub = bootstrap(settings)
    side = HubSide()
    time_the_pops(hub, side)
    running = asyncio.create_task(run_hub(hub, stop, services=("api",)))
    monitors: list[asyncio.Task] = []
    profiler: subprocess.Popen | None = None
    since = cpu_now(broker_pid)

    collections = GcPauses(side.gc_pauses)

    def measuring() -> None:
        nonlocal profiler, since
        since = cpu_now(broker_pid)
        collections.install()
        monitors.append(asyncio.create_task(loop_lag(side.lag, stop)))
        if args.profile:
            profiler = start_profiler(args.profile, args.duration)

    child = None
    try:
        async with httpx.AsyncClient(base_url=spec["base"]) as client:
            await wait_healthy(client, running)
        if args.inline_client:
            phase = await drive(spec, measuring)
        else:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "client",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=256 * 1024 * 1024,  # what it saw comes as one line
            )
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(spec).encode())
            child.stdin.close()
            phase = None
            async for line in child.stdout:
                said = json.loads(line)
                if said.get("measuring"):
                    measuring()
                elif "phase" in said:
                    phase = Phase.from_json(said["phase"])
            if await child.wait() != 0 or phase is None:
                raise RuntimeError(f"the load generator failed (exit {child.returncode})")
            child = None
        side.cpu = cpu_spent(since, broker_pid)
        collections.remove()
        if profiler is not None:
            await asyncio.to_thread(profiler.wait, args.duration + 30)
    finally:
        collections.remove()
        stop.set()
        if child is not None and child.returncode is None:
            child.terminate()
            await child.wait()
        await asyncio.gather(*monitors)
        await asyncio.wait_for(running, 60)
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
            profiler.wait()
    return phase, side


def start_profiler(output: Path, seconds: float) -> subprocess.Popen:
    """py-spy of this process (the hub, the feed and the client share it) while it runs."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(os.getpid()),
            "--duration",
            str(max(1, int(seconds))),
            "--format",
            "raw" if output.suffix == ".txt" else "speedscope",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- the run --------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="sb-bench-screenpop-"))
    kafka = None
    try:
        kafka_bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not kafka_bootstrap:
            from deploy.kafka_local import LocalKafka

            console.print("starting the local Kafka broker ...")
            kafka = LocalKafka(work_dir=work / "kafka").start()
            kafka_bootstrap = kafka.bootstrap
        warm = max(10, round(args.rate))
        total = warm + round(args.rate * args.duration)
        customers = args.customers or min(total, MAX_CUSTOMERS)
        routing = work / "routing.yaml"
        routing.write_text(routing_yaml(args.agents, max(1000, math.ceil(total / args.agents))))
        suffix = uuid.uuid4().hex[:8]
        settings = Settings(
            data_dir=work,
            store=f"sqlite:///{work / 'history.db'}",
            kafka_bootstrap=kafka_bootstrap,
            interactions_topic=f"sb.bench.interactions.{suffix}",
            deadletter_topic=f"sb.bench.deadletter.{suffix}",
            outbound_topic=f"sb.bench.outbound.{suffix}",
            routing_topic=f"sb.bench.routing.{suffix}",
            presence_topic=f"sb.bench.presence.{suffix}",
            recorder_group=f"sb-bench-recorder-{suffix}",
            outbound_group=f"sb-bench-outbound-{suffix}",
            routing_config=routing,
            twilio_auth_token=SecretStr(TOKEN),
            public_base_url=PUBLIC,
            http_port=free_port(),
        )
        started = time.perf_counter()
        build_customers(settings, customers)
        tokens = make_users(settings, args.agents)
        payload = sample_decision(settings)
        console.print(
            f"setup: {customers:,} customers with cards, {args.agents} agents, "
            f"in {time.perf_counter() - started:.1f}s; a routing decision is {len(payload)} bytes"
        )
        asyncio.run(ensure_topics(settings, kafka_bootstrap))
        console.print(f"floor: raw produce -> consume, {args.rate:g}/s for {args.duration:g}s ...")
        broker_pid = kafka.pid if kafka is not None else None
        floor = asyncio.run(floor_phase(args, settings, payload, broker_pid))
        console.print(
            f"hub: {args.rate:g} calls/s for {args.duration:g}s, {args.agents} agents on "
            "WebSockets ..."
        )
        hub, side = asyncio.run(hub_phase(args, settings, tokens, customers, broker_pid))
        return report(args, hub, side, floor, len(payload))
    finally:
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(work, ignore_errors=True)


def percentiles(values: list[float]) -> tuple[float, float, float] | None:
    """p50, p99, max in ms (nearest rank), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    return (
        ordered[min(n - 1, int(n * 0.50))] * 1000,
        ordered[min(n - 1, int(n * 0.99))] * 1000,
        ordered[-1] * 1000,
    )


def spans(start: dict[int, float], end: dict[int, float], of: dict[int, float]) -> list[float]:
    """end - start of each call (record) in ``of`` that has both."""
    return [end[i] - start[i] for i in of if i in start and i in end]


def report(args: argparse.Namespace, hub: Phase, side: HubSide, floor: Phase, size: int) -> int:
    def per_call(start: dict[int, float], end: dict[int, float]) -> list[float]:
        return spans(start, end, hub.sent)

    round_trip = spans(floor.sent, floor.arrived, floor.sent)
    acked = spans(floor.sent, floor.answered, floor.sent)
    pops = per_call(hub.sent, hub.arrived)
    rows = [
        ("screen pop: POST -> card on socket", pops, "produce -> consumed", round_trip),
        ("  POST -> decided (routed_at)", per_call(hub.sent_wall, hub.decided_wall), "", None),
        (
            "  decided -> through Kafka to the feed",
            per_call(hub.decided_wall, side.fed),
            "produce -> consumed",
            round_trip,
        ),
        ("  feed -> pop on the stream (card)", per_call(side.fed, side.queued), "", None),
        ("  stream -> read off the socket", per_call(side.queued, hub.arrived_wall), "", None),
        ("webhook answered", per_call(hub.sent, hub.answered), "produce -> acked", acked),
        ("event-loop lag, hub (10 ms timer)", side.lag, "same, floor phase", floor.lag),
    ]
    if not args.inline_client:
        rows.append(("event-loop lag, load generator", hub.lag, "", None))
    where = "in the hub's event loop" if args.inline_client else "in a child process"
    table = Table(
        title=f"screen pop at {args.rate:g} calls/s for {args.duration:g}s, {args.agents} agents "
        f"on WebSockets; the load generator {where}; this machine (ms)"
    )
    for column in ("what", "count", "p50", "p99", "max", "floor", "count", "p50", "p99", "max"):
        table.add_column(column, justify="left" if column in ("what", "floor") else "right")
    table.add_column("p99 / floor p99", justify="right")
    for what, values, floor_what, floor_values in rows:
        ours = percentiles(values)
        theirs = percentiles(floor_values) if floor_values is not None else None
        cells = [what, f"{len(values):,}", *(f"{v:.1f}" for v in ours or (0, 0, 0))]
        if theirs is None:
            cells += ["", "", "", "", "", ""]
        else:
            assert floor_values is not None
            cells += [floor_what, f"{len(floor_values):,}", *(f"{v:.1f}" for v in theirs)]
            cells.append(f"{ours[1] / theirs[1]:.2f}" if ours and theirs[1] else "")
        table.add_row(*cells)
    Console(width=150).print(table)

    sent = len(hub.sent)
    not_popped = sum(1 for i in hub.sent if i not in hub.arrived)
    twice = sum(1 for (_, i), n in hub.copies.items() if n > 1 and i in hub.sent)
    not_200 = {k: n for k, n in hub.statuses.items() if k != "200"}
    floor_lost = sum(1 for i in floor.sent if i not in floor.arrived)
    print(
        f"calls: {sent:,} sent of {hub.planned:,} scheduled (worst slip of the schedule "
        f"{hub.late_max * 1000:.1f} ms); answers {dict(hub.statuses)}; popped {sent - not_popped:,}"
        f", not popped {not_popped}, popped twice at one agent {twice}; popped at another agent "
        f"than the decision's {hub.wrong_agent}, routed to the queue {hub.queued}, "
        f"without a card {hub.without_card}"
    )
    print(
        f"floor: {len(floor.sent):,} records of {size} bytes sent of {floor.planned:,} scheduled "
        f"(worst slip {floor.late_max * 1000:.1f} ms), {floor_lost} not consumed within "
        f"{LAST_POPS_S:g}s"
    )
    client_cpu = None if args.inline_client else hub.cpu
    print(cpu_line(side.cpu, client_cpu, floor.cpu, sent, len(floor.sent)))
    print(gc_line(side.gc_pauses))
    busy = [others(side.cpu, client_cpu), others(floor.cpu, None)]
    print(
        f"the rest of the machine ({os.cpu_count()} cores) used {busy[0]:.2f} cores during the "
        f"calls, {busy[1]:.2f} during the floor"
        + ("" if kafka_known(side.cpu) else " (the broker's CPU included: not started here)")
    )
    if max(busy) > 0.25 or hub.late_max > 0.1:
        console.print(
            "[bold yellow]the machine was not quiet (other processes, or the load generator "
            "fell behind its schedule): the figures above are of a loaded machine[/bold yellow]"
        )
    print(TARGET_TEXT)
    pop = percentiles(pops)
    checks = [
        (f"screen pop p99 <= {TARGET_P99_MS:g} ms", pop is not None and pop[1] <= TARGET_P99_MS),
        ("every call popped", sent > 0 and not_popped == 0),
        ("no call popped twice at one agent", twice == 0),
        ("every webhook answered 200", not not_200),
        ("every pop carries a card", hub.without_card == 0),
        ("the floor consumed every record", floor_lost == 0),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if not_popped or twice or not_200:
        console.print(
            f"[bold red]!!! {not_popped} call(s) did not pop, {twice} popped twice, "
            f"answers other than 200: {not_200 or 'none'} !!![/bold red]"
        )
        return 1
    return 0


def gc_line(pauses: list[tuple[int, float]]) -> str:
    """The hub's garbage collections during the calls, per generation: count, max, total."""
    parts = []
    for generation in (0, 1, 2):
        times = [t for g, t in pauses if g == generation]
        if times:
            parts.append(
                f"gen {generation}: {len(times)}, max {max(times) * 1000:.1f} ms, "
                f"total {sum(times) * 1000:.0f} ms"
            )
    return f"GC pauses in the hub during the calls: {'; '.join(parts) or 'none'}"


def kafka_known(spent: dict) -> bool:
    return spent.get("broker") is not None


def others(spent: dict, client: dict | None) -> float:
    """Cores the machine spent on other processes than the hub, its client and the broker."""
    ours = (spent["own"] or 0) + (spent["broker"] or 0) + ((client or {}).get("own") or 0)
    return max(0.0, ((spent["machine"] or 0) - ours) / max(spent["wall"] or 0, 1e-9))


def cpu_line(hub: dict, client: dict | None, floor: dict, calls: int, records: int) -> str:
    """CPU per call (ms) and as a share of one core, over each measured window; ``client``
    None: the load generator ran in the hub's process."""

    def part(name: str, spent: dict | None, key: str, count: int = calls) -> str:
        if spent is None or spent.get(key) is None:
            return f"{name} n/a"
        seconds = spent[key]
        return (
            f"{name} {seconds * 1000 / max(count, 1):.2f} ms "
            f"({seconds / max(spent['wall'], 1e-9):.0%} of a core)"
        )

    hub_name = "hub process" if client is not None else "hub + client (one process)"
    parts = [part(hub_name, hub, "own")]
    if client is not None:
        parts.append(part("load generator", client, "own"))
    parts.append(part("broker", hub, "broker"))
    floor_parts = [
        part("bench process", floor, "own", records),
        part("broker", floor, "broker", records),
    ]
    return f"CPU per call: {', '.join(parts)}; per floor record: {', '.join(floor_parts)}"


def bounded(kind: type, low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    parse.__name__ = kind.__name__  # argparse says "invalid float value: 'abc'"
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Kafka: SWITCHBOARD_KAFKA_BOOTSTRAP, or the local broker is started.",
    )
    parser.add_argument(
        "--rate", type=bounded(float, 1, 1000), default=50.0, help="calls/s (default 50)"
    )
    parser.add_argument(
        "--duration",
        type=bounded(float, 1, 600),
        default=60.0,
        help="seconds of calls, and of the floor (default 60)",
    )
    parser.add_argument("--quick", action="store_true", help="--duration 10")
    parser.add_argument(
        "--agents", type=bounded(int, 1, 99), default=20, help="agents on WebSockets (20)"
    )
    parser.add_argument(
        "--customers",
        type=bounded(int, 1, MAX_CUSTOMERS),
        help="known callers (default: one per call, at most 10 000; callers repeat beyond)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy profile of this process during the measured calls: collapsed stacks if "
        "*.txt, else speedscope",
    )
    parser.add_argument(
        "--inline-client",
        action="store_true",
        help="run the load generator (httpx, the agents' WebSockets) in the hub's event loop "
        "instead of a child process: it then delays the hub it measures",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("client", help="(internal) the load generator, its spec on stdin")
    args = parser.parse_args()
    if args.command == "client":
        client_main()
        return
    if args.quick:
        args.duration = 10.0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(bench(args))
    except KeyboardInterrupt:
        print("interrupted: the hub and the broker were stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
