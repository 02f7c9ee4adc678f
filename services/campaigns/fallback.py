"""The fallback follower: after a campaign send failed for good, the recipient's next channel.

One follower per started campaign that allows fallback (``Campaign.fallback_allowed``, more
than one channel), run by the hub's campaigns service beside the campaign's runner.  It
follows the outbound ledger's notification log (its ``Failed`` events only) from the
position it committed, and for each *hard* failure (``HARD_FAILURES``: the provider
rejected the message, the retries were used up, or no sender exists for the channel) of
one of this campaign's sends asks the planner for the next send
(``CampaignPlanner.fallback``: step + 1 on the next channel of the recipient's route, kept
with the plan).  A refusal of our own policy (consent withdrawn, a messaging window) is
no hard failure: an opt-out stops the campaign for that person.  A fallback's failure is
followed like the first send's, so step 2 follows step 1.

Exactly once on the topic, through a kill at any moment: the fallback commands go to the
outbound topic in a Kafka transaction together with the follower's progress record (key
``<campaign>:fallback`` on the progress topic: the ledger position consumed up to, and the
failures whose fallback is not produced yet), under a transactional id of its own
(``campaign-<id>-fallback``), so it is fenced apart from the campaign's runner.  The command
id is ``send_id(campaign, customer, step)``: the dispatcher's ledger sends it once even if
someone produced it twice.  The next send's time is the failure's time moved to the
recipient's allowed hours (``quiet_hours``), so it is the same after a restart.

The dispatcher does not look at a time on a command, so a fallback not due yet (the
failure came in the recipient's quiet hours) is *held*: kept in the progress record and
produced when due, while the follower goes on reading failures — up to ``max_held`` (5 000)
held at once, which keeps the record well below Kafka's 1 MB; beyond that it reads on only
as held ones go out.  Paused: nothing is read
or produced.  Cancelled: the follower stops, holding nothing.  Each channel's rate limit
holds the follower's own sends (together with the runner's, a channel may get up to twice
its rate while both produce).

When it stops: at the end of the campaign's schedule window (no fallback may be sent after
it: the planner refuses one), once every held fallback is produced; or earlier, once the
campaign is completed and *settled*: each recipient with channels left has a sent message,
a failure after which no fallback is possible, or a refusal (checked every
``settle_seconds`` from the ledger).  Either is recorded, so a restarted hub does not follow
the campaign again.  A delivery report of a failure that comes after the send was accepted
(an SMS ``undelivered``, a bounce) is not followed: only what the dispatcher records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced

from contracts import dump_command
from services import metrics
from services.campaigns.campaign import Campaign
from services.campaigns.limits import RateLimits, Throttle
from services.campaigns.plan import CampaignPlanner
from services.campaigns.progress import ProgressUnreadable, read_last
from services.campaigns.recipients import CampaignControl, PlannedSend, send_id
from services.campaigns.runner import RunnerFenced, RunnerKafka, acknowledged, nap
from services.domain.outbound import HARD_FAILURES, OutboundCommand, command_aggregate_id
from services.history.ledger import CommandOutcome, OutboundLedger

log = logging.getLogger(__name__)

__all__ = ["Failure", "FallbackFollower", "FallbackIndex", "FallbackProgress", "FallbackSummary"]

FollowState = Literal["following", "settled", "ended", "cancelled"]
Outcome = Literal["settled", "ended", "cancelled", "stopped"]
_WAITING = frozenset({"paused", "draft", "scheduled"})


@dataclass(frozen=True, slots=True)
class Failure:
    """A hard failure of one of the campaign's sends, as the ledger recorded it."""

    command_id: str
    channel: str
    at: datetime


