"""The agent console in a real browser: the phone rings, the right agent sees who is calling.

The hub runs for real (Kafka, recorder, timeline, desk, outbound dispatcher, API on loopback),
with the Twilio REST stand-in as the SMS provider.  Two agents sign in with Debian's chromium:
a simulated ringing call (Twilio's signed webhook) pops on ann's page and not on ben's; ann opens
the caller, adds a note, replies by SMS (the stand-in receives it) and resolves the
conversation; neither page logs a console error.

``SWITCHBOARD_SCREENSHOTS=docs make test`` (or this file alone) also saves the screenshots the
README shows.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from tests.browser.chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOOPBACK_HOSTS,
    needs_chromium,
    playwright_api,
)
from tests.gateways import gateway
from tests.helpers import eventually
from tests.standins.twilio_api import TwilioApiStandIn, signed_twilio_request

pytestmark = needs_chromium
ACCOUNT = "AC" + "1" * 32
TWILIO_TOKEN = "twilio-auth-token-for-console-tests"
OUR_NUMBER = "+493050000000"
CALLER = "+4930123456789"
ROUTING = """
default_queue: support
offer_timeout_s: 20
message_offer_timeout_s: 60
queues:
  support:
    languages: [en, de]
agents:
  ann: {queues: [support], languages: [en, de]}
  ben: {queues: [support], languages: [en]}
