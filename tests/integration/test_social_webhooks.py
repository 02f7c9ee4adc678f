"""WhatsApp, Messenger and Telegram webhooks -> real Kafka -> recorder -> customer timeline.

The FastAPI app with the social routers runs in-process (httpx + ASGITransport); deliveries are
signed as Meta and Telegram document it (tests/standins). The recorder is the real one, on the
real broker (``running_recorder`` and ``publisher`` come from tests/conftest.py). Assertions are
on the customer history (the system of record) and the timeline. The last test adds the outbound
dispatcher and the WhatsApp sender against the local Graph API stand-in: a customer writes, an
agent's reply goes out, and both are on the timeline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from channels.publishing import InteractionPublisher
from channels.social import (
    MessengerConfig,
    TelegramConfig,
    WhatsAppConfig,
    WhatsAppSender,
    messenger_router,
    telegram_router,
    whatsapp_router,
)
from contracts import Channel, DeliveryStatus, SendMessage, dump_command, status_advances
from projections.timeline import TimelineEntry
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.outbound.dispatcher import OutboundDispatcher
from services.recorder import Recorder
from tests.helpers import eventually, recorded_refs, timeline_when_shown
from tests.standins.meta_graph import (
    GraphStandIn,
    messenger_delivery,
    messenger_message,
    messenger_receipt,
    signed_meta_request,
    whatsapp_delivery,
    whatsapp_message,
    whatsapp_status,
)
from tests.standins.telegram_bot_api import telegram_message_update, telegram_request

WA_ID = "4915112345678"
WHATSAPP = f"whatsapp:+{WA_ID}"
PSID = "6543210987654321"
CHAT = 123456789
T = int(time.time()) - 600  # ten minutes ago: inside WhatsApp's window for the reply test

WHATSAPP_CONFIG = WhatsAppConfig(
    app_secret="wa-app-secret",
    verify_token="wa-verify",
    access_token="EAAG-standin-token",
    phone_number_id="106540352242922",
)
MESSENGER_CONFIG = MessengerConfig(
    app_secret="page-app-secret", verify_token="m-verify", page_access_token="EAAG-page"
)
TELEGRAM_CONFIG = TelegramConfig(bot_token="7000000001:AAF-standin", secret_token="tg-Secret_1")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    # The webhooks do not touch the store; the store itself is tested on both backends elsewhere.
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
async def webhooks(publisher: InteractionPublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(whatsapp_router(publisher=publisher, config=WHATSAPP_CONFIG))
    app.include_router(messenger_router(publisher=publisher, config=MESSENGER_CONFIG))
    app.include_router(telegram_router(publisher=publisher, config=TELEGRAM_CONFIG))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        yield client


async def post_whatsapp(
    client: httpx.AsyncClient, payload: Any, *, secret: str = WHATSAPP_CONFIG.app_secret
) -> httpx.Response:
    raw, headers = signed_meta_request(payload, secret)
    return await client.post("/webhooks/whatsapp", content=raw, headers=headers)


async def post_messenger(client: httpx.AsyncClient, payload: Any) -> httpx.Response:
    raw, headers = signed_meta_request(payload, MESSENGER_CONFIG.app_secret)
    return await client.post("/webhooks/messenger", content=raw, headers=headers)


async def post_telegram(
    client: httpx.AsyncClient, update: Any, *, token: str | None = TELEGRAM_CONFIG.secret_token
) -> httpx.Response:
    raw, headers = telegram_request(update, token)
    return await client.post("/webhooks/telegram", content=raw, headers=headers)


async def timeline_of(settings: Settings, address: str, count: int) -> list[TimelineEntry]:
    """The customer's timeline once it shows ``count`` entries, in recording order."""
    entries = await timeline_when_shown(settings, address, count)
    return sorted(entries, key=lambda e: e.position)


def text(wamid: str, body: str, at: int = T) -> dict[str, Any]:
    return whatsapp_message(wa_id=WA_ID, wamid=wamid, timestamp=at, text={"body": body})


def status(wamid: str, reported: str, at: int = T) -> dict[str, Any]:
    return whatsapp_status(wamid=wamid, status=reported, recipient_id=WA_ID, timestamp=at)