@dataclass
class FallbackProgress:
    """The follower's committed state: the ledger position read up to, the failures read
    whose fallback is not on the topic yet, how many fallbacks it produced."""

    campaign_id: UUID
    position: int = 0
    produced: int = 0
    waiting: list[Failure] = field(default_factory=list)
    state: FollowState = "following"

    @staticmethod
    def key_of(campaign_id: UUID) -> bytes:
        return f"{campaign_id}:fallback".encode()

    def dump(self) -> bytes:
        return json.dumps(
            {
                "campaign_id": str(self.campaign_id),
                "position": self.position,
                "produced": self.produced,
                "waiting": [[f.command_id, f.channel, f.at.isoformat()] for f in self.waiting],
                "state": self.state,
                "at": time.time(),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> FallbackProgress:
        try:
            data = json.loads(raw)
            waiting = [Failure(c, ch, datetime.fromisoformat(at)) for c, ch, at in data["waiting"]]
            return cls(
                UUID(data["campaign_id"]),
                int(data["position"]),
                int(data["produced"]),
                waiting,
                data["state"],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ProgressUnreadable(f"unreadable fallback progress record: {e}") from None


class FallbackIndex:
    """The campaign's sends that may fall back, by the ledger id of each step's command."""

    def __init__(self, plan: Iterable[PlannedSend]) -> None:
        self.first: list[PlannedSend] = []  # step 0 of each recipient with channels left
        self.steps: list[tuple[str, ...]] = []  # the command ids of its steps 0..n
        self._by_aggregate: dict[UUID, tuple[int, int]] = {}
        for send in plan:
            if send.route is None or send.step != 0:
                continue
            i = len(self.first)
            ids = tuple(
                send_id(send.campaign_id, send.customer_id, step)
                for step in range(len(send.route.options) + 1)
            )
            self.first.append(send)
            self.steps.append(ids)
            for step, command_id in enumerate(ids):
                self._by_aggregate[command_aggregate_id(command_id)] = (i, step)

    def __len__(self) -> int:
        return len(self.first)

    def find(self, aggregate_id: UUID) -> tuple[PlannedSend, int] | None:
        """The recipient's first send and the step of the command, if it is ours."""
        hit = self._by_aggregate.get(aggregate_id)
        return None if hit is None else (self.first[hit[0]], hit[1])

    def find_command(self, command_id: str) -> tuple[PlannedSend, int] | None:
        return self.find(command_aggregate_id(command_id))


def next_send(
    planner: CampaignPlanner, index: FallbackIndex, failure: Failure
) -> PlannedSend | None:
    """The fallback after ``failure``: the same send whenever it is asked (the planner
    times it from the failure's moment)."""
    hit = index.find_command(failure.command_id)
    if hit is None:
        return None
    first, step = hit
    failed = replace(first, step=step, channel=failure.channel)  # what fallback reads of it
    return planner.fallback(failed, failure.channel, now=failure.at)


def settled(
    planner: CampaignPlanner, index: FallbackIndex, outcomes: dict[str, CommandOutcome]
) -> bool:
    """Whether no fallback can come any more: every recipient's latest step was sent, or
    refused, or failed with nothing left to try (``outcomes``: the ledger's, by command id)."""
    for ids in index.steps:
        latest = next((outcomes[c] for c in reversed(ids) if c in outcomes), None)
        if latest is None or latest.state == "claimed":
            return False  # not dispatched yet, or being sent
        if latest.state == "failed" and latest.failure_kind in HARD_FAILURES:
            failure = Failure(latest.command_id, latest.channel, latest.at)
            if next_send(planner, index, failure) is not None:
                return False  # its fallback is held, on its way or not read yet
    return True


@dataclass(frozen=True)
class FallbackSummary:
    campaign_id: UUID
    outcome: Outcome
    produced: int  # by every run of this follower together
    produced_by_this_run: int
    position: int


class FallbackFollower:
    def __init__(
        self,
        campaign: Campaign,
        plan: Iterable[PlannedSend],
        *,
        ledger: OutboundLedger,
        control: CampaignControl,
        limits: RateLimits,
        kafka: RunnerKafka,
        poll_seconds: float = 0.2,
        settle_seconds: float = 30.0,
        checkpoint_seconds: float = 5.0,
        page: int = 1000,
        max_held: int = 5000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``campaign``: as started (its settings do not change after); ``plan``: the plan
        the runner was given (its routes say where to fall back to)."""
        self.campaign_id = campaign.id
        self.ends_at = campaign.ends_at
        self.planner = CampaignPlanner(campaign, now=campaign.started_at or now())
        self.plan = plan
        self.ledger = ledger
        self.control = control
        self.limits = limits
        self.kafka = kafka
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.checkpoint_seconds = checkpoint_seconds
        self.page = page
        self.max_held = max_held
        self._clock = clock
        self._now = now
        self._wake = asyncio.Event()

    @property
    def transactional_id(self) -> str:
        return f"campaign-{self.campaign_id}-fallback"

    def nudge(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> FallbackSummary:
        stop = stop or asyncio.Event()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap,
            client_id=f"switchboard-{self.transactional_id}",
            transactional_id=self.transactional_id,
            transaction_timeout_ms=self.kafka.transaction_timeout_ms,
            linger_ms=5,
        )
        await producer.start()
        try:
            return await self._run(producer, stop)
        except ProducerFenced:
            raise RunnerFenced(
                f"another fallback follower of campaign {self.campaign_id} took over"
            ) from None
        finally:
            await producer.stop()

    async def _run(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> FallbackSummary:
        async with producer.transaction():  # fences a predecessor, completes its transaction
            pass
        key = FallbackProgress.key_of(self.campaign_id)
        raw = await read_last(self.kafka.bootstrap, self.kafka.progress_topic, key)
        progress = FallbackProgress.load(raw) if raw else FallbackProgress(self.campaign_id)
        produced_now = 0

        def summary(outcome: Outcome) -> FallbackSummary:
            return FallbackSummary(
                self.campaign_id, outcome, progress.produced, produced_now, progress.position
            )

        if progress.state != "following":
            return summary(progress.state)  # type: ignore[arg-type]
        index = await asyncio.to_thread(FallbackIndex, self.plan)
        held = self._held(index, progress.waiting)
        log.info(
            "campaign %s: following failures from ledger position %d for %d recipients "
            "(%d fallbacks held)",
            self.campaign_id,
            progress.position,
            len(index),
            len(held),
        )
        throttle = self.limits.buckets(self._clock())
        saved_at = self._clock()
        saved_position = progress.position
        next_settle = self._clock() + self.settle_seconds
        while not stop.is_set():
            state = await asyncio.to_thread(self.control.state, self.campaign_id)
            if state == "cancelled":
                progress.state, progress.waiting = "cancelled", []
                await self._commit(producer, [], progress)
                return summary("cancelled")
            if state in _WAITING:
                await self._sleep(stop, self.poll_seconds)
                continue
            room = self.max_held - len(held)  # the record must stay well below 1 MB
            failures, position, full = (
                await asyncio.to_thread(self._read_failures, index, progress.position, room)
                if room > 0
                else ([], progress.position, False)
            )
            progress.position = position
            for failure in failures:
                send = next_send(self.planner, index, failure)
                if send is not None:
                    held.append((failure, send))
            held.sort(key=lambda h: (h[1].not_before, str(h[1].customer_id)))
            due, wait = self._due(held, throttle)
            ended = self.ends_at is not None and self._now() >= self.ends_at
            if ended and not held and not full:
                progress.state = "ended"
            progress.waiting = [f for f, _ in held]
            checkpoint = (
                progress.position != saved_position
                and self._clock() - saved_at >= self.checkpoint_seconds
            )
            if due or checkpoint or progress.state != "following":
                progress.produced += len(due)
                await self._commit(producer, [s for _, s in due], progress)
                produced_now += len(due)
                saved_at, saved_position = self._clock(), progress.position
                if due:
                    log.info("campaign %s: %d fallbacks produced", self.campaign_id, len(due))
            if progress.state == "ended":
                return summary("ended")
            if due or full:
                continue
            if state == "completed" and not held and self._clock() >= next_settle:
                next_settle = self._clock() + self.settle_seconds
                if await asyncio.to_thread(self._settled, index):
                    progress.state = "settled"
                    await self._commit(producer, [], progress)
                    return summary("settled")
            await self._sleep(stop, min(wait, self.poll_seconds))
        return summary("stopped")

    def _held(
        self, index: FallbackIndex, waiting: list[Failure]
    ) -> list[tuple[Failure, PlannedSend]]:
        held = []
        for failure in waiting:
            send = next_send(self.planner, index, failure)
            if send is not None:
                held.append((failure, send))
        return held

    def _read_failures(
        self, index: FallbackIndex, position: int, limit: int | None = None
    ) -> tuple[list[Failure], int, bool]:
        """The hard failures of our sends after ``position`` (one page, of at most ``limit``
        failures), the position read up to, and whether the page was full (more may
        follow at once)."""
        page = min(self.page, limit or self.page)
        notifications = self.ledger.recorder.select_notifications(
            start=position,
            limit=page,
            topics=[OutboundCommand.Failed.TOPIC],
            inclusive_of_start=False,
        )
        if not notifications:
            return [], position, False
        ours: list[tuple[str, int, datetime, PlannedSend]] = []
        for notification in notifications:
            hit = index.find(UUID(str(notification.originator_id)))
            if hit is None:
                continue
            event = self.ledger.mapper.to_domain_event(notification)
            if event.kind not in HARD_FAILURES:  # type: ignore[attr-defined]
                continue
            first, step = hit
            command_id = send_id(first.campaign_id, first.customer_id, step)
            ours.append((command_id, step, event.timestamp, first))  # type: ignore[attr-defined]
        later = [c for c, step, _, _ in ours if step > 0]  # their channel is in the ledger
        channels = {c: o.channel for c, o in self.ledger.outcomes(later).items()}
        failures = [
            Failure(c, first.channel if step == 0 else channels[c], at)
            for c, step, at, first in ours
            if step == 0 or c in channels
        ]
        return failures, notifications[-1].id, len(notifications) == page

    def _due(
        self, held: list[tuple[Failure, PlannedSend]], throttle: Throttle
    ) -> tuple[list[tuple[Failure, PlannedSend]], float]:
        """Takes from ``held`` what is due and allowed (up to a batch); returns it, and how
        long until the next may be."""
        now, mono = self._now(), self._clock()
        due: list[tuple[Failure, PlannedSend]] = []
        rest: list[tuple[Failure, PlannedSend]] = []
        wait = float("inf")
        for item in held:
            send = item[1]
            item_wait = max(
                (send.not_before - now).total_seconds(), throttle.wait(send.channel, mono)
            )
            if item_wait > 0 or len(due) >= self.kafka.batch_size:
                wait = min(wait, max(item_wait, 0.0))
                rest.append(item)
                continue
            throttle.take(send.channel, mono)
            due.append(item)
        held[:] = rest
        return due, wait

    def _settled(self, index: FallbackIndex) -> bool:
        ids = [c for steps in index.steps for c in steps]
        return settled(self.planner, index, self.ledger.outcomes(ids))

    async def _commit(
        self, producer: AIOKafkaProducer, sends: list[PlannedSend], progress: FallbackProgress
    ) -> None:
        kafka = self.kafka
        async with producer.transaction():
            written = [
                await producer.send(
                    kafka.outbound_topic,
                    dump_command(send.command),
                    key=str(send.customer_id).encode(),
                )
                for send in sends
            ]
            written.append(
                await producer.send(
                    kafka.progress_topic,
                    progress.dump(),
                    key=FallbackProgress.key_of(self.campaign_id),
                )
            )
            await acknowledged(written)  # before the commit; a failure aborts the batch
        for send in sends:  # committed
            metrics.CAMPAIGN_COMMANDS.labels(send.channel, "fallback").inc()

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        await nap(stop, self._wake, seconds)
