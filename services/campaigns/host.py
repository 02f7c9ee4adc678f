"""The hub's campaigns service: every running campaign gets a ``CampaignRunner``.

Every ``scan_seconds`` the host looks for campaigns that are running or paused (started from
the command line, the API, another process: the campaign store is the one place that
says) and runs each that has no runner yet, with the plan kept at its start
(``CampaignService.plan_to_run``: the same plan after a restart, continued from the runner's
committed progress on Kafka).  A runner asks the store for its campaign's state every
``poll_seconds`` (0.2 s), so a pause, resume or cancel is felt within a second wherever it
was recorded.  When a runner has produced every send, the campaign is marked completed.

A runner that fails (Kafka away, a plan that no longer matches its progress) is logged and
tried again after a back-off; the others go on.  A runner reads the campaign's rate limits
with its state at every poll, so a limit changed while it runs holds within a second.

A campaign that allows fallback gets a ``FallbackFollower`` too (``fallback.py``: the
recipient's next channel after a hard failure), from its start for as long as failures can
still lead somewhere: it runs on after the campaign completed, until every recipient's
outcome is settled or the schedule window ended, and stops with a cancel.

Run one campaigns service per hub: two would fence each other's runners (Kafka
transactions keep that safe, not efficient).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from services.campaigns.campaign import Campaign
from services.campaigns.fallback import FallbackFollower, FallbackSummary
from services.campaigns.limits import Rate, RateLimits
from services.campaigns.runner import CampaignRunner, RunnerKafka, RunSummary, nap
from services.campaigns.service import CampaignService

log = logging.getLogger(__name__)

__all__ = ["CampaignHost"]

_ACTIVE = frozenset({"running", "paused"})
_FOLLOWED = frozenset({"running", "paused", "completed"})


class CampaignHost:
    def __init__(
        self,
        service: CampaignService,
        *,
        kafka: RunnerKafka,
        scan_seconds: float = 1.0,
        poll_seconds: float = 0.2,
        first_retry: float = 1.0,
        max_retry: float = 30.0,
        settle_seconds: float = 30.0,
    ) -> None:
        self.service = service
        self.kafka = kafka
        self.scan_seconds = scan_seconds
        self.poll_seconds = poll_seconds
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.runners: dict[UUID, CampaignRunner] = {}
        self.progress: dict[UUID, tuple[int, int]] = {}  # produced, total: for probes and tests
        self.summaries: dict[UUID, RunSummary] = {}
        self._tasks: dict[UUID, asyncio.Task[RunSummary]] = {}
        self._retry: dict[UUID, tuple[float, float]] = {}  # when, and the next delay
        self._produced_all: set[UUID] = set()  # done, waiting to be running to be completed
        self._wake = asyncio.Event()
        self.settle_seconds = settle_seconds
        self.followers: dict[UUID, FallbackFollower] = {}
        self.fallback_summaries: dict[UUID, FallbackSummary] = {}
        self._follow_tasks: dict[UUID, asyncio.Task[FallbackSummary]] = {}
        self._follow_retry: dict[UUID, tuple[float, float]] = {}

    def nudge(self) -> None:
        """Look for new campaigns now, and make every runner ask for its state now."""
        self._wake.set()
        for runner in self.runners.values():
            runner.nudge()
        for follower in self.followers.values():
            follower.nudge()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                campaigns = await asyncio.to_thread(self.service.list)
                self._reap()
                for campaign in campaigns:
                    if campaign.state in _ACTIVE:
                        await self._attend(campaign, stop)
                    if self._follows(campaign):
                        self._attend_fallback(campaign, stop)
                await self._sleep(stop)
        finally:
            stop.set()  # the runners commit what they produced and return
            tasks = [*self._tasks.values(), *self._follow_tasks.values()]
            if tasks:
                await asyncio.wait(tasks, timeout=30)
            self._reap()

    async def _attend(self, campaign: Campaign, stop: asyncio.Event) -> None:
        cid = campaign.id
        if cid in self._tasks:
            return
        if cid in self._produced_all:
            if campaign.state == "running":
                await asyncio.to_thread(self._complete, cid)
            return
        when, _ = self._retry.get(cid, (0.0, 0.0))
        if time.monotonic() < when:
            return
        self._tasks[cid] = asyncio.create_task(
            self._run_one(campaign, stop), name=f"campaign {cid}"
        )

    async def _run_one(self, campaign: Campaign, stop: asyncio.Event) -> RunSummary:
        sends = await asyncio.to_thread(self.service.plan_to_run, campaign)
        limits = self._limits(campaign)

        def progressed(produced: int, total: int) -> None:
            self.progress[campaign.id] = (produced, total)

        runner = CampaignRunner(
            campaign.id,
            sends,
            control=self.service.store,
            limits=limits,
            kafka=self.kafka,
            on_progress=progressed,
            poll_seconds=self.poll_seconds,
        )
        self.runners[campaign.id] = runner
        log.info("campaign %s (%s): running %d sends", campaign.id, campaign.name, len(sends))
        try:
            summary = await runner.run(stop)
        finally:
            self.runners.pop(campaign.id, None)
        self.summaries[campaign.id] = summary
        log.info(
            "campaign %s: %s, %d of %d produced",
            campaign.id,
            summary.outcome,
            summary.produced,
            summary.total,
        )
        if summary.outcome == "done":
            self._produced_all.add(campaign.id)
            await asyncio.to_thread(self._complete, campaign.id)
        return summary

    def _follows(self, campaign: Campaign) -> bool:
        """Whether the campaign needs a fallback follower now (not one that finished)."""
        if not campaign.fallback_allowed or len(campaign.channels) < 2:
            return False
        if campaign.state not in _FOLLOWED or campaign.id in self.fallback_summaries:
            return False
        ended = campaign.ends_at is not None and datetime.now(UTC) >= campaign.ends_at
        return campaign.state != "completed" or not ended

    def _attend_fallback(self, campaign: Campaign, stop: asyncio.Event) -> None:
        cid = campaign.id
        if cid in self._follow_tasks:
            return
        when, _ = self._follow_retry.get(cid, (0.0, 0.0))
        if time.monotonic() < when:
            return
        self._follow_tasks[cid] = asyncio.create_task(
            self._follow_one(campaign, stop), name=f"campaign {cid} fallback"
        )

    async def _follow_one(self, campaign: Campaign, stop: asyncio.Event) -> FallbackSummary:
        sends = await asyncio.to_thread(self.service.plan_to_run, campaign)
        follower = FallbackFollower(
            campaign,
            sends,
            ledger=self.service.ledger,
            control=self.service.store,
            limits=self._limits(campaign),
            kafka=self.kafka,
            poll_seconds=self.poll_seconds,
            settle_seconds=self.settle_seconds,
        )
        self.followers[campaign.id] = follower
        try:
            summary = await follower.run(stop)
        finally:
            self.followers.pop(campaign.id, None)
        log.info(
            "campaign %s: fallback follower %s, %d fallbacks produced",
            campaign.id,
            summary.outcome,
            summary.produced,
        )
        if summary.outcome != "stopped":
            self.fallback_summaries[campaign.id] = summary  # for good: not followed again
        return summary

    @staticmethod
    def _limits(campaign: Campaign) -> RateLimits:
        return RateLimits(
            channels={ch: Rate(rate) for ch, rate in campaign.rate_limits.items() if rate > 0}
        )

    def _complete(self, campaign_id: UUID) -> None:
        """Mark it completed; a campaign paused after its last send waits for its resume
        (the aggregate completes running campaigns only)."""
        campaign = self.service.store.get(campaign_id)
        if campaign.state == "running":
            campaign.complete()
            self.service.store.save(campaign)
            log.info("campaign %s completed", campaign_id)
        if campaign.state in ("completed", "cancelled"):
            self._produced_all.discard(campaign_id)

    def _reap(self) -> None:
        self._reap_tasks(self._tasks, self._retry, "runner")
        self._reap_tasks(self._follow_tasks, self._follow_retry, "fallback follower")

    def _reap_tasks(
        self,
        tasks: dict[UUID, asyncio.Task[Any]],
        retry: dict[UUID, tuple[float, float]],
        what: str,
    ) -> None:
        for cid, task in list(tasks.items()):
            if not task.done():
                continue
            del tasks[cid]
            error = None if task.cancelled() else task.exception()
            if error is None:
                retry.pop(cid, None)
                continue
            _, delay = retry.get(cid, (0.0, self.first_retry))
            retry[cid] = (time.monotonic() + delay, min(delay * 2, self.max_retry))
            log.error("campaign %s: %s failed: %s; retrying in %.0fs", cid, what, error, delay)

    async def _sleep(self, stop: asyncio.Event) -> None:
        await nap(stop, self._wake, self.scan_seconds)
