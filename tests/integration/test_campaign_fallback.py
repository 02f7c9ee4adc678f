"""Fallback on the real broker: a hard failure of a campaign send brings exactly one command
for the recipient's next channel (step 1) onto the outbound topic; a success or a refusal
brings none; a fallback due later is held through a restart and produced once when due."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channels.outbound import Recipient, SendReceipt
from channels.publishing import InteractionPublisher
from channels.sms import TwilioSmsConfig, TwilioSmsSender
from contracts import Channel, ConsentChanged, Direction, MessageReceived, SendMessage
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.campaigns.audience import Segment
from services.campaigns.fallback import FallbackFollower, FallbackProgress
from services.campaigns.limits import RateLimits
from services.campaigns.progress import read_last
from services.campaigns.recipients import PlannedSend, send_id
from services.campaigns.runner import RunnerKafka
from services.domain import customer_id_for
from services.history.ledger import OutboundLedger
from tests.campaign_plans import committed_commands, duplicates, fallback_campaign
from tests.helpers import eventually
from tests.standins.twilio_api import TwilioApiStandIn

pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
async def hub(hub_settings: Settings) -> Hub:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    return bootstrap(hub_settings)


def kafka_of(settings: Settings) -> RunnerKafka:
    return RunnerKafka(
        bootstrap=settings.kafka_bootstrap,
        outbound_topic=settings.outbound_topic,
        progress_topic=settings.campaign_progress_topic,
    )


def follower(hub: Hub, campaign, sends, **kw) -> FallbackFollower:
    return FallbackFollower(
        campaign,
        sends,
        ledger=kw.pop("ledger", hub.outbound_ledger()),
        control=hub.campaign_store(),
        limits=RateLimits(),
        kafka=kafka_of(hub.settings),
        poll_seconds=0.1,
        **kw,
    )


def record(ledger: OutboundLedger, send: PlannedSend, outcome: str, *, step: int = 0) -> None:
    """What the dispatcher would record for the recipient's step: sent, or failed (kind)."""
    channel = "sms" if step == 0 else "email"
    command_id = send_id(send.campaign_id, send.customer_id, step)
    claimed = ledger.claim(command_id, channel=channel, to=send.address)
    if outcome == "sent":
        ledger.record_sent(claimed, f"ref-{command_id}")
    else:
        ledger.record_failed(claimed, f"{outcome} in a test", None, kind=outcome)  # type: ignore[arg-type]


async def test_each_hard_failure_gets_one_fallback_on_the_next_channel_and_a_refusal_none(
    hub: Hub,
) -> None:
    store, ledger = hub.campaign_store(), hub.outbound_ledger()
    campaign, sends = fallback_campaign(store, 30)
    rejected, gave_up, refused, sent = sends[:10], sends[10:15], sends[15:20], sends[20:]
    for group, outcome in ((rejected, "rejected"), (gave_up, "gave_up"), (refused, "refused")):
        for send in group:
            record(ledger, send, outcome)
    for send in sent:
        record(ledger, send, "sent")
    task = asyncio.create_task(follower(hub, campaign, sends, settle_seconds=0.2).run())

    hard = rejected + gave_up
    commands = await committed_commands(hub.kafka, hub.settings.outbound_topic, expect=len(hard))
    assert not duplicates(commands) and len(commands) == len(hard)
    by_id = {c.command_id: (c, key) for c, key, _ in commands}
    for send in hard:
        command, key = by_id[send_id(campaign.id, send.customer_id, 1)]
        assert key == str(send.customer_id).encode()
        assert (command.channel, command.to) == (Channel.email, send.route.options[0][1])
        assert command.subject == "Winter sale" and command.purpose == "marketing"

    # The e-mails: most are sent, two fail for good too; with no channel left, no step 2.
    for send in hard[:-2]:
        record(ledger, send, "sent", step=1)
    for send in hard[-2:]:
        record(ledger, send, "rejected", step=1)
    assert not task.done()  # running campaign: followed on
    campaign = store.get(campaign.id)
    campaign.complete()
    store.save(campaign)
    summary = await asyncio.wait_for(task, 30)

    assert (summary.outcome, summary.produced) == ("settled", len(hard))
    again = await follower(hub, campaign, sends).run()  # a restarted hub: nothing to do
    assert (again.outcome, again.produced_by_this_run) == ("settled", 0)
    commands = await committed_commands(hub.kafka, hub.settings.outbound_topic, expect=len(hard))
    assert len(commands) == len(hard)


