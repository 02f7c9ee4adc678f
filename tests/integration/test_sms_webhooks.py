"""Twilio Messaging, both ways, on the real broker: webhooks -> recorder -> timeline, and
send commands -> dispatcher -> TwilioSmsSender -> a local stand-in of Twilio's REST API,
whose signed status callbacks come back through the webhook.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from channels.outbound import (
    PermanentSendError,
    Recipient,
    SendRefused,
    TransientSendError,
)
from channels.publishing import InteractionPublisher
from channels.sms import TwilioSmsConfig, TwilioSmsSender, twilio_sms_router
from contracts import Channel, DeliveryStatus, SendMessage
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.domain import customer_id_for
from services.outbound.dispatcher import OutboundDispatcher
from services.recorder import Recorder
from tests.helpers import eventually, recorded_refs, records_in, timeline_follower
from tests.standins.twilio_api import TwilioApiStandIn, signed_twilio_request

# twilio 9.13's async HTTP client still uses aiohttp's deprecated BasicAuth; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

ACCOUNT = "AC" + "5" * 32
TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://hooks.example.com/switchboard"
LOCAL = "http://127.0.0.1:8080"
CUSTOMER = "+14155552671"
HOTLINE = "+18005550100"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Channel tests need one store; the store itself is tested on both elsewhere."""
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
async def twilio_api() -> AsyncIterator[TwilioApiStandIn]:
    async with TwilioApiStandIn(account_sid=ACCOUNT, auth_token=TOKEN) as api:
        yield api


@pytest.fixture
def sms_config(twilio_api: TwilioApiStandIn) -> TwilioSmsConfig:
    return TwilioSmsConfig(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_base_url=PUBLIC,
        from_number=HOTLINE,
        help_text="Reply STOP to opt out. Call +1 800 555 0100.",
        api_base_url=twilio_api.base_url,
        send_timeout_s=5,
    )


@pytest.fixture
async def webhooks(
    publisher: InteractionPublisher, sms_config: TwilioSmsConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """Posts to the SMS webhooks as the reverse proxy in front of the app would."""
    app = FastAPI()
    app.include_router(twilio_sms_router(publisher=publisher, config=sms_config))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL) as c:
        yield c


async def post(client: httpx.AsyncClient, params: dict[str, str], **headers: str):
    path = "/webhooks/twilio/sms"
    signed = signed_twilio_request(TOKEN, PUBLIC + path, params)
    return await client.post(path, data=params, headers={**signed, **headers})


def sms(sid: str, body: str, sender: str = CUSTOMER) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT,
        "MessageSid": sid,
        "SmsSid": sid,
        "From": sender,
        "To": HOTLINE,
        "Body": body,
        "NumMedia": "0",
    }


def consent(settings: Settings, address: str) -> dict[str, bool]:
    history = bootstrap(settings).history()
    try:
        return dict(history.get_customer(customer_id_for(address)).consent)
    except Exception:
        return {}
    finally:
        history.close()


