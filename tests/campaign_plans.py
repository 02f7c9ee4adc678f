"""Campaign plans for tests and the dispatch bench: what the planner would hand the runner."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4, uuid5

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import Channel, SendMessage, parse_command
from projections.audience import AudienceRow
from services.campaigns.audience import Segment
from services.campaigns.campaign import Campaign
from services.campaigns.plan import CampaignPlanner
from services.campaigns.recipients import PlannedSend, send_id
from services.campaigns.store import CampaignStore
from services.campaigns.templates import ChannelTemplate
from services.consumers import partitions_of

REQUESTED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_CUSTOMERS = UUID("0b6d6a1c-8f4e-5d1a-9c3b-2e7f4a6d8c10")


def customer(i: int) -> UUID:
    return uuid5(_CUSTOMERS, str(i))


def phone(i: int) -> str:
    return f"+4930{70000000 + i:08d}"


def planned_send(
    campaign_id: UUID, i: int, *, channel: str = "sms", not_before: datetime | None = None
) -> PlannedSend:
    customer_id = customer(i)
    address = phone(i) if channel == "sms" else f"customer{i}@example.com"
    command = SendMessage(
        command_id=send_id(campaign_id, customer_id, 0),
        requested_at=REQUESTED_AT,
        channel=Channel(channel),
        to=address,
        purpose="marketing",
        body=f"Winter sale, customer {i}: 20% off until Sunday",
        subject="Winter sale" if channel == "email" else None,
        requested_by=f"campaign:{campaign_id}",
    )
    return PlannedSend(
        campaign_id=campaign_id,
        customer_id=customer_id,
        step=0,
        channel=channel,
        address=address,
        not_before=not_before or REQUESTED_AT,
        command=command,
    )


def plan(
    n: int,
    *,
    campaign_id: UUID | None = None,
    channels: Iterable[str] = ("sms",),
    not_before: datetime | None = None,
) -> list[PlannedSend]:
    """``n`` sends, the channels taken in turn, sorted as the runner wants them."""
    campaign_id = campaign_id or uuid4()
    cycle = list(channels)
    sends = [
        planned_send(campaign_id, i, channel=cycle[i % len(cycle)], not_before=not_before)
        for i in range(n)
    ]
    return sorted(sends, key=lambda s: (s.not_before, str(s.customer_id)))


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def committed_commands(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 60.0
) -> list[tuple[SendMessage, bytes, int]]:
    """Every command committed on ``topic`` (read_committed), with its key and timestamp (ms),
    once at least ``expect`` are there and every partition is read to its end."""
    partitions = [
        TopicPartition(topic, p)
        for p in sorted((await partitions_of(bootstrap, [topic], "test"))[topic])
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    found: list[tuple[SendMessage, bytes, int]] = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=10000)
            for records in batches.values():
                for r in records:
                    found.append((parse_command(r.value), r.key, r.timestamp))
            if len(found) >= expect and not batches:
                ends = await consumer.end_offsets(partitions)
                if all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} commands on {topic}, expected {expect}")
    finally:
        await consumer.stop()


def duplicates(commands: list[tuple[SendMessage, bytes, int]]) -> dict[str, int]:
    counts = Counter(c.command_id for c, _, _ in commands)
    return {k: v for k, v in counts.items() if v != 1}


def fallback_campaign(
    store: CampaignStore,
    n: int,
    *,
    allowed: tuple[str, str] = ("00:00", "23:59"),
    days: int = 1,
) -> tuple[Campaign, list[PlannedSend]]:
    """A started campaign on SMS with fallback to e-mail, and its plan for ``n`` recipients
    (``customer(i)``, ``phone(i)``, ``customer{i}@example.com``, in UTC), as the service would
    make it: sorted, each send carrying its route."""
    now = datetime.now(UTC)
    campaign = store.create(f"Fallback {uuid4().hex[:6]}", by="carla")
    campaign.set_audience(Segment(), ["sms", "email"])
    campaign.set_template(ChannelTemplate("sms", "en", "Winter sale: 20% off, {{ address }}"))
    campaign.set_template(
        ChannelTemplate("email", "en", "Winter sale: 20% off", subject="Winter sale")
    )
    campaign.set_schedule_window(
        now,
        now + timedelta(days=days),
        allowed_from=allowed[0],
        allowed_until=allowed[1],
        time_zone="UTC",
    )
    campaign.set_rate_limits({"sms": 100, "email": 100})
    campaign.allow_fallback()
    campaign.schedule(now=now, by="carla")
    campaign.start(now=now, by="carla")
    store.save(campaign)
    rows = [
        AudienceRow(
            customer_id=customer(i),
            addresses=(f"customer{i}@example.com", phone(i)),
            profile={"name": f"Customer {i}", "language": "en", "time_zone": "UTC"},
            consent={"sms:marketing": True, "email:marketing": True},
            last_contact_at=None,
        )
        for i in range(n)
    ]
    planner = CampaignPlanner(campaign, now=now)
    plan = planner.plan(rows, {}, {}, matched=True)
    assert len(plan.sends) == n and all(s.channel == "sms" and s.route for s in plan.sends)
    return campaign, sorted(plan.sends, key=lambda s: (s.not_before, str(s.customer_id)))
