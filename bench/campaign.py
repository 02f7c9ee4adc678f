"""Campaign benchmark (issue 15): plan N recipients, then dispatch exactly those sends.

1. Planning: the synthetic directory of ``bench/campaign_plan.py`` (audience, consent per
   channel and purpose, quiet hours across zones, the frequency cap, channel choice from
   reachability, templates) through ``plan_campaign``: seconds (target <= 10 s for 100 000),
   beside a bare Python loop step timed in the same run (the machine is shared).
2. Dispatch: the planned sends through the ``CampaignRunner`` (Kafka transactions, exactly
   once on the topic) against the raw produce rate of the same commands with a plain
   producer in the same run (``bench/campaign_dispatch.py``'s floor).

    python bench/campaign.py --n 100000

Needs a broker: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaign_dispatch import _settings, campaign_run, raw_produce
from campaign_plan import NOW, TARGET_S, campaign, reference_loop_ns, synthetic

from services.bootstrap.kafka_topics import ensure_topics
from services.campaigns.plan import plan_campaign
from services.campaigns.runner import RunnerKafka


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="recipients (default 100 000)")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    rows, reach, contacts = synthetic(args.n)
    spec = campaign()

    def past(ids: list[UUID], since: datetime) -> dict[UUID, list[datetime]]:
        return {c: contacts[c] for c in ids if c in contacts}

    loop_ns = reference_loop_ns()
    started = time.perf_counter()
    _, plan = plan_campaign(spec, rows, reachability=reach, contacts=past, now=NOW)
    plan_s = time.perf_counter() - started
    loop_ns = min(loop_ns, reference_loop_ns())
    sends = sorted(plan.sends, key=lambda s: (s.not_before, s.customer_id))
    print(
        f"plan      {args.n:,} recipients in {plan_s:.2f} s ({len(sends):,} to send; "
        f"target <= {TARGET_S:g} s for 100 000: "
        f"{'met' if plan_s * 100_000 / args.n <= TARGET_S else 'MISSED'}); "
        f"a bare loop step took {loop_ns:.0f} ns here"
    )

    work = Path(tempfile.mkdtemp(prefix="sb-bench-campaign-"))
    cleanups = [lambda: shutil.rmtree(work, ignore_errors=True)]
    try:
        bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not bootstrap:
            from deploy.kafka_local import LocalKafka

            kafka = LocalKafka(work_dir=work / "kafka").start()
            cleanups.append(kafka.stop)
            bootstrap = kafka.bootstrap
        settings = _settings(work, bootstrap, args.partitions)
        await ensure_topics(settings, bootstrap)
        await raw_produce(bootstrap, settings.interactions_topic, sends[:2000])  # warm up
        floor = await raw_produce(bootstrap, settings.interactions_topic, sends)
        producing, overall, transactions = await campaign_run(
            RunnerKafka(
                bootstrap=bootstrap,
                outbound_topic=settings.outbound_topic,
                progress_topic=settings.campaign_progress_topic,
            ),
            sends,
        )
        n = len(sends)
        print(f"dispatch  raw produce (floor) {n / floor:10,.0f} commands/s ({floor:.2f} s)")
        print(
            f"dispatch  campaign runner     {n / producing:10,.0f} commands/s "
            f"({producing:.2f} s, {transactions} transactions; with start-up "
            f"{n / overall:,.0f}/s) = {floor / producing:.0%} of the floor"
        )
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


if __name__ == "__main__":
    asyncio.run(main())
