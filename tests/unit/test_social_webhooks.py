"""The webhook edge without Kafka: signatures, handshake, secret token, 400s and 503s.

The publisher is a subclass of the real one that records events instead of sending them (or
fails, or never confirms), so these tests check what reaches "Kafka" and when we answer 2xx.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI

from channels.publishing import InteractionPublisher
from channels.social import TelegramConfig, WhatsAppConfig, telegram_router, whatsapp_router
from channels.social.meta import verify_meta_signature
from contracts import InteractionEvent
from tests.standins.meta_graph import signed_meta_request, whatsapp_delivery, whatsapp_message
from tests.standins.telegram_bot_api import telegram_request

SECRET = "c0ffee-app-secret"


class RecordingPublisher(InteractionPublisher):
    """Never started: ``publish`` records, or raises ``failure``, or waits for ever."""

    def __init__(self, *, failure: Exception | None = None, hang: bool = False) -> None:
        super().__init__("127.0.0.1:9", topic="unused")
        self.published: list[InteractionEvent] = []
        self.failure = failure
        self.hang = hang

    async def publish(self, event: InteractionEvent) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure
        self.published.append(event)


CONFIG = WhatsAppConfig(
    app_secret=SECRET, verify_token="let-me-in", access_token="t", phone_number_id="1065"
)
DELIVERY = whatsapp_delivery()  # a valid delivery with nothing in it


def test_signature_over_the_raw_body_is_accepted() -> None:
    raw, headers = signed_meta_request({"object": "page", "text": "Grüße/ä"}, SECRET)
    assert b"\\u00fc" in raw and b"\\/" in raw  # Meta's escaping, not Python's default JSON
    assert verify_meta_signature(raw, headers["X-Hub-Signature-256"], SECRET)


@pytest.mark.parametrize(
    ("body", "header_of", "secret"),
    [
        pytest.param(b'{"object":"page","x":2}', b'{"object":"page","x":1}', SECRET, id="tampered"),
        pytest.param(b'{"x":1}', b'{"x":1}', "another-app-secret", id="wrong-secret"),
    ],
)
def test_signature_of_other_bytes_or_another_secret_is_refused(
    body: bytes, header_of: bytes, secret: str
) -> None:
    _, headers = signed_meta_request(header_of, secret)
    assert not verify_meta_signature(body, headers["X-Hub-Signature-256"], SECRET)


@pytest.mark.parametrize(
    "header", [None, "", "sha1=abc", "sha256=", "sha256=zz", "sha256=é", "sha256"]
)
def test_missing_or_malformed_signature_header_is_refused(header: str | None) -> None:
    assert not verify_meta_signature(b"{}", header, SECRET)


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")


def _whatsapp_app(publisher: RecordingPublisher) -> FastAPI:
    app = FastAPI()
    app.include_router(whatsapp_router(publisher=publisher, config=CONFIG))
    return app


async def test_handshake_with_the_verify_token_echoes_the_challenge_as_plain_text() -> None:
    async with _client(_whatsapp_app(RecordingPublisher())) as client:
        answer = await client.get(
            "/webhooks/whatsapp",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": "let-me-in",
                "hub.challenge": "1158201444",
            },
        )
    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "let-me-in", "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
async def test_handshake_with_a_wrong_token_or_mode_is_forbidden(params: dict[str, str]) -> None:
    async with _client(_whatsapp_app(RecordingPublisher())) as client:
        answer = await client.get("/webhooks/whatsapp", params=params)
    assert answer.status_code == 403
    assert "1" != answer.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        signed_meta_request(DELIVERY, "another-app-secret")[1],
    ],
    ids=["missing", "forged", "wrong-secret"],
)
async def test_post_without_a_genuine_signature_is_forbidden_and_publishes_nothing(
    headers: dict[str, str],
) -> None:
    publisher = RecordingPublisher()
    raw, _ = signed_meta_request(DELIVERY, SECRET)
    async with _client(_whatsapp_app(publisher)) as client:
        answer = await client.post("/webhooks/whatsapp", content=raw, headers=headers)
    assert answer.status_code == 403
    assert "X-Hub-Signature-256" in answer.json()["detail"]
    assert publisher.published == []


@pytest.mark.parametrize("token", [None, "wrong-token", "s3cret-token-"])
async def test_telegram_update_without_the_secret_token_is_forbidden(token: str | None) -> None:
    publisher = RecordingPublisher()
    app = FastAPI()
    app.include_router(
        telegram_router(
            publisher=publisher, config=TelegramConfig(bot_token="1:x", secret_token="s3cret-token")
        )
    )
    raw, headers = telegram_request({"update_id": 1}, token)
    async with _client(app) as client:
        answer = await client.post("/webhooks/telegram", content=raw, headers=headers)
    assert answer.status_code == 403
    assert publisher.published == []


def test_configs_refuse_empty_secrets_that_any_forgery_would_match() -> None:
    with pytest.raises(ValueError, match="app_secret is empty"):
        WhatsAppConfig(app_secret="", verify_token="v", access_token="t", phone_number_id="1")
    with pytest.raises(ValueError, match="secret_token must be 1-256 characters"):
        TelegramConfig(bot_token="1:x", secret_token="")
    with pytest.raises(ValueError, match="secret_token must be 1-256 characters"):
        TelegramConfig(bot_token="1:x", secret_token="has space")


async def _post_whatsapp(
    publisher: RecordingPublisher, payload: object, *, config: WhatsAppConfig = CONFIG
) -> httpx.Response:
    app = FastAPI()
    app.include_router(whatsapp_router(publisher=publisher, config=config))
    raw, headers = signed_meta_request(payload, config.app_secret)
    async with _client(app) as client:
        return await client.post("/webhooks/whatsapp", content=raw, headers=headers)


TWO_MESSAGES = whatsapp_delivery(
    messages=[
        whatsapp_message(
            wa_id="4915112345678", wamid="wamid.A", timestamp=1_764_000_000, text={"body": "Hallo"}
        ),
        whatsapp_message(
            wa_id="4915112345678",
            wamid="wamid.B",
            timestamp=1_764_000_001,
            text={"body": "Noch da?"},
        ),
    ]
)


async def test_every_message_of_a_delivery_is_published_in_order_before_the_200() -> None:
    publisher = RecordingPublisher()
    answer = await _post_whatsapp(publisher, TWO_MESSAGES)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"published": 2}
    assert [e.provider_ref for e in publisher.published] == ["wamid.A", "wamid.B"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"entry": []}, "object: missing"),
        ({"object": "page", "entry": []}, "expected 'whatsapp_business_account'"),
        (
            {
                "object": "whatsapp_business_account",
                "entry": [{"changes": [{"field": "messages"}]}],
            },
            "entry[0].changes[0].value: missing",
        ),
        (
            whatsapp_delivery(
                messages=[{"from": "4915112345678", "id": "wamid.X", "type": "text"}]
            ),
            "entry[0].changes[0].value.messages[0].timestamp: missing",
        ),
        (
            whatsapp_delivery(
                messages=[
                    whatsapp_message(wa_id="49", wamid="wamid.X", timestamp=1, text={"body": "x"})
                ]
            ),
            "party",
        ),
    ],
    ids=["not-json", "array", "no-object", "other-object", "no-value", "no-timestamp", "bad-wa-id"],
)
async def test_malformed_delivery_is_answered_400_naming_what_is_wrong(
    payload: object, reason: str
) -> None:
    publisher = RecordingPublisher()
    answer = await _post_whatsapp(publisher, payload)
    assert answer.status_code == 400
    assert reason in answer.json()["detail"]
    assert publisher.published == []


async def test_changes_of_other_fields_are_acknowledged_and_ignored() -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"event": "X"}}]}],
    }
    publisher = RecordingPublisher()
    answer = await _post_whatsapp(publisher, payload)
    assert answer.status_code == 200
    assert publisher.published == []


@pytest.mark.parametrize(
    "publisher",
    [RecordingPublisher(failure=KafkaConnectionError()), RecordingPublisher(hang=True)],
    ids=["kafka-error", "no-confirmation"],
)
async def test_unconfirmed_publish_is_answered_503_so_that_meta_retries(
    publisher: RecordingPublisher,
) -> None:
    config = WhatsAppConfig(
        app_secret=SECRET,
        verify_token="v",
        access_token="t",
        phone_number_id="1065",
        publish_timeout_s=0.2,
    )
    answer = await _post_whatsapp(publisher, TWO_MESSAGES, config=config)
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert "retry" in answer.json()["detail"]


async def test_oversized_body_is_refused_before_its_signature_is_checked() -> None:
    publisher = RecordingPublisher()
    answer = await _post_whatsapp(publisher, b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert answer.status_code == 413
