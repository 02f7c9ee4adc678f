"""A campaign end to end on the real broker: started through the service, run by the hub's
campaigns service, sent by the outbound dispatcher through a stand-in of Twilio's API, and
tracked — each recipient once, a pause felt within a second, an opt-out honoured."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channels.publishing import InteractionPublisher
from channels.sms import TwilioSmsConfig, TwilioSmsSender
from contracts import (
    Channel,
    ConsentChanged,
    DeliveryStatus,
    DeliveryStatusChanged,
    Direction,
    MessageReceived,
)
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.settings import Settings
from services.campaigns.audience import Segment
from services.campaigns.service import plan_order
from services.domain import customer_id_for
from tests.helpers import eventually
from tests.standins.twilio_api import TwilioApiStandIn

pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

ACCOUNT = "AC" + "7" * 32
TOKEN = "twilio-auth-token-for-campaigns"
PHONES = [f"+4930500001{i:02d}" for i in range(50)]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RATE = 10  # sends a second: 50 take five seconds, time enough to pause in between


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The hub's parts are tested on PostgreSQL elsewhere; this is about the flow."""
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
async def twilio_api() -> AsyncIterator[TwilioApiStandIn]:
    async with TwilioApiStandIn(account_sid=ACCOUNT, auth_token=TOKEN) as api:
        yield api


@pytest.fixture
async def hub(hub_settings: Settings, twilio_api: TwilioApiStandIn) -> AsyncIterator[Hub]:
    """Fifty customers who opted in to SMS marketing, and the hub running its recorder,
    timeline, outbound dispatcher (SMS through the stand-in) and campaigns service."""
    sender = TwilioSmsSender(
        TwilioSmsConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            public_base_url="https://hooks.example.com/switchboard",
            from_number="+18005550100",
            api_base_url=twilio_api.base_url,
            send_timeout_s=5,
        )
    )
    hub = bootstrap(hub_settings, senders={Channel.sms: sender})
    events: list = []
    for i, phone in enumerate(PHONES):
        events.append(
            MessageReceived(
                channel=Channel.sms, party=phone, provider_ref=f"SMin{i}", occurred_at=T0, body="hi"
            )
        )
        events.append(consent(phone, granted=True, ref=f"web{i}", at=T0))
    hub.history().record_interactions(events)
    hub.timeline_follower().catch_up()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_hub(hub, stop, services=("recorder", "timeline", "outbound", "campaigns"))
    )
    yield hub
    stop.set()
    await asyncio.wait_for(task, 60)


def consent(phone: str, *, granted: bool, ref: str, at: datetime) -> ConsentChanged:
    return ConsentChanged(
        channel=Channel.sms,
        direction=Direction.inbound,
        party=phone,
        provider_ref=ref,
        occurred_at=at,
        purpose="marketing",
        granted=granted,
        source="web-form",
    )


async def test_a_campaign_is_run_by_the_hub_paused_resumed_and_tracked(
    hub: Hub, hub_settings: Settings, twilio_api: TwilioApiStandIn
) -> None:
    service = hub.campaign_service()
    campaign = service.create("Spring sale", by="carla")
    service.set_audience(campaign.id, Segment(), ["sms"])
    service.set_template(campaign.id, "sms", "en", body="Spring sale: 20% off, {{ address }}")
    service.set_schedule(
        campaign.id,
        ends_at=datetime.now(UTC) + timedelta(days=1),
        allowed_from="00:00",
        allowed_until="23:59",
        rate_limits={"sms": RATE},
    )
    started = service.start(campaign.id, by="carla")
    assert started.sends == 50
    order = [
        s.address for s in sorted(service.plan_to_run(service.get(campaign.id)), key=plan_order)
    ]
    early, late = order[0], order[-1]

    def sent() -> int:
        return len(twilio_api.messages)

    await eventually(lambda: sent() >= 10, timeout=30, what="the hub to pick the campaign up")
    service.pause(campaign.id, by="carla", reason="check the figures")
    await asyncio.sleep(1.0)  # the runner polls every 0.2 s; the dispatcher drains in ms
    paused_at = sent()
    await asyncio.sleep(1.5)
    assert sent() == paused_at < 50, "sends went on after the pause"

    # Meanwhile: the first recipient answers, gets a delivery report and then opts out; the
    # last one (not sent yet) opts out too.
    first = twilio_api.message_to(early)
    now = datetime.now(UTC)
    async with InteractionPublisher(
        hub_settings.kafka_bootstrap, topic=hub_settings.interactions_topic
    ) as publish:
        await publish.publish(
            MessageReceived(
                channel=Channel.sms,
                party=early,
                provider_ref="SMreply1",
                occurred_at=now,
                body="Do you have it in blue?",
            )
        )
        await publish.publish(
            DeliveryStatusChanged(
                channel=Channel.sms,
                party=early,
                provider_ref=f"{first.sid}:delivered",
                occurred_at=now,
                status=DeliveryStatus.delivered,
                message_ref=first.sid,
            )
        )
        await publish.publish(consent(early, granted=False, ref="webout1", at=now))
        await publish.publish(consent(late, granted=False, ref="webout2", at=now))
    history = hub.history(cached=False)
    await eventually(
        lambda: (
            history.get_customer(customer_id_for(late)).has_consent("sms", "marketing") is False
        ),
        what="the late opt-out recorded",
    )

    resumed_at = time.monotonic()
    service.resume(campaign.id, by="carla")
    await eventually(lambda: sent() == 49, timeout=30, what="the rest sent")
    assert time.monotonic() - resumed_at < 15
    await eventually(
        lambda: service.get(campaign.id).state == "completed", what="the campaign completed"
    )
    per_phone = Counter(m.to for m in twilio_api.messages.values())
    assert set(per_phone) == set(PHONES) - {late}
    assert set(per_phone.values()) == {1}, "a recipient got two messages"

    async def tracked() -> bool:
        figures = await asyncio.to_thread(service.tracking, campaign.id)
        return (
            figures.sent,
            figures.failed,
            figures.delivered,
            figures.replied,
            figures.opted_out,
        ) == (49, 1, 1, 1, 1)

    await eventually(tracked, timeout=30, what="the funnel")
    figures = await asyncio.to_thread(service.tracking, campaign.id)
    assert figures.queued == 50 and figures.produced == 50
