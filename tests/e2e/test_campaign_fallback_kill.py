"""A fallback follower SIGKILLed mid-campaign: each recipient whose SMS failed for good still
gets exactly one committed e-mail command (step 1) on the outbound topic, and no one else.

The follower runs as its own process (``tests/e2e/fallback_child.py``) over 1 500 recipients;
their failures reach the ledger in three waves, some while no follower runs.  Each kill comes
once the outbound topic's high watermark (records written, committed or not) has moved on by
a random count, never after a fixed sleep.  The restarted follower fences the killed one,
whose open transaction is aborted, and continues from its committed ledger position.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.campaigns.recipients import send_id
from services.campaigns.recipients_io import write_plan
from tests.campaign_plans import committed_commands, duplicates, fallback_campaign
from tests.e2e.processes import ChildProcess
from tests.e2e.test_campaign_kill import Watermarks
from tests.helpers import settings_env

pytestmark = pytest.mark.slow

RECIPIENTS = 1_500
KILLS = 6


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


async def test_a_fallback_follower_killed_six_times_loses_and_doubles_no_fallback(
    hub_settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    hub = bootstrap(hub_settings)
    store, ledger = hub.campaign_store(), hub.outbound_ledger()
    campaign, sends = fallback_campaign(store, RECIPIENTS)
    plan_file = tmp_path / "plan.jsonl"
    write_plan(plan_file, sends)
    # Every third recipient's SMS is sent; the others' fail for good.
    failing = [s for i, s in enumerate(sends) if i % 3]
    waves = [failing[: len(failing) // 3], failing[len(failing) // 3 : -100], failing[-100:]]

    def fail(wave) -> None:
        for send in wave:
            claimed = ledger.claim(send.command.command_id, channel="sms", to=send.address)
            ledger.record_failed(claimed, "invalid number", "21211", kind="rejected")

    for i, send in enumerate(sends):
        if i % 3 == 0:
            claimed = ledger.claim(send.command.command_id, channel="sms", to=send.address)
            ledger.record_sent(claimed, f"SM{i}")
    fail(waves[0])
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}; follower log {tmp_path / 'follower.log'}")
    rng = random.Random(seed)
    log_path = tmp_path / "follower.log"
    env = {**os.environ, **settings_env(hub_settings)}

    def follower() -> ChildProcess:
        args = [sys.executable, "-m", "tests.e2e.fallback_child", str(campaign.id), str(plan_file)]
        return ChildProcess(args, log_path, env=env).start()

    started = time.monotonic()
    kills_at: list[int] = []
    inside = 0  # kills seen to fall inside a transaction
    async with Watermarks(hub.kafka, hub_settings.outbound_topic) as topic:
        kill = 0
        # KILLS kills; then, while none was seen inside a transaction (its commands written,
        # not committed: on a quick machine a short transaction is often done before the kill
        # lands), more, in smaller steps, while enough is left to produce.
        while kill < KILLS or (not inside and await topic.written() < len(failing) - 60):
            process = follower()
            step = rng.randrange(10, 200) if kill < KILLS else rng.randrange(5, 30)
            target = await topic.written() + step
            deadline = time.monotonic() + 60
            while await topic.written() < target:
                assert process.proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the follower stopped producing"
                await asyncio.sleep(rng.uniform(0.001, 0.02))
            process.kill()
            written = await topic.written()
            kills_at.append(written)
            inside += await topic.in_open_transaction(written)
            if kill in (1, 3):  # failures that come while no follower runs
                fail(waves[1 + kill // 3])
            kill += 1
        final = follower()
        try:
            commands = await committed_commands(
                hub.kafka, hub_settings.outbound_topic, expect=len(failing), timeout=90
            )
        finally:
            final.stop()
        records = await topic.records()
    aborted = records - len(commands)
    print(
        f"kills at high watermarks {kills_at} ({inside} inside a transaction); {records} "
        f"commands of which {len(commands)} committed and {aborted} aborted; "
        f"{time.monotonic() - started:.1f}s"
    )
    assert aborted > 0, "no kill fell inside a transaction: the test proved less than it says"
    assert not duplicates(commands), f"doubled: {list(duplicates(commands).items())[:5]}"
    assert {c.command_id for c, _, _ in commands} == {
        send_id(campaign.id, s.customer_id, 1) for s in failing
    }
    assert {c.channel for c, _, _ in commands} == {"email"}
    assert set(Counter(key for _, key, _ in commands).values()) == {1}
