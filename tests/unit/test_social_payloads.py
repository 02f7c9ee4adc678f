"""Provider payloads -> contract events, for each documented shape (pure, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.social.messenger import messenger_events
from channels.social.payload import MalformedPayload
from channels.social.telegram import telegram_events
from channels.social.whatsapp import whatsapp_events
from contracts import Channel, DeliveryStatus, DeliveryStatusChanged, MessageReceived
from tests.standins.meta_graph import (
    messenger_delivery,
    messenger_message,
    messenger_receipt,
    whatsapp_delivery,
    whatsapp_message,
    whatsapp_status,
)
from tests.standins.telegram_bot_api import telegram_message_update

WA_ID = "4915112345678"
T = 1_764_061_200  # 2025-11-25 09:00:00 UTC
AT = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
PSID = "6543210987654321"


def one_whatsapp_message(**content: object) -> MessageReceived:
    kind = next(iter(content)) if content else "text"
    (event,) = whatsapp_events(
        whatsapp_delivery(
            messages=[
                whatsapp_message(wa_id=WA_ID, wamid="wamid.M1", timestamp=T, kind=kind, **content)
            ]
        )
    )
    assert isinstance(event, MessageReceived)
    return event


def test_whatsapp_text_message() -> None:
    (event,) = whatsapp_events(
        whatsapp_delivery(
            messages=[
                whatsapp_message(
                    wa_id=WA_ID,
                    wamid="wamid.HBgLMTU1",
                    timestamp=T,
                    text={"body": "Wo ist meine Bestellung?"},
                    context={"from": "15550783881", "id": "wamid.OURS"},
                )
            ]
        )
    )
    assert isinstance(event, MessageReceived)
    assert event.channel is Channel.whatsapp
    assert event.party == "whatsapp:+4915112345678"
    assert event.provider_ref == "wamid.HBgLMTU1"
    assert event.occurred_at == AT
    assert event.body == "Wo ist meine Bestellung?"
    assert event.endpoint == "15550783881"
    assert event.in_reply_to == "wamid.OURS"


@pytest.mark.parametrize(
    ("content", "body"),
    [
        (
            {
                "image": {
                    "id": "1479537139650973",
                    "mime_type": "image/jpeg",
                    "sha256": "x",
                    "caption": "Kaputt",
                }
            },
            "[image] Kaputt (media 1479537139650973)",
        ),
        (
            {"document": {"id": "77", "filename": "rechnung.pdf", "mime_type": "application/pdf"}},
            "[document] rechnung.pdf (media 77)",
        ),
        (
            {"audio": {"id": "88", "mime_type": "audio/ogg; codecs=opus", "voice": True}},
            "[audio] (media 88)",
        ),
        (
            {
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "yes", "title": "Ja, bitte"},
                }
            },
            "[button reply] Ja, bitte",
        ),
        (
            {
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": "r2", "title": "Rückgabe"},
                }
            },
            "[list reply] Rückgabe",
        ),
        ({"button": {"payload": "STOP", "text": "Stop promotions"}}, "[button] Stop promotions"),
        (
            {
                "location": {
                    "latitude": 52.52,
                    "longitude": 13.405,
                    "name": "Alex",
                    "address": "Berlin",
                }
            },
            "[location] Alex Berlin (52.52, 13.405)",
        ),
        ({"reaction": {"message_id": "wamid.OURS", "emoji": "👍"}}, "[reaction] 👍"),
        ({"reaction": {"message_id": "wamid.OURS"}}, "[reaction removed]"),
        (
            {"system": {"body": "User changed number", "type": "user_changed_number"}},
            "[system] User changed number",
        ),
        (
            {
                "contacts": [
                    {"name": {"formatted_name": "Bob B"}, "phones": [{"phone": "+49 30 1234"}]}
                ]
            },
            "[contacts] Bob B +49 30 1234",
        ),
        ({"unsupported": {"type": "poll"}}, "[unsupported]"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_whatsapp_non_text_messages_read_as_a_bracketed_kind(content: dict, body: str) -> None:
    event = one_whatsapp_message(**content)
    assert event.body == body
    if "reaction" in content:
        assert event.in_reply_to == "wamid.OURS"


def test_whatsapp_statuses_name_the_report_and_the_message() -> None:
    failed_error = {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {
            "details": "More than 24 hours have passed since the customer last replied."
        },
    }
    events = whatsapp_events(
        whatsapp_delivery(
            statuses=[
                whatsapp_status(wamid="wamid.OUT1", status="read", recipient_id=WA_ID, timestamp=T),
                whatsapp_status(
                    wamid="wamid.OUT2",
                    status="failed",
                    recipient_id=WA_ID,
                    timestamp=T,
                    errors=[failed_error],
                ),
                whatsapp_status(
                    wamid="wamid.OUT3", status="deleted", recipient_id=WA_ID, timestamp=T
                ),
            ]
        )
    )
    read, failed = events  # "deleted" is not a delivery status of ours: skipped
    assert isinstance(read, DeliveryStatusChanged) and isinstance(failed, DeliveryStatusChanged)
    assert (read.status, read.message_ref, read.provider_ref) == (
        DeliveryStatus.read,
        "wamid.OUT1",
        "wamid.OUT1:read",
    )
    assert read.party == "whatsapp:+4915112345678"
    assert read.occurred_at == AT
    assert failed.status is DeliveryStatus.failed
    assert failed.error_code == "131047"
    assert failed.error_message == (
        "Re-engagement message - More than 24 hours have passed since the customer last replied."
    )


def test_whatsapp_messages_and_statuses_of_several_changes_keep_their_order() -> None:
    first = whatsapp_delivery(
        messages=[whatsapp_message(wa_id=WA_ID, wamid="wamid.1", timestamp=T, text={"body": "a"})]
    )
    second = whatsapp_delivery(
        statuses=[whatsapp_status(wamid="wamid.2", status="sent", recipient_id=WA_ID, timestamp=T)]
    )
    first["entry"][0]["changes"].append({"field": "account_alerts", "value": {}})
    first["entry"].append(second["entry"][0])
    assert [e.provider_ref for e in whatsapp_events(first)] == ["wamid.1", "wamid.2:sent"]


def test_messenger_message_with_text_and_attachment() -> None:
    (event,) = messenger_events(
        messenger_delivery(
            messenger_message(
                psid=PSID,
                mid="m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM",
                timestamp_ms=T * 1000 + 250,
                text="Foto vom Paket",
                attachments=[
                    {"type": "image", "payload": {"url": "https://scontent.example/x.jpg"}}
                ],
                reply_to={"mid": "m_OURS"},
            )
        )
    )
    assert isinstance(event, MessageReceived)
    assert event.channel is Channel.messenger
    assert event.party == f"messenger:{PSID}"
    assert event.provider_ref == "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"
    assert event.occurred_at == datetime(2025, 11, 25, 9, 0, 0, 250000, tzinfo=UTC)
    assert event.body == "Foto vom Paket [image]"
    assert event.endpoint == "1234567890"
    assert event.in_reply_to == "m_OURS"


def test_messenger_echoes_of_our_own_messages_are_skipped() -> None:
    echo = messenger_message(
        psid="1234567890", mid="m_ECHO", timestamp_ms=T * 1000, text="Hi", is_echo=True, app_id=1
    )
    assert messenger_events(messenger_delivery(echo)) == []


def test_messenger_delivery_receipt_reports_each_mid_delivered() -> None:
    events = messenger_events(
        messenger_delivery(
            messenger_receipt("delivery", psid=PSID, watermark=T * 1000, mids=["m_A", "m_B"])
        )
    )
    assert [(e.message_ref, e.provider_ref, e.status) for e in events] == [
        ("m_A", "m_A:delivered", DeliveryStatus.delivered),
        ("m_B", "m_B:delivered", DeliveryStatus.delivered),
    ]
    assert all(e.occurred_at == AT for e in events)  # no timestamp: the watermark says when


def test_messenger_read_receipt_is_kept_as_a_watermark_status() -> None:
    (event,) = messenger_events(
        messenger_delivery(messenger_receipt("read", psid=PSID, watermark=T * 1000))
    )
    assert isinstance(event, DeliveryStatusChanged)
    assert event.status is DeliveryStatus.read
    assert event.message_ref == f"watermark:{T * 1000}"
    assert event.provider_ref == f"{PSID}:read:watermark:{T * 1000}"


def test_messenger_postback_and_unknown_items() -> None:
    postback = {
        "sender": {"id": PSID},
        "recipient": {"id": "1"},
        "timestamp": T * 1000,
        "postback": {"title": "Talk to a human", "payload": "HUMAN"},
    }
    optin = {
        "sender": {"id": PSID},
        "recipient": {"id": "1"},
        "timestamp": T * 1000,
        "optin": {"ref": "x"},
    }
    (event,) = messenger_events(messenger_delivery(postback, optin))
    assert isinstance(event, MessageReceived)
    assert event.body == "[postback] Talk to a human"
    assert event.provider_ref == f"postback:{PSID}:{T * 1000}"  # stable across redeliveries


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"object": "instagram", "entry": []}, "object: expected 'page'"),
        (
            messenger_delivery({"recipient": {"id": "1"}, "timestamp": 1, "message": {"mid": "m"}}),
            "entry[0].messaging[0].sender: missing",
        ),
        (
            messenger_delivery({"sender": {"id": PSID}, "timestamp": 1, "message": {"text": "x"}}),
            "entry[0].messaging[0].message.mid: missing",
        ),
        (
            messenger_delivery({"sender": {"id": "abc"}, "timestamp": 1, "message": {"mid": "m"}}),
            "entry[0].messaging[0]: party",
        ),
    ],
)
def test_malformed_messenger_payload_names_the_field(payload: dict, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason.replace("[", r"\[").replace("]", r"\]")):
        messenger_events(payload)


def test_telegram_text_message() -> None:
    update = telegram_message_update(
        update_id=10, chat_id=123456789, message_id=42, date=T, text="Hallo Bot"
    )
    update["message"]["reply_to_message"] = {
        "message_id": 41,
        "chat": {"id": 123456789, "type": "private"},
        "date": T,
    }
    (event,) = telegram_events(update)
    assert isinstance(event, MessageReceived)
    assert event.channel is Channel.telegram
    assert event.party == "telegram:123456789"
    assert event.provider_ref == "123456789:42"
    assert event.occurred_at == AT
    assert event.body == "Hallo Bot"
    assert event.in_reply_to == "123456789:41"


def test_telegram_photo_group_message_and_edit() -> None:
    photo = telegram_message_update(
        update_id=11,
        chat_id=-1001234567890,
        message_id=7,
        date=T,
        caption="Schaden",
        photo=[{"file_id": "a", "width": 90, "height": 90}],
    )
    (event,) = telegram_events(photo)
    assert event.body == "[photo] Schaden"
    assert event.party == "telegram:-1001234567890"
    edited = telegram_message_update(update_id=12, chat_id=5, message_id=9, date=T, text="Neu")
    edited["edited_message"] = edited.pop("message") | {"edit_date": T + 60}
    (edit,) = telegram_events(edited)
    assert isinstance(edit, MessageReceived)
    assert edit.provider_ref == f"5:9:edited:{T + 60}"
    assert edit.body == "[edited] Neu"
    assert edit.in_reply_to == "5:9"


def test_telegram_updates_other_than_messages_are_ignored() -> None:
    assert (
        telegram_events(
            {"update_id": 13, "channel_post": {"message_id": 1, "chat": {"id": -100}, "date": T}}
        )
        == []
    )
    assert telegram_events({"update_id": 14, "callback_query": {"id": "4382", "data": "x"}}) == []


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"message": {}}, "update_id: missing"),
        ({"update_id": 1, "message": {"message_id": 1, "date": T}}, "message.chat: missing"),
        (
            {"update_id": 1, "message": {"message_id": "1", "date": T, "chat": {"id": 5}}},
            "message.message_id: expected an integer",
        ),
        (
            {"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5}}},
            "message.date: missing",
        ),
    ],
)
def test_malformed_telegram_update_names_the_field(update: dict, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        telegram_events(update)
