"""The campaign runner: every planned send becomes exactly one committed outbound command.

Exactly once *on the topic*, through a kill at any moment, by Kafka transactions: each
transaction carries a batch of ``SendMessage`` commands (sb.outbound.v1, keyed by customer)
and the campaign's progress record (how many of each channel's sends are produced), so the
two are committed together or not at all.  The transactional id is stable per campaign: a
restarted runner's producer fences the killed one and completes its open transaction (an
abort, unless it was already committing) before the new runner reads where to continue.
Consumers of the outbound topic read ``read_committed``, so an aborted command is never seen.

Order and lanes: the plan is sorted by ``not_before`` (then customer), and is split by channel
into lanes, each continued from its own position; so a slow SMS rate does not hold e-mails
back, and a send that is not due yet waits, with every send after it in its lane.

Control: the campaign's state is asked at least every ``poll_seconds`` (and between
transactions): *paused* commits what is produced and waits, *cancelled* commits and stops.
The channels' rate limits are read with it (when the control has them), so a limit changed
while the campaign runs holds from the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Literal
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced

from contracts import dump_command
from contracts.errors import Conflict, InputError
from contracts.topics import CAMPAIGN_PROGRESS_TOPIC, OUTBOUND_TOPIC
from services import metrics
from services.campaigns.limits import RateLimits, Throttle
from services.campaigns.progress import CampaignProgress, read_progress
from services.campaigns.recipients import CampaignControl, CampaignState, PlannedSend, send_id

log = logging.getLogger(__name__)

Outcome = Literal["done", "cancelled", "stopped"]
ProgressCallback = Callable[[int, int], None]

# Control states in which the runner waits rather than produces.
_WAITING = frozenset({"paused", "draft", "scheduled"})


class PlanError(InputError):
    """The plan cannot be run as it is (another campaign's send, a wrong order, a command id
    that is not the send's id); the reason says which send and what to fix."""


class RunnerFenced(Conflict):
    """Another runner of the same campaign started and took over; this one must stop."""


@dataclass(frozen=True)
class RunnerKafka:
    """Where and how the runner produces.  A transaction closes after ``batch_size`` commands
    or ``batch_seconds``, whichever comes first.  ``transaction_timeout_ms`` bounds how long a
    runner that died without a successor holds back read_committed readers of the outbound
    topic (the broker aborts its open transaction then)."""

    bootstrap: str
    outbound_topic: str = OUTBOUND_TOPIC
    progress_topic: str = CAMPAIGN_PROGRESS_TOPIC
    batch_size: int = 500
    batch_seconds: float = 0.1
    transaction_timeout_ms: int = 10_000
    max_batch_bytes: int = 512 * 1024


@dataclass(frozen=True)
class RunSummary:
    campaign_id: UUID
    outcome: Outcome
    produced: int  # by every run of this campaign together
    total: int
    produced_by_this_run: int
    transactions: int
    seconds: float


async def nap(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, woken early by ``stop`` or ``wake`` (which is cleared after): how the
    runner, the fallback follower and the campaigns service wait between polls."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    wake.clear()


async def acknowledged(written: list[asyncio.Future]) -> None:
    """Wait for every record of a transaction to be acknowledged; the first failure is raised,
    so the transaction aborts rather than commits without it."""
    for result in await asyncio.gather(*written, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


class _Lane:
    """One channel's sends, in plan order, from where the last committed run left off."""

    def __init__(self, channel: str, sends: Iterator[PlannedSend], total: int, done: int) -> None:
        self.channel = channel
        self.total = total
        self._sends = islice(sends, done, None)
        self.head: PlannedSend | None = None
        self.advance()

    def advance(self) -> None:
        self.head = next(self._sends, None)


class CampaignRunner:
    def __init__(
        self,
        campaign_id: UUID,
        plan: Iterable[PlannedSend],
        *,
        control: CampaignControl,
        limits: RateLimits,
        kafka: RunnerKafka,
        on_progress: ProgressCallback | None = None,
        poll_seconds: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``plan``: re-iterable (a list, a ``PlanFile``), in the same order every time, sorted
        by ``not_before``.  ``on_progress(produced, total)`` is called after every commit."""
        if kafka.batch_size < 1 or kafka.batch_seconds <= 0:
            raise ValueError("batch_size and batch_seconds must be positive")
        self.campaign_id = campaign_id
        self.plan = plan
        self.control = control
        self.limits = limits
        self.kafka = kafka
        self.on_progress = on_progress
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._now = now
        self._wake = asyncio.Event()

    @property
    def transactional_id(self) -> str:
        return f"campaign-{self.campaign_id}"

    def nudge(self) -> None:
        """Look at the campaign's state now (its state changed), not at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> RunSummary:
        """Produce the rest of the campaign; returns when it is done or cancelled, or when
        ``stop`` is set (what was produced is committed)."""
        stop = stop or asyncio.Event()
        started = self._clock()
        totals = await asyncio.to_thread(self._check_plan)
        log.info("campaign %s: plan of %s checked", self.campaign_id, totals)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap,
            client_id=f"switchboard-{self.transactional_id}",
            transactional_id=self.transactional_id,
            transaction_timeout_ms=self.kafka.transaction_timeout_ms,
            max_batch_size=self.kafka.max_batch_bytes,
            linger_ms=5,
        )
        await producer.start()
        try:
            return await self._run(producer, totals, stop, started)
        except ProducerFenced:
            raise RunnerFenced(
                f"another runner of campaign {self.campaign_id} took over; this one stopped"
            ) from None
        finally:
            await producer.stop()

    async def _run(
        self,
        producer: AIOKafkaProducer,
        totals: dict[str, int],
        stop: asyncio.Event,
        started: float,
    ) -> RunSummary:
        # An empty transaction waits for the producer id: our predecessor is fenced and its
        # last transaction completed, so every progress record it committed is readable.
        async with producer.transaction():
            pass
        log.info("campaign %s: fenced any earlier runner", self.campaign_id)
        previous = await read_progress(
            self.kafka.bootstrap, self.kafka.progress_topic, self.campaign_id
        )
        total = sum(totals.values())
        log.info(
            "campaign %s: %d of %d sends produced before",
            self.campaign_id,
            previous.produced if previous else 0,
            total,
        )
        progress = CampaignProgress(self.campaign_id, total, {c: 0 for c in totals})
        if previous is not None:
            changed = [c for c, n in previous.lanes.items() if n > totals.get(c, 0)]
            if previous.total != total or changed:
                raise PlanError(
                    f"campaign {self.campaign_id} was started with a plan of {previous.total} "
                    f"sends ({previous.lanes} produced) and is now given {total} ({totals}): "
                    "a started campaign's plan must not change"
                )
            progress.lanes.update(previous.lanes)
            if previous.state in ("done", "cancelled"):
                log.info("campaign %s was already %s", self.campaign_id, previous.state)
                return self._summary(previous.state, progress, 0, 0, started)
        lanes = [_Lane(c, self._sends_by(c), n, progress.lanes[c]) for c, n in totals.items()]
        throttle = self.limits.buckets(self._clock())
        produced_now = transactions = 0
        reported_state = previous.state if previous else None
        self._report(progress)
        while True:
            state = await asyncio.to_thread(self._control, throttle)
            if stop.is_set():
                return self._summary("stopped", progress, produced_now, transactions, started)
            if all(lane.head is None for lane in lanes):
                progress.state = "done"
            elif state == "cancelled":
                progress.state = "cancelled"
            elif state in _WAITING:
                progress.state = "paused"
            elif state != "running":
                log.warning("campaign %s is %s with sends left; stopping", self.campaign_id, state)
                return self._summary("stopped", progress, produced_now, transactions, started)
            else:
                progress.state = "running"

            if progress.state == "running":
                produced, wait = await self._produce_batch(producer, lanes, progress, throttle)
                if produced:
                    produced_now += produced
                    transactions += 1
                    reported_state = progress.state
                    self._report(progress)
                    continue  # ask for the state again between transactions
                await self._sleep(stop, min(wait, self.poll_seconds))
                continue

            if progress.state != reported_state:  # paused, cancelled or done: say so, once
                async with producer.transaction():
                    await producer.send(
                        self.kafka.progress_topic, progress.dump(), key=progress.key()
                    )
                transactions += 1
                reported_state = progress.state
                self._report(progress)
            if progress.state in ("done", "cancelled"):
                return self._summary(progress.state, progress, produced_now, transactions, started)
            await self._sleep(stop, self.poll_seconds)  # paused

    def _control(self, throttle: Throttle) -> CampaignState:
        """The campaign's state; and its channels' rate limits, when the control knows them
        (``CampaignStore.state_and_rates``): a limit changed while it runs is followed."""
        both = getattr(self.control, "state_and_rates", None)
        if both is None:
            return self.control.state(self.campaign_id)
        state, rates = both(self.campaign_id)
        if throttle.follow(rates, self._clock()):
            log.info("campaign %s: rate limits now %s per second", self.campaign_id, rates)
        return state

    async def _produce_batch(
        self,
        producer: AIOKafkaProducer,
        lanes: list[_Lane],
        progress: CampaignProgress,
        throttle: Throttle,
    ) -> tuple[int, float]:
        """One transaction of what is due and allowed; returns how many, and (when none) how
        long until the next may be."""
        kafka = self.kafka
        count = 0
        wait = self.poll_seconds
        deadline = self._clock() + kafka.batch_seconds
        written: list[asyncio.Future] = []
        by_channel: dict[str, int] = {}
        async with producer.transaction():
            while count < kafka.batch_size:
                lane, wait = self._next_ready(lanes, throttle)
                if lane is None:
                    break
                send = lane.head
                assert send is not None
                throttle.take(lane.channel, self._clock())
                written.append(
                    await producer.send(
                        kafka.outbound_topic,
                        dump_command(send.command),
                        key=str(send.customer_id).encode(),
                    )
                )
                progress.lanes[lane.channel] += 1
                by_channel[lane.channel] = by_channel.get(lane.channel, 0) + 1
                lane.advance()
                count += 1
                if self._clock() >= deadline:
                    break
            if count:
                if all(lane.head is None for lane in lanes):
                    progress.state = "done"
                written.append(
                    await producer.send(kafka.progress_topic, progress.dump(), key=progress.key())
                )
                await acknowledged(written)  # before the commit; a failure aborts the batch
        for channel, n in by_channel.items():  # committed
            metrics.CAMPAIGN_COMMANDS.labels(channel, "first").inc(n)
        return count, wait

    def _next_ready(self, lanes: list[_Lane], throttle: Throttle) -> tuple[_Lane | None, float]:
        """The lane whose next send is due and allowed and comes first in the plan; else None
        and the seconds until one may be."""
        now = self._now()
        mono = self._clock()
        best: _Lane | None = None
        wait = float("inf")
        for lane in lanes:
            send = lane.head
            if send is None:
                continue
            due_in = (send.not_before - now).total_seconds()
            lane_wait = max(due_in, throttle.wait(lane.channel, mono))
            if lane_wait <= 0:
                if best is None or _plan_key(send) < _plan_key(best.head):  # type: ignore[arg-type]
                    best = lane
            else:
                wait = min(wait, lane_wait)
        return best, (0.0 if best is not None else wait)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep, woken early by ``stop`` or ``nudge``."""
        await nap(stop, self._wake, seconds)

    def _report(self, progress: CampaignProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress.produced, progress.total)

    def _summary(
        self,
        outcome: Outcome,
        progress: CampaignProgress,
        produced_now: int,
        transactions: int,
        started: float,
    ) -> RunSummary:
        return RunSummary(
            campaign_id=self.campaign_id,
            outcome=outcome,
            produced=progress.produced,
            total=progress.total,
            produced_by_this_run=produced_now,
            transactions=transactions,
            seconds=self._clock() - started,
        )

    def _sends_by(self, channel: str) -> Iterator[PlannedSend]:
        return (send for send in self.plan if send.channel == channel)

    def _check_plan(self) -> dict[str, int]:
        """Sends per channel, in first-seen order; refuses a plan that could not be resumed
        safely (a restart continues by position, so order and ids must be what we think)."""
        totals: dict[str, int] = {}
        seen: set[str] = set()
        last: datetime | None = None
        for position, send in enumerate(self.plan):
            where = f"plan position {position} (customer {send.customer_id}, step {send.step})"
            if send.campaign_id != self.campaign_id:
                raise PlanError(f"{where} belongs to campaign {send.campaign_id}")
            if send.command.command_id != send_id(send.campaign_id, send.customer_id, send.step):
                raise PlanError(f"{where}: its command id is not send_id(campaign, customer, step)")
            if send.command.command_id in seen:
                raise PlanError(f"{where} is planned twice")
            if last is not None and send.not_before < last:
                raise PlanError(f"{where} is due before the send ahead of it: sort by not_before")
            if str(send.command.channel) != send.channel:
                raise PlanError(f"{where}: its command goes by {send.command.channel}")
            seen.add(send.command.command_id)
            last = send.not_before
            totals[send.channel] = totals.get(send.channel, 0) + 1
        return totals


def _plan_key(send: PlannedSend) -> tuple[datetime, str, int]:
    return (send.not_before, str(send.customer_id), send.step)


__all__ = [
    "CampaignRunner",
    "PlanError",
    "RunSummary",
    "RunnerFenced",
    "RunnerKafka",
]
