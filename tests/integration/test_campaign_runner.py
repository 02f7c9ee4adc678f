"""The campaign runner on the real broker: each planned send one committed command, on time,
within its rate, and pause, resume and cancel felt within a second."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from contracts import Channel, SendMessage, dump_command
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.campaigns.limits import Rate, RateLimits
from services.campaigns.recipients import CampaignState
from services.campaigns.runner import CampaignRunner, PlanError, RunnerFenced, RunnerKafka
from tests.campaign_plans import committed_commands, duplicates, later, plan, planned_send
from tests.helpers import eventually
from tests.integration.test_outbound_dispatch import RecordingSender


class Control:
    """The campaign's state as the test sets it (the campaign store, later)."""

    def __init__(self, state: CampaignState = "running") -> None:
        self.current: CampaignState = state

    def state(self, campaign_id: UUID) -> CampaignState:
        return self.current


async def runner_kafka(settings: Settings) -> RunnerKafka:
    await ensure_topics(settings, settings.kafka_bootstrap)
    return RunnerKafka(
        bootstrap=settings.kafka_bootstrap,
        outbound_topic=settings.outbound_topic,
        progress_topic=settings.campaign_progress_topic,
    )


@pytest.fixture
async def kafka(kafka_bootstrap: str, tmp_path) -> RunnerKafka:
    """Topics of the test's own; the runner needs no store."""
    suffix = uuid4().hex[:8]
    settings = Settings(
        data_dir=tmp_path / "var",
        kafka_bootstrap=kafka_bootstrap,
        topic_partitions=3,
        outbound_topic=f"sb.outbound.{suffix}",
        campaign_progress_topic=f"sb.campaign-progress.{suffix}",
        interactions_topic=f"sb.interactions.{suffix}",
        deadletter_topic=f"sb.deadletter.{suffix}",
        routing_topic=f"sb.routing.{suffix}",
        presence_topic=f"sb.presence.{suffix}",
    )
    return await runner_kafka(settings)


def runner(sends, kafka: RunnerKafka, control: Control | None = None, **kw) -> CampaignRunner:
    return CampaignRunner(
        sends[0].campaign_id,
        sends,
        control=control or Control(),
        limits=kw.pop("limits", RateLimits()),
        kafka=kafka,
        **kw,
    )


async def test_every_planned_send_is_one_committed_command_keyed_by_customer(
    kafka: RunnerKafka,
) -> None:
    sends = plan(1200, channels=("sms", "email"))
    seen: list[tuple[int, int]] = []

    def counted() -> float:  # what GET /metrics says of committed campaign commands
        return sum(
            REGISTRY.get_sample_value(
                "switchboard_campaign_commands_total", {"channel": c, "kind": "first"}
            )
            or 0.0
            for c in ("sms", "email")
        )

    before = counted()
    summary = await runner(sends, kafka, on_progress=lambda p, t: seen.append((p, t))).run()

    assert (summary.outcome, summary.produced, summary.total) == ("done", 1200, 1200)
    assert counted() - before == 1200
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=1200)
    assert len(commands) == 1200 and not duplicates(commands)
    by_id = {s.command.command_id: s for s in sends}
    for command, key, _ in commands:
        assert key == str(by_id[command.command_id].customer_id).encode()
        assert command == by_id[command.command_id].command
    assert seen[-1] == (1200, 1200)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    # Several sends per transaction, not one each.
    assert summary.transactions < 100

    again = await runner(sends, kafka).run()  # a second run of a finished campaign
    assert (again.outcome, again.produced_by_this_run) == ("done", 0)
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=1200)
    assert len(commands) == 1200


async def test_pause_stops_production_within_a_second_and_resume_continues(
    kafka: RunnerKafka,
) -> None:
    sends = plan(60)
    control = Control()
    produced: list[int] = [0]
    task = asyncio.create_task(
        runner(
            sends,
            kafka,
            control,
            limits=RateLimits({"sms": Rate(20)}),
            on_progress=lambda p, t: produced.append(p),
        ).run()
    )
    await eventually(lambda: produced[-1] >= 10, what="the campaign under way")

    control.current = "paused"
    paused_at = time.time()
    await eventually(lambda: time.time() > paused_at + 1.5, what="1.5 s of pause")
    during_pause = produced[-1]
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=10)
    assert len(commands) == during_pause < 60
    assert max(ts for _, _, ts in commands) / 1000 < paused_at + 1.0

    control.current = "running"
    summary = await asyncio.wait_for(task, 30)
    assert (summary.outcome, summary.produced) == ("done", 60)
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=60)
    assert len(commands) == 60 and not duplicates(commands)
    resumed = sorted(ts for _, _, ts in commands)[during_pause]
    assert resumed / 1000 > paused_at + 1.5  # nothing was produced while paused


async def test_cancel_stops_the_campaign_within_a_second_and_for_good(kafka: RunnerKafka) -> None:
    sends = plan(100)
    control = Control()
    produced: list[int] = [0]
    task = asyncio.create_task(
        runner(
            sends,
            kafka,
            control,
            limits=RateLimits({"sms": Rate(20)}),
            on_progress=lambda p, t: produced.append(p),
        ).run()
    )
    await eventually(lambda: produced[-1] >= 5, what="the campaign under way")

    control.current = "cancelled"
    cancelled_at = time.monotonic()
    summary = await asyncio.wait_for(task, 5)
    assert time.monotonic() - cancelled_at < 1.0
    assert summary.outcome == "cancelled" and 5 <= summary.produced < 100

    restarted = await runner(sends, kafka, Control("running")).run()
    assert (restarted.outcome, restarted.produced_by_this_run) == ("cancelled", 0)
    with pytest.raises(PlanError, match="must not change"):
        await runner(sends[:50], kafka).run()
    commands = await committed_commands(
        kafka.bootstrap, kafka.outbound_topic, expect=summary.produced
    )
    assert len(commands) == summary.produced