async def test_a_fallback_due_later_is_held_through_a_restart_and_produced_once_when_due(
    hub: Hub,
) -> None:
    store, ledger = hub.campaign_store(), hub.outbound_ledger()
    now = datetime.now(UTC)
    # Allowed hours start in two hours: a failure now falls back then.
    opens = (now + timedelta(hours=2)).strftime("%H:%M")
    closes = (now + timedelta(hours=4)).strftime("%H:%M")
    campaign, sends = fallback_campaign(store, 4, allowed=(opens, closes), days=2)
    early, late = sends[:2], sends[2:]
    for send in early:
        record(ledger, send, "rejected")
    clock = [datetime.now(UTC)]
    first = follower(hub, campaign, sends, now=lambda: clock[0], checkpoint_seconds=0)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    key = FallbackProgress.key_of(campaign.id)

    async def held() -> int:
        raw = await read_last(hub.kafka, hub.settings.campaign_progress_topic, key, timeout=5)
        return 0 if raw is None else len(FallbackProgress.load(raw).waiting)

    await eventually(lambda: held(), what="the held fallbacks in the progress record")
    assert await held() == 2
    stop.set()
    assert (await asyncio.wait_for(task, 10)).produced == 0

    for send in late:  # failures while no follower runs
        record(ledger, send, "rejected")
    clock[0] = datetime.now(UTC) + timedelta(hours=3)  # the allowed hours have come
    second = follower(hub, campaign, sends, now=lambda: clock[0])
    task = asyncio.create_task(second.run())
    commands = await committed_commands(hub.kafka, hub.settings.outbound_topic, expect=4)
    assert not duplicates(commands)
    assert {c.command_id for c, _, _ in commands} == {
        send_id(campaign.id, s.customer_id, 1) for s in sends
    }
    campaign = store.get(campaign.id)
    campaign.cancel(by="carla", reason="enough")
    store.save(campaign)
    assert (await asyncio.wait_for(task, 10)).outcome == "cancelled"


# -- in the running hub ------------------------------------------------------------------

ACCOUNT = "AC" + "8" * 32
TOKEN = "twilio-auth-token-for-fallback"
PHONES = [f"+4930500002{i:02d}" for i in range(6)]


class EmailSink:
    """A stand-in e-mail provider: accepts every message and keeps it."""

    channel = Channel.email

    def __init__(self) -> None:
        self.sent: list[SendMessage] = []

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        self.sent.append(command)
        return SendReceipt(provider_ref=f"<{command.command_id}@example.com>")

    async def close(self) -> None:
        pass


def email_of(phone: str) -> str:
    return f"c{phone[-4:]}@example.com"


def consent(channel: Channel, party: str, *, granted: bool, ref: str) -> ConsentChanged:
    return ConsentChanged(
        channel=channel,
        direction=Direction.inbound,
        party=party,
        provider_ref=ref,
        occurred_at=datetime.now(UTC),
        purpose="marketing",
        granted=granted,
        source="web-form",
    )


