"""The WhatsApp, Messenger and Telegram senders against local stand-ins of Meta's Graph API and
the Telegram Bot API (tests/standins; they are not Meta or Telegram)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from channels.outbound import PermanentSendError, Recipient, SendRefused, TransientSendError
from channels.social import (
    MessengerConfig,
    MessengerSender,
    TelegramConfig,
    TelegramSender,
    WhatsAppConfig,
    WhatsAppSender,
)
from contracts import Channel, DeliveryStatus, MessageTemplate, SendMessage
from tests.standins.meta_graph import GraphStandIn
from tests.standins.telegram_bot_api import TelegramStandIn

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WA_ID = "4915112345678"
PSID = "6543210987654321"
TOKEN = "EAAG-standin-token"
PAGE_TOKEN = "EAAG-standin-page-token"
BOT_TOKEN = "7000000001:AAF-standin"


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    with GraphStandIn(
        access_token=TOKEN, phone_number_id="106540352242922", page_access_token=PAGE_TOKEN
    ) as stand_in:
        yield stand_in


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    with TelegramStandIn(bot_token=BOT_TOKEN) as stand_in:
        yield stand_in


def whatsapp_config(graph: GraphStandIn, *, token: str = TOKEN) -> WhatsAppConfig:
    return WhatsAppConfig(
        app_secret="s",
        verify_token="v",
        access_token=token,
        phone_number_id=graph.phone_number_id,
        graph_base_url=graph.base_url,
    )


@pytest.fixture
async def whatsapp(graph: GraphStandIn) -> AsyncIterator[WhatsAppSender]:
    sender = WhatsAppSender(whatsapp_config(graph), clock=lambda: NOW)
    yield sender
    await sender.close()


def inbound(channel: Channel, ago: timedelta | None) -> Recipient:
    last = {} if ago is None else {channel.value: NOW - ago}
    return Recipient(address=f"{channel}:x", last_inbound_at=last)


def whatsapp_text(body: str = "Ihr Paket kommt morgen.", **extra: object) -> SendMessage:
    return SendMessage(channel=Channel.whatsapp, to=f"whatsapp:+{WA_ID}", body=body, **extra)


async def test_whatsapp_text_inside_the_window_is_sent_and_returns_the_wamid(
    whatsapp: WhatsAppSender, graph: GraphStandIn
) -> None:
    receipt = await whatsapp.send(
        whatsapp_text(in_reply_to="wamid.CUSTOMER1"), inbound(Channel.whatsapp, timedelta(hours=2))
    )
    assert receipt.provider_ref.startswith("wamid.")
    assert receipt.status is DeliveryStatus.sent
    assert receipt.details == {"wa_id": WA_ID}
    (request,) = graph.whatsapp_sends
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"body": "Ihr Paket kommt morgen.", "preview_url": False},
        "context": {"message_id": "wamid.CUSTOMER1"},
    }


@pytest.mark.parametrize(
    "ago", [timedelta(hours=24, minutes=1), None], ids=["24h01", "never-wrote"]
)
async def test_whatsapp_free_text_outside_the_window_is_refused_and_nothing_is_sent(
    whatsapp: WhatsAppSender, graph: GraphStandIn, ago: timedelta | None
) -> None:
    with pytest.raises(SendRefused, match="only approved templates may be sent"):
        await whatsapp.send(whatsapp_text(), inbound(Channel.whatsapp, ago))
    assert graph.requests == []


async def test_whatsapp_template_outside_the_window_is_sent(
    whatsapp: WhatsAppSender, graph: GraphStandIn
) -> None:
    command = SendMessage(
        channel=Channel.whatsapp,
        to=f"whatsapp:+{WA_ID}",
        template=MessageTemplate(
            name="order_update", language="de", parameters=["4711", "Freitag"]
        ),
    )
    receipt = await whatsapp.send(command, inbound(Channel.whatsapp, None))
    assert receipt.provider_ref.startswith("wamid.")
    (request,) = graph.whatsapp_sends
    assert request.json["type"] == "template"
    assert request.json["template"] == {
        "name": "order_update",
        "language": {"code": "de"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "4711"},
                    {"type": "text", "text": "Freitag"},
                ],
            }
        ],
    }


async def test_whatsapp_refusals_map_to_permanent_and_throttling_to_transient(
    whatsapp: WhatsAppSender, graph: GraphStandIn
) -> None:
    inside = inbound(Channel.whatsapp, timedelta(minutes=5))
    graph.unknown_recipients.add(WA_ID)
    with pytest.raises(PermanentSendError, match="not in allowed list") as refused:
        await whatsapp.send(whatsapp_text(), inside)
    assert refused.value.code == "131030"
    graph.unknown_recipients.clear()
    graph.rate_limit_next(code=130429, status=429)
    with pytest.raises(TransientSendError, match="Rate limit hit") as throttled:
        await whatsapp.send(whatsapp_text(), inside)
    assert throttled.value.code == "130429"
    # Graph reports app-level throttling with HTTP 400: the code, not the status, says "later".
    graph.rate_limit_next(code=4, status=400)
    with pytest.raises(TransientSendError) as app_limit:
        await whatsapp.send(whatsapp_text(), inside)
    assert app_limit.value.code == "4"
    assert (await whatsapp.send(whatsapp_text(), inside)).provider_ref.startswith("wamid.")


async def test_whatsapp_wrong_token_is_permanent(graph: GraphStandIn) -> None:
    sender = WhatsAppSender(whatsapp_config(graph, token="expired"), clock=lambda: NOW)
    try:
        with pytest.raises(PermanentSendError, match="Invalid OAuth access token") as refused:
            await sender.send(whatsapp_text(), inbound(Channel.whatsapp, timedelta(minutes=1)))
        assert refused.value.code == "190"
    finally:
        await sender.close()


async def test_unreachable_provider_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = WhatsAppConfig(
        app_secret="s",
        verify_token="v",
        access_token=TOKEN,
        phone_number_id="1",
        graph_base_url=f"http://127.0.0.1:{port}",
    )
    sender = WhatsAppSender(config, clock=lambda: NOW)
    try:
        with pytest.raises(TransientSendError, match="could not be reached"):
            await sender.send(whatsapp_text(), inbound(Channel.whatsapp, timedelta(minutes=1)))
    finally:
        await sender.close()


def messenger_sender(graph: GraphStandIn, *, tag: str | None = None) -> MessengerSender:
    config = MessengerConfig(
        app_secret="s",
        verify_token="v",
        page_access_token=PAGE_TOKEN,
        graph_base_url=graph.base_url,
        message_tag=tag,
    )
    return MessengerSender(config, clock=lambda: NOW)


async def test_messenger_reply_inside_the_window_and_tagged_outside_it(graph: GraphStandIn) -> None:
    command = SendMessage(channel=Channel.messenger, to=f"messenger:{PSID}", body="Danke!")
    untagged, tagged = messenger_sender(graph), messenger_sender(graph, tag="HUMAN_AGENT")
    try:
        receipt = await untagged.send(command, inbound(Channel.messenger, timedelta(hours=1)))
        assert receipt.provider_ref.startswith("m_")
        with pytest.raises(SendRefused, match="no message tag is configured"):
            await untagged.send(command, inbound(Channel.messenger, timedelta(days=2)))
        await tagged.send(command, inbound(Channel.messenger, timedelta(days=2)))
        graph.unknown_recipients.add(PSID)
        with pytest.raises(PermanentSendError, match="No matching user found") as refused:
            await tagged.send(command, inbound(Channel.messenger, timedelta(hours=1)))
        assert refused.value.code == "100"
    finally:
        await untagged.close()
        await tagged.close()
    first, second, _refused = graph.messenger_sends
    assert first.headers["authorization"] == f"Bearer {PAGE_TOKEN}"
    assert first.json == {
        "recipient": {"id": PSID},
        "message": {"text": "Danke!"},
        "messaging_type": "RESPONSE",
    }
    assert second.json["messaging_type"] == "MESSAGE_TAG" and second.json["tag"] == "HUMAN_AGENT"


async def test_telegram_replies_and_errors(telegram: TelegramStandIn) -> None:
    sender = TelegramSender(
        TelegramConfig(bot_token=BOT_TOKEN, secret_token="x", api_base_url=telegram.base_url)
    )
    chat = 123456789
    anyone = Recipient(address=f"telegram:{chat}")
    reply = SendMessage(
        channel=Channel.telegram, to=f"telegram:{chat}", body="Hallo!", in_reply_to=f"{chat}:41"
    )
    try:
        assert (await sender.send(reply, anyone)).provider_ref == f"{chat}:1"
        assert (await sender.send(reply, anyone)).provider_ref == f"{chat}:2"
        telegram.flood_next(retry_after=3)
        with pytest.raises(TransientSendError, match="retry after 3"):
            await sender.send(reply, anyone)
        telegram.blocked_chats.add(chat)
        with pytest.raises(PermanentSendError, match="bot was blocked by the user") as blocked:
            await sender.send(reply, anyone)
        assert blocked.value.code == "403"
        telegram.unknown_chats.add(42)
        unknown = SendMessage(channel=Channel.telegram, to="telegram:42", body="Hallo!")
        with pytest.raises(PermanentSendError, match="chat not found"):
            await sender.send(unknown, Recipient(address="telegram:42"))
        template_only = SendMessage(
            channel=Channel.telegram,
            to=f"telegram:{chat}",
            template=MessageTemplate(name="x", language="de"),
        )
        with pytest.raises(SendRefused, match="needs a body"):
            await sender.send(template_only, anyone)
    finally:
        await sender.close()
    first = telegram.sends[0]
    assert first.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert first.json == {
        "chat_id": chat,
        "text": "Hallo!",
        "reply_parameters": {"message_id": 41, "allow_sending_without_reply": True},
    }
    assert len(telegram.sends) == 5  # the template-only command never left