async def test_rates_per_channel_and_per_sender_are_kept_and_do_not_hold_each_other_back(
    kafka: RunnerKafka,
) -> None:
    sends = plan(20, channels=("sms", "email"))  # 10 of each
    limits = RateLimits(
        channels={"sms": Rate(5)},  # 5 SMS a second
        senders={"news@example.com": Rate(240, per_seconds=60)},  # 4 e-mails a second
        sender_of={"email": "news@example.com"},
    )
    started = time.monotonic()

    summary = await runner(sends, kafka, limits=limits).run()

    elapsed = time.monotonic() - started
    assert summary.produced == 20
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=20)
    for channel, rate in ((Channel.sms, 5), (Channel.email, 4)):
        stamps = sorted(ts / 1000 for c, _, ts in commands if c.channel == channel)
        assert len(stamps) == 10
        for i, stamp in enumerate(stamps):
            # The i-th send no sooner than i intervals after the first (10 ms slack).
            assert stamp - stamps[0] >= i / rate - 0.01, (channel, i)
    # SMS take 1.8 s and e-mails 2.25 s side by side, not 4 s one after the other.
    assert elapsed < 3.5


async def test_a_send_not_due_yet_waits_for_its_time(kafka: RunnerKafka) -> None:
    now = plan(5)
    due = later(1.5)
    # Other customers than the first five: the same customer and step would be planned twice.
    later_sends = sorted(
        (planned_send(now[0].campaign_id, 100 + i, not_before=due) for i in range(5)),
        key=lambda s: str(s.customer_id),
    )
    sends = now + later_sends

    summary = await runner(sends, kafka).run()

    assert summary.produced == 10
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=10)
    when = {c.command_id: ts / 1000 for c, _, ts in commands}
    for send in later_sends:
        assert when[send.command.command_id] >= send.not_before.timestamp() - 0.01


async def test_a_second_runner_of_the_same_campaign_fences_the_first(kafka: RunnerKafka) -> None:
    sends = plan(40)
    limits = RateLimits({"sms": Rate(20)})
    produced: list[int] = [0]
    first = asyncio.create_task(
        runner(sends, kafka, limits=limits, on_progress=lambda p, t: produced.append(p)).run()
    )
    await eventually(lambda: produced[-1] >= 5, what="the first runner under way")

    second = await runner(sends, kafka, limits=limits).run()

    with pytest.raises(RunnerFenced):
        await asyncio.wait_for(first, 10)
    assert second.produced == 40
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=40)
    assert len(commands) == 40 and not duplicates(commands)


async def test_an_aborted_transactions_command_is_never_read_nor_sent(
    hub_settings: Settings, start_dispatcher
) -> None:
    kafka = await runner_kafka(hub_settings)
    aborted = SendMessage(channel=Channel.sms, to="+493012340001", body="never to be sent")
    committed = SendMessage(channel=Channel.sms, to="+493012340002", body="sent once")
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, transactional_id=f"test-abort-{aborted.command_id}"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(kafka.outbound_topic, dump_command(aborted), key=b"a")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(kafka.outbound_topic, dump_command(committed), key=b"b")
    finally:
        await producer.stop()

    sender = RecordingSender()
    dispatcher = await start_dispatcher({Channel.sms: sender})
    await eventually(lambda: dispatcher.stats.consumed >= 1, what="the committed command handled")

    assert sender.sent == [committed.command_id]
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=1)
    assert Counter(c.command_id for c, _, _ in commands) == {committed.command_id: 1}
    assert dispatcher.stats.consumed == 1


class LiveControl(Control):
    """The control as the campaign store gives it: the state and the rate limits together."""

    def __init__(self, rates: dict[str, float]) -> None:
        super().__init__()
        self.rates = rates

    def state_and_rates(self, campaign_id: UUID) -> tuple[CampaignState, dict[str, float]]:
        return self.current, dict(self.rates)


async def test_a_rate_limit_changed_while_it_runs_holds_from_the_next_poll(
    kafka: RunnerKafka,
) -> None:
    """40 SMS at 2 a second would take 20 s; raised to 200 a second after the first few, the
    rest go out at once — and lowered again, the runner slows down again."""
    sends = plan(40)
    control = LiveControl({"sms": 2.0})
    produced: list[int] = [0]
    task = asyncio.create_task(
        runner(
            sends,
            kafka,
            control,
            limits=RateLimits({"sms": Rate(2)}),
            on_progress=lambda p, t: produced.append(p),
            poll_seconds=0.1,
        ).run()
    )
    await eventually(lambda: produced[-1] >= 3, timeout=10)
    assert produced[-1] < 10  # held at 2 a second so far
    control.rates = {"sms": 200.0}
    raised = time.monotonic()
    await eventually(lambda: produced[-1] >= 30, timeout=10)
    assert time.monotonic() - raised < 5  # 27 more at 2/s would take 13 s
    control.rates = {"sms": 1.0}
    lowered_at = produced[-1]
    await asyncio.sleep(0)  # (the poll follows within poll_seconds)
    summary = await asyncio.wait_for(task, timeout=30)
    assert summary.produced == 40
    commands = await committed_commands(kafka.bootstrap, kafka.outbound_topic, expect=40)
    stamps = sorted(ts / 1000 for _, _, ts in commands)
    # After the lowering, the last sends are about a second apart again.
    tail = stamps[lowered_at + 2 :]
    assert len(tail) >= 3
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(tail))
