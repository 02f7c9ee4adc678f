"""A fallback follower as a process of its own, for the kill test: the test's settings come
in the environment (``settings_env``), the campaign id and its plan file as arguments."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from uuid import UUID

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.campaigns.fallback import FallbackFollower
from services.campaigns.limits import RateLimits
from services.campaigns.recipients_io import PlanFile
from services.campaigns.runner import RunnerKafka


async def follow(campaign_id: UUID, plan_file: Path) -> None:
    hub = bootstrap(Settings())
    s = hub.settings
    store = hub.campaign_store()
    follower = FallbackFollower(
        store.get(campaign_id),
        list(PlanFile(plan_file)),
        ledger=hub.outbound_ledger(),
        control=store,
        limits=RateLimits(),
        kafka=RunnerKafka(
            bootstrap=hub.kafka,
            outbound_topic=s.outbound_topic,
            progress_topic=s.campaign_progress_topic,
            batch_size=20,  # small transactions: many commits for a kill to fall between
        ),
        poll_seconds=0.05,
        settle_seconds=0.5,
        page=100,
    )
    summary = await follower.run()
    print(f"fallback follower: {summary}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(follow(UUID(sys.argv[1]), Path(sys.argv[2])))
