"""The campaigns page in a real browser: a campaign manager follows a running campaign and
pauses it; an agent is not offered the page.

The API runs on loopback over a SQLite store (no Kafka: the page reads and steps campaigns,
it does not send).  The campaign was started with the service and its sends recorded in the
outbound ledger at known moments after the start, as the dispatcher would; Debian's chromium
signs in on the console with the session cookie.

``SWITCHBOARD_SCREENSHOTS=docs`` also saves ``campaign.png``, the screenshot the docs show.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import pytest

from channels.publishing import InteractionPublisher
from contracts import (
    Channel,
    ConsentChanged,
    DeliveryStatus,
    DeliveryStatusChanged,
    Direction,
    MessageReceived,
)
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.campaigns.audience import Segment
from services.domain import customer_id_for
from services.domain.outbound import OutboundCommand
from tests.browser.chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOOPBACK_HOSTS,
    needs_chromium,
    playwright_api,
    served_on_loopback,
)

pytestmark = needs_chromium
PHONES = [f"+4930500001{i:02d}" for i in range(12)]
WAIT_MS = 20_000
expect = playwright_api.expect


def a_running_campaign(hub: Hub) -> str:
    """Twelve opted-in SMS customers; a campaign to all of them, started, with ten sent and
    one failed over eight minutes, five delivered, two replies and an opt-out."""
    history = hub.history()
    now = datetime.now(UTC)
    history.record_interactions(
        [
            event
            for i, phone in enumerate(PHONES)
            for event in (
                MessageReceived(
                    channel=Channel.sms,
                    party=phone,
                    provider_ref=f"SMin{i}",
                    occurred_at=now,
                    body="hello",
                ),
                ConsentChanged(
                    channel=Channel.sms,
                    direction=Direction.inbound,
                    party=phone,
                    provider_ref=f"web{i}",
                    occurred_at=now,
                    purpose="marketing",
                    granted=True,
                    source="web-form",
                ),
            )
        ]
    )
    hub.timeline_follower().catch_up()
    service = hub.campaign_service()
    campaign = service.create("Spring sale", by="carla")
    service.set_audience(campaign.id, Segment(), ["sms"])
    service.set_template(campaign.id, "sms", "en", body="Hi! 20% off this week. STOP to opt out")
    service.set_schedule(
        campaign.id,
        ends_at=now + timedelta(days=2),
        allowed_from="00:00",
        allowed_until="23:59",
        rate_limits={"sms": 1},
    )
    service.start(campaign.id, by="carla")
    started = service.get(campaign.id).started_at
    assert started is not None
    sends = {c: command for c, _, command in service.plans.keys(campaign.id)}

    ledger = hub.outbound_ledger()
    later: list = []
    for i, phone in enumerate(PHONES[:11]):
        at = started + timedelta(seconds=20 + 45 * i)
        record = ledger.claim(sends[customer_id_for(phone)], channel="sms", to=phone)
        if i == 6:
            record.trigger_event(
                OutboundCommand.Failed,
                reason="blocked",
                code="30004",
                kind="rejected",
                timestamp=at,
            )
        else:
            record.trigger_event(OutboundCommand.Sent, provider_ref=f"SMout{i}", timestamp=at)
        ledger.save(record)
        if i in (0, 1, 2, 4, 5):
            later.append(
                DeliveryStatusChanged(
                    channel=Channel.sms,
                    party=phone,
                    provider_ref=f"SMout{i}:delivered",
                    occurred_at=at + timedelta(seconds=40),
                    status=DeliveryStatus.delivered,
                    message_ref=f"SMout{i}",
                )
            )
        if i in (1, 4):
            later.append(
                MessageReceived(
                    channel=Channel.sms,
                    party=phone,
                    provider_ref=f"SMreply{i}",
                    occurred_at=at + timedelta(minutes=2),
                    body="In blue?",
                )
            )
    later.append(
        ConsentChanged(
            channel=Channel.sms,
            direction=Direction.inbound,
            party=PHONES[2],
            provider_ref="webout2",
            occurred_at=started + timedelta(minutes=4),
            purpose="marketing",
            granted=False,
            source="web-form",
        )
    )
    history.record_interactions(later)
    hub.timeline_follower().catch_up()
    return str(campaign.id)


@pytest.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(
    browser: playwright_api.Browser, url: str, name: str, errors: list[str]
) -> playwright_api.Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()

    async def loopback_only(route: playwright_api.Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK_HOSTS:
            await route.continue_()
        else:
            errors.append(f"left loopback: {route.request.url}")
            await route.abort("internetdisconnected")

    await page.route("**/*", loopback_only)
    page.on("pageerror", lambda error: errors.append(f"{name}: page error: {error}"))
    page.on(
        "console",
        lambda m: errors.append(f"{name}: console: {m.text}") if m.type == "error" else None,
    )
    await page.goto(f"{url}/console/")
    await page.fill("#signin-username", name)
    await page.fill("#signin-password", f"{name}-password-long-enough")
    await page.click("#signin-submit")
    return page


async def test_a_campaign_manager_follows_the_funnel_and_pauses_the_campaign(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    settings = Settings(data_dir=tmp_path / "var", store=f"sqlite:///{tmp_path / 'history.db'}")
    hub = bootstrap(settings)
    users = hub.user_directory()
    users.register("boss", roles=["admin"])
    users.register("carla", roles=["campaign_manager"], password="carla-password-long-enough")
    users.register("ann", roles=["agent"], password="ann-password-long-enough")
    campaign_id = a_running_campaign(hub)
    api = hub.api(view=hub.timeline_view(), publisher=InteractionPublisher("127.0.0.1:1"))
    errors: list[str] = []

    async with served_on_loopback(api) as url:
        # A campaign manager does no desk work: signing in takes her to the campaigns.
        carla = await signed_in(browser, url, "carla", errors)
        row = carla.locator(f'#campaigns tr[data-campaign-id="{campaign_id}"]')
        await expect(row).to_contain_text("Spring sale", timeout=WAIT_MS)
        await expect(row).to_contain_text("running", timeout=WAIT_MS)
        await expect(row).to_contain_text("11 of 12 sent", timeout=WAIT_MS)

        await row.get_by_role("link", name="Spring sale").click()
        await expect(carla.locator("#campaign-title")).to_have_text("Spring sale", timeout=WAIT_MS)
        funnel = carla.locator("#funnel-table tbody")
        expected = {"queued": 12, "sent": 10, "delivered": 5, "replied": 2, "failed": 1}
        for stage, count in {**expected, "opted_out": 1}.items():
            await expect(funnel.locator(f'tr[data-stage="{stage}"] td').first).to_have_text(
                str(count), timeout=WAIT_MS
            )
        chart = carla.get_by_role("img", name="Funnel over time")
        await expect(chart).to_be_visible(timeout=WAIT_MS)
        sent = chart.locator('polyline[data-series="sent"]')
        await expect(sent).to_have_count(1, timeout=WAIT_MS)
        # A point a minute since the start (how many depends on where the minutes fall):
        # the line has one vertex per point.
        points = int(await chart.get_attribute("data-points") or 0)
        assert points >= 5
        assert len((await sent.get_attribute("points") or "").split()) == points
        for series in ("delivered", "replied", "failed", "opted_out"):
            await expect(chart.locator(f'polyline[data-series="{series}"]')).to_have_count(
                1, timeout=WAIT_MS
            )

        if shots := os.environ.get("SWITCHBOARD_SCREENSHOTS"):
            Path(shots).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
            await carla.screenshot(path=str(Path(shots) / "campaign.png"), full_page=True)

        await carla.get_by_role("button", name="Pause campaign").click()
        await expect(carla.locator("#campaign-state")).to_have_text("paused", timeout=WAIT_MS)
        await expect(carla.get_by_role("button", name="Resume campaign")).to_be_enabled(
            timeout=WAIT_MS
        )
        await expect(carla.get_by_role("button", name="Pause campaign")).to_be_disabled(
            timeout=WAIT_MS
        )
        assert hub.campaign_service().get(UUID(campaign_id)).state == "paused"

        # Cancelling asks first; keeping it changes nothing.
        await carla.get_by_role("button", name="Cancel campaign…").click()
        await expect(carla.locator("#cancel-confirm")).to_be_visible(timeout=WAIT_MS)
        await carla.get_by_role("button", name="Keep it running").click()
        await expect(carla.locator("#cancel-confirm")).to_be_hidden(timeout=WAIT_MS)
        await expect(carla.locator("#campaign-state")).to_have_text("paused", timeout=WAIT_MS)

        # An agent's console has no link to the campaigns, and the page itself says no.
        ann = await signed_in(browser, url, "ann", errors)
        await expect(ann.locator("#whoami")).to_contain_text("ann", timeout=WAIT_MS)
        await expect(ann.locator("#campaigns-link")).to_be_hidden(timeout=WAIT_MS)
        assert await ann.get_by_role("link", name="Campaigns").count() == 0
        await ann.goto(f"{url}/console/campaigns.html")
        await expect(ann.locator("#alert")).to_contain_text(
            "campaign managers and admins", timeout=WAIT_MS
        )
        # Closed while the hub still answers: the campaign page polls every few seconds.
        for page in (carla, ann):
            await page.context.close()

    assert errors == []