"""
WAIT_MS = 20_000


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@dataclass
class AgentPage:
    name: str
    page: playwright_api.Page
    errors: list[str] = field(default_factory=list)
    left_loopback: list[str] = field(default_factory=list)

    async def sign_in(self, url: str) -> None:
        await self.page.goto(f"{url}/console/")
        await self.page.fill("#signin-username", self.name)
        await self.page.fill("#signin-password", f"{self.name}-password-long-enough")
        await self.page.click("#signin-submit")
        live = self.page.locator("#live-indicator")
        await playwright_api.expect(live).to_have_text("live", timeout=WAIT_MS)

    async def set_presence(self, presence: str) -> None:
        await self.page.select_option("#presence", presence)

    def pop(self, call_id: str) -> playwright_api.Locator:
        return self.page.locator(f'#pops article.pop[data-call-id="{call_id}"]')


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


async def agent_page(browser: playwright_api.Browser, name: str) -> AgentPage:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    agent = AgentPage(name, page)

    async def loopback_only(route: playwright_api.Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK_HOSTS:
            await route.continue_()
        else:
            agent.left_loopback.append(route.request.url)
            await route.abort("internetdisconnected")

    await page.route("**/*", loopback_only)
    page.on("pageerror", lambda error: agent.errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            agent.errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    return agent


async def test_a_ringing_call_pops_on_the_right_agents_page_and_she_works_it(
    hub_settings: Settings, tmp_path: Path, browser: playwright_api.Browser
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    async with TwilioApiStandIn(account_sid=ACCOUNT, auth_token=TWILIO_TOKEN) as twilio:
        settings = hub_settings.model_copy(
            update={
                "routing_config": routing,
                "public_base_url": "https://hooks.example.com/sb",
                "twilio_account_sid": ACCOUNT,
                "twilio_auth_token": SecretStr(TWILIO_TOKEN),
                "twilio_from_number": OUR_NUMBER,
                "twilio_api_base_url": twilio.base_url,
            }
        )
        hub = bootstrap(settings)
        users = hub.user_directory()
        users.register("boss", roles=["admin"])
        for name in ("ann", "ben"):
            users.register(name, roles=["agent"], password=f"{name}-password-long-enough")
        users.register("sue", roles=["supervisor"], password="sue-password-long-enough")
        # The caller wrote before: a customer with an SMS address and an open conversation.
        hub.history().record_interactions(
            [
                MessageReceived(
                    channel=Channel.sms,
                    party=CALLER,
                    endpoint=OUR_NUMBER,
                    provider_ref="SM-earlier",
                    occurred_at=datetime.now(UTC),
                    body="Where is my invoice?",
                )
            ]
        )
        services = ("api", "recorder", "timeline", "desk", "outbound", "router")
        async with (
            gateway(settings, services, hub=hub) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            ann = await agent_page(browser, "ann")
            ben = await agent_page(browser, "ben")
            await ann.sign_in(url)
            await ben.sign_in(url)
            await ann.set_presence("available")
            await ben.set_presence("away")
            await playwright_api.expect(ann.page.locator("#presence")).to_have_value("available")

            async def ring(call_sid: str) -> str:
                params = {"CallSid": call_sid, "From": CALLER, "To": OUR_NUMBER}
                path = "/webhooks/twilio/voice"
                headers = signed_twilio_request(
                    TWILIO_TOKEN, f"{settings.public_base_url}{path}", params
                )
                answer = await http.post(path, data=params, headers=headers)
                assert answer.status_code == 200, answer.text
                return answer.text

            # The page sends the presence change on its own time: call until it is in force
            # (each try a new call; a queued one pops for both, and is not what is checked).
            calls = iter(range(1, 100))

            async def routed_to(agent: str) -> str | None:
                sid = f"CA-console-{next(calls)}"
                return sid if f"<Identity>{agent}</Identity>" in await ring(sid) else None

            async def call_for(agent: str) -> str:
                found: list[str] = []

                async def routed() -> bool:
                    if sid := await routed_to(agent):
                        found.append(sid)
                    return bool(found)

                await eventually(routed, interval=0.2, what=f"a call to be routed to {agent}")
                return found[0]

            first = await call_for("ann")
            pop = ann.pop(first)
            await playwright_api.expect(pop).to_be_visible(timeout=WAIT_MS)
            await playwright_api.expect(pop).to_have_attribute("data-state", "ringing")
            await playwright_api.expect(pop).to_contain_text(CALLER)

            # ben's page is live but got nothing; a call for him shows there, ann's does not.
            await ann.set_presence("busy")
            await ben.set_presence("available")

            second = await call_for("ben")
            await playwright_api.expect(ben.pop(second)).to_be_visible(timeout=WAIT_MS)
            assert await ben.pop(first).count() == 0

            # A WhatsApp message is offered to ben, the one agent free: he accepts it on his
            # page, and his list of conversations shows it.
            async with InteractionPublisher(
                settings.kafka_bootstrap, topic=settings.interactions_topic
            ) as publisher:
                await publisher.publish(
                    MessageReceived(
                        channel=Channel.whatsapp,
                        party="whatsapp:+4930999000111",
                        provider_ref="wamid.console-1",
                        occurred_at=datetime.now(UTC),
                        body="Is my order on its way?",
                    )
                )
            offer = ben.page.locator('#offer-list li[data-contact-ref="wamid.console-1"]')
            await playwright_api.expect(offer).to_contain_text(
                "WhatsApp from whatsapp:+4930999000111", timeout=WAIT_MS
            )
            if shots := os.environ.get("SWITCHBOARD_SCREENSHOTS"):
                Path(shots).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
                await ben.page.locator("#work").screenshot(path=str(Path(shots) / "offer.png"))
            await offer.locator('button[data-action="accept"]').click()
            await playwright_api.expect(offer).to_have_count(0)
            await playwright_api.expect(ben.page.locator("#work-status")).to_contain_text(
                "is yours", timeout=WAIT_MS
            )
            await playwright_api.expect(ben.page.locator("#work-list li")).to_have_count(
                1, timeout=WAIT_MS
            )
            assert await ann.page.locator("#work-list li").count() == 0

            # ann opens the caller from the pop and works the contact.
            await pop.locator('button[data-action="open"]').click()
            customer = ann.page.locator("#customer")
            await playwright_api.expect(customer).to_have_attribute(
                "data-customer-id", str(hub.history().customer_for_address(CALLER))
            )
            await ann.page.fill("#note-body", "Called about the invoice; resent it.")
            await ann.page.click("#note-submit")
            await playwright_api.expect(ann.page.locator("#timeline")).to_contain_text(
                "resent it", timeout=WAIT_MS
            )

            await ann.page.select_option("#reply-channel", "sms")
            await ann.page.fill("#reply-body", "Your invoice is on its way.")
            await ann.page.click("#reply-submit")
            await eventually(
                lambda: any(
                    m.to == CALLER and m.body == "Your invoice is on its way."
                    for m in twilio.messages.values()
                ),
                what="the reply to reach the Twilio stand-in",
            )

            resolve = ann.page.locator('#conversations li button[data-action="resolve"]')
            await playwright_api.expect(resolve.first).to_be_visible(timeout=WAIT_MS)
            await resolve.first.click()
            await playwright_api.expect(
                ann.page.locator('#conversations li[data-status="resolved"]')
            ).to_have_count(1, timeout=WAIT_MS)

            # The supervisor sees the floor: the queue, and today's figures per agent.
            sue = await agent_page(browser, "sue")
            await sue.sign_in(url)
            await sue.page.click("#supervisor-link")
            agents = sue.page.locator("#agents tbody")
            await playwright_api.expect(agents).to_contain_text("ann", timeout=WAIT_MS)
            await playwright_api.expect(sue.page.locator("#queues tbody")).to_contain_text(
                "support"
            )
            await playwright_api.expect(sue.page.locator("#channels tbody")).to_contain_text(
                "voice"
            )

            if shots := os.environ.get("SWITCHBOARD_SCREENSHOTS"):
                Path(shots).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
                await ann.page.screenshot(path=str(Path(shots) / "console.png"), full_page=True)
                await sue.page.screenshot(path=str(Path(shots) / "supervisor.png"), full_page=True)

            for agent in (ann, ben, sue):
                assert agent.errors == [], agent.name
                assert agent.left_loopback == [], agent.name