async def test_whatsapp_messages_and_status_reach_the_timeline(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    image = whatsapp_message(
        wa_id=WA_ID,
        wamid="wamid.IMG1",
        timestamp=T + 1,
        kind="image",
        image={"id": "1479537139650973", "mime_type": "image/jpeg", "caption": "Der Karton"},
    )
    delivery = whatsapp_delivery(messages=[text("wamid.TXT1", "Mein Paket ist beschädigt"), image])
    answer = await post_whatsapp(webhooks, delivery)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"published": 2}
    answer = await post_whatsapp(
        webhooks, whatsapp_delivery(statuses=[status("wamid.OUT1", "delivered", T + 2)])
    )
    assert answer.status_code == 200, answer.text

    entries = await timeline_of(hub_settings, WHATSAPP, 3)
    assert [(e.type, e.provider_ref, e.summary) for e in entries] == [
        ("message.received.v1", "wamid.TXT1", "Mein Paket ist beschädigt"),
        ("message.received.v1", "wamid.IMG1", "[image] Der Karton (media 1479537139650973)"),
        ("delivery.status.v1", "wamid.OUT1:delivered", "whatsapp message wamid.OUT1 delivered"),
    ]
    assert {e.channel for e in entries} == {"whatsapp"}


async def test_messenger_message_and_delivery_receipt_reach_the_timeline(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    message = messenger_message(psid=PSID, mid="m_IN1", timestamp_ms=T * 1000, text="Hallo?")
    echo = messenger_message(
        psid=PSID, mid="m_ECHO", timestamp_ms=T * 1000, text="Ours", is_echo=True
    )
    receipt = messenger_receipt("delivery", psid=PSID, watermark=T * 1000 + 5, mids=["m_OUT1"])
    answer = await post_messenger(webhooks, messenger_delivery(message, echo, receipt))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"published": 2}  # the echo of our own message is not recorded

    entries = await timeline_of(hub_settings, f"messenger:{PSID}", 2)
    assert [(e.type, e.provider_ref, e.summary) for e in entries] == [
        ("message.received.v1", "m_IN1", "Hallo?"),
        ("delivery.status.v1", "m_OUT1:delivered", "messenger message m_OUT1 delivered"),
    ]