async def test_messages_and_keywords_reach_the_timeline_and_the_customers_consent(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    assert (await post(webhooks, sms("SM1", "Where is my parcel?"))).status_code == 200
    help_answer = await post(webhooks, sms("SM2", " help\n"))
    assert ET.fromstring(help_answer.content).findtext("Message") == (
        "Reply STOP to opt out. Call +1 800 555 0100."
    )
    stop_answer = await post(webhooks, sms("SM3", "Stop"))
    assert list(ET.fromstring(stop_answer.content)) == []  # Twilio confirms the opt-out itself

    follower = timeline_follower(hub_settings)
    view = bootstrap(hub_settings).timeline_view()

    def five_entries() -> bool:
        follower.catch_up()
        customer = view.customer_for_address(CUSTOMER)
        return customer is not None and len(view.timeline(customer)) == 5

    await eventually(five_entries, what="three messages and two consent changes")
    entries = view.timeline(view.customer_for_address(CUSTOMER))  # type: ignore[arg-type]
    summaries = sorted(e.summary for e in entries)
    assert summaries == sorted(
        [
            "Where is my parcel?",
            "help",
            "Stop",
            "Opted out of service on sms via sms-keyword",
            "Opted out of marketing on sms via sms-keyword",
        ]
    )
    await eventually(
        lambda: consent(hub_settings, CUSTOMER) == {"sms:service": False, "sms:marketing": False},
        what="both consents withdrawn in the customer history",
    )
    assert (await post(webhooks, sms("SM4", "UNSTOP"))).status_code == 200
    await eventually(
        lambda: consent(hub_settings, CUSTOMER) == {"sms:service": True, "sms:marketing": False},
        what="service consent restored, marketing still withdrawn",
    )


async def test_same_delivery_twice_is_recorded_once(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    for token in ("retry-1", "retry-2", None):
        headers = {"I-Twilio-Idempotency-Token": token} if token else {}
        assert (await post(webhooks, sms("SM10", "QUIT"), **headers)).status_code == 200
    await eventually(lambda: running_recorder.stats.consumed >= 9, what="nine records consumed")
    counts = recorded_refs(hub_settings)
    assert counts["message.received.v1|SM10"] == 1
    assert counts["consent.changed.v1|SM10:consent:service"] == 1
    assert counts["consent.changed.v1|SM10:consent:marketing"] == 1


async def test_forged_signatures_are_refused_and_publish_nothing(
    hub_settings: Settings, webhooks: httpx.AsyncClient
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    params = sms("SM20", "STOP")
    url = PUBLIC + "/webhooks/twilio/sms"
    forged = signed_twilio_request("not-our-token", url, params)
    answer = await webhooks.post("/webhooks/twilio/sms", data=params, headers=forged)
    assert answer.status_code == 403
    genuine = signed_twilio_request(TOKEN, url, params)
    changed = {**params, "Body": "START"}
    answer = await webhooks.post("/webhooks/twilio/sms", data=changed, headers=genuine)
    assert answer.status_code == 403
    status = {"MessageSid": "SM20", "MessageStatus": "delivered", "To": CUSTOMER}
    answer = await webhooks.post("/webhooks/twilio/sms/status", data=status)
    assert answer.status_code == 403
    assert await records_in(hub_settings) == 0


async def test_sender_against_the_stand_in_reports_segments_and_maps_twilio_errors(
    twilio_api: TwilioApiStandIn, sms_config: TwilioSmsConfig
) -> None:
    sender = TwilioSmsSender(sms_config)
    try:
        body = "Ihre Bestellung ist unterwegs - Grüße 🚚 " * 3
        receipt = await sender.send(
            SendMessage(channel=Channel.sms, to=CUSTOMER, body=body), Recipient(address=CUSTOMER)
        )
        assert receipt.status is DeliveryStatus.queued
        assert receipt.details == {"segments": "2", "encoding": "UCS-2"}
        sent = twilio_api.messages[receipt.provider_ref]
        assert (sent.to, sent.sender, sent.body) == (CUSTOMER, HOTLINE, body)
        assert sent.status_callback == PUBLIC + "/webhooks/twilio/sms/status"

        twilio_api.invalid_numbers.add("+14155550123")
        with pytest.raises(PermanentSendError) as invalid:
            await sender.send(
                SendMessage(channel=Channel.sms, to="+14155550123", body="hi"),
                Recipient(address="+14155550123"),
            )
        assert invalid.value.code == "21211"
        twilio_api.unsubscribed.add("+14155550124")
        with pytest.raises(PermanentSendError) as unsubscribed:
            await sender.send(
                SendMessage(channel=Channel.sms, to="+14155550124", body="hi"),
                Recipient(address="+14155550124"),
            )
        assert unsubscribed.value.code == "21610"
        twilio_api.rate_limit_next()
        with pytest.raises(TransientSendError) as limited:
            await sender.send(
                SendMessage(channel=Channel.sms, to=CUSTOMER, body="hi"),
                Recipient(address=CUSTOMER),
            )
        assert limited.value.code == "20429"
        requests_so_far = len(twilio_api.requests)
        with pytest.raises(SendRefused):
            await sender.send(
                SendMessage(channel=Channel.sms, to=CUSTOMER, body="hi"),
                Recipient(address=CUSTOMER, consent={"sms:service": False}),
            )
        assert len(twilio_api.requests) == requests_so_far  # refused before any request
    finally:
        await sender.close()
    unreachable = TwilioSmsSender(
        TwilioSmsConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            public_base_url=PUBLIC,
            from_number=HOTLINE,
            api_base_url="http://127.0.0.1:1",
        )
    )
    try:
        with pytest.raises(TransientSendError):
            await unreachable.send(
                SendMessage(channel=Channel.sms, to=CUSTOMER, body="hi"),
                Recipient(address=CUSTOMER),
            )
    finally:
        await unreachable.close()


@pytest.fixture
async def dispatcher(start_dispatcher, sms_config: TwilioSmsConfig) -> OutboundDispatcher:
    return await start_dispatcher({Channel.sms: TwilioSmsSender(sms_config)}, retry_delays=(0.05,))


@pytest.fixture
def send_sms_command(send_command):
    async def send(body: str, to: str = CUSTOMER) -> SendMessage:
        return await send_command(SendMessage(channel=Channel.sms, to=to, body=body))

    return send


async def test_stop_then_an_outbound_sms_is_refused(
    hub_settings: Settings,
    running_recorder: Recorder,
    webhooks: httpx.AsyncClient,
    twilio_api: TwilioApiStandIn,
    dispatcher: OutboundDispatcher,
    send_sms_command,
) -> None:
    assert (await post(webhooks, sms("SM30", "stop "))).status_code == 200
    await eventually(
        lambda: consent(hub_settings, CUSTOMER).get("sms:service") is False,
        what="the opt-out in the customer history",
    )
    refused = await send_sms_command("Your invoice is ready")
    await eventually(lambda: dispatcher.stats.failed == 1, what="the refusal")
    assert twilio_api.requests == []  # nothing reached the provider
    await eventually(
        lambda: recorded_refs(hub_settings)[f"delivery.status.v1|{refused.command_id}:failed"] == 1,
        what="the refusal recorded as a failed delivery",
    )


async def test_a_sent_sms_stays_delivered_whatever_order_its_callbacks_arrive_in(
    hub_settings: Settings,
    running_recorder: Recorder,
    webhooks: httpx.AsyncClient,
    twilio_api: TwilioApiStandIn,
    dispatcher: OutboundDispatcher,
    send_sms_command,
) -> None:
    await send_sms_command("Your parcel left the depot")
    await eventually(lambda: dispatcher.stats.sent == 1, what="the send")
    sid = twilio_api.message_to(CUSTOMER).sid
    # Twilio's callbacks arrive out of order, one of them twice.
    answers = await twilio_api.fire_status_callbacks(
        sid,
        ["delivered", "sent", "delivered"],
        client=webhooks,
        proxy=lambda url: url.replace(PUBLIC, LOCAL),
    )
    assert [a.status_code for a in answers] == [204, 204, 204]
    await eventually(
        lambda: recorded_refs(hub_settings)[f"delivery.status.v1|{sid}:sent"] == 1,
        what="the late 'sent' report recorded",
    )
    counts = recorded_refs(hub_settings)
    assert counts[f"message.sent.v1|{sid}"] == 1
    assert counts[f"delivery.status.v1|{sid}:delivered"] == 1
    follower = timeline_follower(hub_settings)
    view = bootstrap(hub_settings).timeline_view()

    def delivered() -> bool:
        follower.catch_up()
        report = view.delivery_status(sid)
        return report is not None and report.status is DeliveryStatus.delivered

    await eventually(delivered, what="the view keeping 'delivered' over the late 'sent'")


async def test_stop_after_an_earlier_send_refuses_the_next_sms(
    hub_settings: Settings,
    running_recorder: Recorder,
    webhooks: httpx.AsyncClient,
    twilio_api: TwilioApiStandIn,
    dispatcher: OutboundDispatcher,
    send_sms_command,
) -> None:
    # The customer is known, and the dispatcher reads them for the first send ...
    assert (await post(webhooks, sms("SM39", "Is my parcel on its way?"))).status_code == 200
    await eventually(
        lambda: recorded_refs(hub_settings)["message.received.v1|SM39"] == 1,
        what="the customer's first message",
    )
    await send_sms_command("Your parcel left the depot")
    await eventually(lambda: dispatcher.stats.sent == 1, what="the first send")
    # ... then they text STOP.
    assert (await post(webhooks, sms("SM40", "STOP"))).status_code == 200
    await eventually(
        lambda: consent(hub_settings, CUSTOMER).get("sms:service") is False,
        what="the opt-out in the customer history",
    )
    await send_sms_command("We miss you already")
    await eventually(lambda: dispatcher.stats.consumed == 2, what="the second command handled")
    assert len(twilio_api.messages) == 1, "an SMS was sent to a customer who had texted STOP"
    assert dispatcher.stats.failed == 1