@pytest.fixture
async def running_hub(hub_settings: Settings) -> AsyncIterator[tuple[Hub, TwilioApiStandIn]]:
    """Six customers with an SMS number and an e-mail address, opted in to marketing on
    both; the hub running its recorder, timeline, dispatcher (SMS through the Twilio
    stand-in, e-mail into a sink) and campaigns service."""
    async with TwilioApiStandIn(account_sid=ACCOUNT, auth_token=TOKEN) as api:
        sms = TwilioSmsSender(
            TwilioSmsConfig(
                account_sid=ACCOUNT,
                auth_token=TOKEN,
                public_base_url="https://hooks.example.com/switchboard",
                from_number="+18005550100",
                api_base_url=api.base_url,
                send_timeout_s=5,
            )
        )
        email = EmailSink()
        hub = bootstrap(hub_settings, senders={Channel.sms: sms, Channel.email: email})
        hub.email_sink = email  # type: ignore[attr-defined]
        history = hub.history()
        now = datetime.now(UTC)
        history.record_interactions(
            MessageReceived(
                channel=Channel.sms, party=p, provider_ref=f"SMin{p}", occurred_at=now, body="hi"
            )
            for p in PHONES
        )
        for phone in PHONES:
            history.link_address(
                customer_id_for(phone), email_of(phone), by="test", reason="the web form"
            )
        history.record_interactions(
            consent(channel, party, granted=True, ref=f"in-{party}")
            for phone in PHONES
            for channel, party in ((Channel.sms, phone), (Channel.email, email_of(phone)))
        )
        hub.timeline_follower().catch_up()
        hub.reachability_follower().catch_up()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_hub(hub, stop, services=("recorder", "timeline", "outbound", "campaigns"))
        )
        yield hub, api
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_the_hub_falls_back_to_email_after_twilio_rejects_a_number(
    running_hub: tuple[Hub, TwilioApiStandIn], hub_settings: Settings
) -> None:
    hub, twilio = running_hub
    email: EmailSink = hub.email_sink  # type: ignore[attr-defined]
    invalid, opted_out, fine = PHONES[:3], PHONES[3], PHONES[4:]
    twilio.invalid_numbers.update(invalid)
    service = hub.campaign_service()
    campaign = service.create("Winter sale", by="carla")
    service.set_audience(campaign.id, Segment(), ["sms", "email"])
    service.set_template(campaign.id, "sms", "en", body="Winter sale: 20% off, {{ address }}")
    service.set_template(
        campaign.id, "email", "en", body="Winter sale: 20% off", subject="Winter sale"
    )
    starts = datetime.now(UTC) + timedelta(seconds=4)  # time to opt out after the plan
    service.set_schedule(
        campaign.id,
        starts_at=starts,
        ends_at=starts + timedelta(days=1),
        allowed_from="00:00",
        allowed_until="23:59",
        rate_limits={"sms": 10, "email": 10},
        fallback=True,
    )
    assert service.start(campaign.id, by="carla").sends == 6
    plan = service.plan_to_run(service.get(campaign.id))
    assert {s.channel for s in plan} == {"sms"} and all(s.route for s in plan)

    # One recipient opts out of SMS marketing after the plan was made.
    async with InteractionPublisher(
        hub_settings.kafka_bootstrap, topic=hub_settings.interactions_topic
    ) as publish:
        await publish.publish(consent(Channel.sms, opted_out, granted=False, ref="out-1"))
    history = hub.history(cached=False)
    await eventually(
        lambda: (
            history.get_customer(customer_id_for(opted_out)).has_consent("sms", "marketing")
            is False
        ),
        what="the opt-out recorded",
    )
    assert datetime.now(UTC) < starts, "the opt-out came after the first sends"

    await eventually(lambda: len(email.sent) >= 3, timeout=40, what="the three fallbacks sent")
    ledger = hub.outbound_ledger()
    ids = [send_id(campaign.id, customer_id_for(p), step) for p in PHONES for step in (0, 1)]

    def all_dispatched() -> bool:
        outcomes = ledger.outcomes(ids)
        return sum(o.state in ("sent", "failed") for o in outcomes.values()) == 9

    await eventually(all_dispatched, timeout=30, what="every send and fallback dispatched")
    commands = await committed_commands(hub.kafka, hub_settings.outbound_topic, expect=9)
    assert not duplicates(commands)
    steps = Counter((c.to, 0 if c.channel == Channel.sms else 1) for c, _, _ in commands)
    assert steps == Counter(
        {**{(p, 0): 1 for p in PHONES}, **{(email_of(p), 1): 1 for p in invalid}}
    )
    assert sorted(c.to for c in email.sent) == sorted(email_of(p) for p in invalid)
    assert sorted(m.to for m in twilio.messages.values()) == sorted(fine)
    outcomes = ledger.outcomes(ids)
    refusal = outcomes[send_id(campaign.id, customer_id_for(opted_out), 0)]
    assert (refusal.state, refusal.failure_kind) == ("failed", "refused")

    async def tracked() -> bool:
        figures = await asyncio.to_thread(service.tracking, campaign.id)
        return (figures.queued, figures.sent, figures.failed) == (6, 5, 1)

    await eventually(tracked, timeout=30, what="the funnel: reached by a fallback is sent")