async def test_telegram_message_reaches_the_timeline(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    update = telegram_message_update(
        update_id=900, chat_id=CHAT, message_id=42, date=T, text="Guten Tag"
    )
    answer = await post_telegram(webhooks, update)
    assert answer.status_code == 200, answer.text
    (entry,) = await timeline_of(hub_settings, f"telegram:{CHAT}", 1)
    assert (entry.type, entry.provider_ref, entry.summary) == (
        "message.received.v1",
        f"{CHAT}:42",
        "Guten Tag",
    )


async def test_forged_unauthenticated_or_malformed_deliveries_publish_nothing(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    delivery = whatsapp_delivery(messages=[text("wamid.FORGED", "Send me the refund")])
    assert (await post_whatsapp(webhooks, delivery, secret="guessed")).status_code == 403
    raw, headers = signed_meta_request(delivery, WHATSAPP_CONFIG.app_secret)
    tampered = raw.replace(b"the refund", b"all refunds")
    assert (
        await webhooks.post("/webhooks/whatsapp", content=tampered, headers=headers)
    ).status_code == 403
    no_signature = await webhooks.post(
        "/webhooks/messenger", content=raw, headers={"Content-Type": "application/json"}
    )
    assert no_signature.status_code == 403
    update = telegram_message_update(update_id=1, chat_id=CHAT, message_id=1, date=T, text="x")
    assert (await post_telegram(webhooks, update, token="wrong")).status_code == 403
    assert (await post_telegram(webhooks, update, token=None)).status_code == 403
    malformed = await post_whatsapp(webhooks, {"object": "whatsapp_business_account"})
    assert malformed.status_code == 400
    assert "entry: missing" in malformed.json()["detail"]
    bad_status = whatsapp_delivery(
        statuses=[{"id": "wamid.X", "status": "read", "recipient_id": WA_ID}]
    )
    answer = await post_whatsapp(webhooks, bad_status)
    assert answer.status_code == 400
    assert "statuses[0].timestamp: missing" in answer.json()["detail"]

    # One genuine delivery afterwards, for the same customer: it is the only record consumed.
    assert (
        await post_whatsapp(webhooks, whatsapp_delivery(messages=[text("wamid.OK", "hi")]))
    ).status_code == 200
    await eventually(
        lambda: recorded_refs(hub_settings)["message.received.v1|wamid.OK"] == 1,
        what="the genuine delivery recorded",
    )
    assert running_recorder.stats.consumed == 1
    assert "message.received.v1|wamid.FORGED" not in recorded_refs(hub_settings)


async def test_the_same_delivery_twice_is_recorded_once(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    delivery = whatsapp_delivery(messages=[text("wamid.TWICE", "Hallo")])
    update = telegram_message_update(update_id=7, chat_id=CHAT, message_id=8, date=T, text="Hi")
    for _ in range(2):  # the provider did not see our 200 and retried
        assert (await post_whatsapp(webhooks, delivery)).status_code == 200
        assert (await post_telegram(webhooks, update)).status_code == 200
    await eventually(lambda: running_recorder.stats.consumed >= 4, what="4 records consumed")
    counts = recorded_refs(hub_settings)
    assert counts["message.received.v1|wamid.TWICE"] == 1
    assert counts[f"message.received.v1|{CHAT}:8"] == 1
    assert running_recorder.stats.duplicates == 2


async def test_statuses_out_of_order_are_all_recorded_and_the_furthest_is_kept(
    hub_settings: Settings, running_recorder: Recorder, webhooks: httpx.AsyncClient
) -> None:
    async def report(reported: str, at: int) -> None:
        delivery = whatsapp_delivery(statuses=[status("wamid.OOO", reported, at)])
        answer = await post_whatsapp(webhooks, delivery)
        assert answer.status_code == 200, answer.text

    view = bootstrap(hub_settings).timeline_view()
    # Meta delivered "delivered" before "sent", each in its own POST.
    await report("delivered", T + 5)
    await report("sent", T + 1)
    entries = await timeline_of(hub_settings, WHATSAPP, 2)
    assert [e.provider_ref for e in entries] == ["wamid.OOO:delivered", "wamid.OOO:sent"]
    # Both are history; the status view keeps the furthest, so the late "sent" changes nothing.
    assert not status_advances(DeliveryStatus.delivered, DeliveryStatus.sent)
    kept = view.delivery_status("wamid.OOO")
    assert kept is not None and kept.status is DeliveryStatus.delivered
    await report("read", T + 9)
    await timeline_of(hub_settings, WHATSAPP, 3)
    kept = view.delivery_status("wamid.OOO")
    assert kept is not None and kept.status is DeliveryStatus.read


@pytest.fixture
async def dispatcher(
    start_dispatcher,
) -> AsyncIterator[tuple[OutboundDispatcher, GraphStandIn]]:
    with GraphStandIn(
        access_token=WHATSAPP_CONFIG.access_token,
        phone_number_id=WHATSAPP_CONFIG.phone_number_id,
        page_access_token=MESSENGER_CONFIG.page_access_token,
    ) as graph:
        config = replace(WHATSAPP_CONFIG, graph_base_url=graph.base_url)
        dispatcher = await start_dispatcher(
            {Channel.whatsapp: WhatsAppSender(config)}, retry_delays=(0.05,)
        )
        yield dispatcher, graph


async def test_inbound_whatsapp_message_then_the_agents_reply_goes_out_and_is_recorded(
    hub_settings: Settings,
    running_recorder: Recorder,
    webhooks: httpx.AsyncClient,
    dispatcher: tuple[OutboundDispatcher, GraphStandIn],
) -> None:
    outbound, graph = dispatcher
    question = whatsapp_delivery(messages=[text("wamid.Q1", "Wann kommt mein Paket?")])
    assert (await post_whatsapp(webhooks, question)).status_code == 200
    await eventually(
        lambda: recorded_refs(hub_settings)["message.received.v1|wamid.Q1"] == 1,
        what="the customer's question recorded (it opens the 24-hour window)",
    )
    reply = SendMessage(
        channel=Channel.whatsapp,
        to=WHATSAPP,
        body="Morgen zwischen 9 und 12.",
        in_reply_to="wamid.Q1",
    )
    # Someone who never wrote on WhatsApp: free text is refused, nothing reaches Meta.
    cold = SendMessage(channel=Channel.whatsapp, to="whatsapp:+4915199999999", body="Angebot!")
    producer = AIOKafkaProducer(bootstrap_servers=hub_settings.kafka_bootstrap)
    await producer.start()
    try:
        for command in (reply, cold):
            await producer.send_and_wait(
                hub_settings.outbound_topic, dump_command(command), key=command.to.encode()
            )
    finally:
        await producer.stop()

    await eventually(lambda: outbound.stats.consumed == 2, what="both commands handled")
    (sent,) = graph.whatsapp_sends
    assert sent.json["to"] == WA_ID and sent.json["text"]["body"] == "Morgen zwischen 9 und 12."
    assert sent.json["context"] == {"message_id": "wamid.Q1"}
    entries = await timeline_of(hub_settings, WHATSAPP, 2)
    assert [(e.type, e.direction) for e in entries] == [
        ("message.received.v1", "inbound"),
        ("message.sent.v1", "outbound"),
    ]
    assert entries[1].provider_ref.startswith("wamid.STANDIN")
    await eventually(
        lambda: recorded_refs(hub_settings)[f"delivery.status.v1|{cold.command_id}:failed"] == 1,
        what="the refused cold message recorded as failed",
    )
    (refusal,) = await timeline_of(hub_settings, "whatsapp:+4915199999999", 1)
    assert "24-hour customer-service window" in (refusal.payload.get("error_message") or "")
