"""The Twilio webhook edge without Kafka: signatures, public URLs, TwiML answers, 503s.

Requests are signed with Twilio's own RequestValidator. The publisher and the caller directory
are fakes that subclass the real interfaces, so they cannot drift from them.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from uuid import UUID

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from channels.publishing import InteractionPublisher
from channels.sms import TwilioSmsConfig, twilio_sms_router
from channels.twilio import TwilioSignature
from channels.voice import CallerDirectory, TwilioVoiceConfig, twilio_voice_router
from contracts import InteractionEvent
from tests.standins.twilio_api import signed_twilio_request

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://hooks.example.com/sb"
CUSTOMER = "+14155552671"
HOTLINE = "+18005550100"
KNOWN_CUSTOMER = UUID("6f1c0f8e-3f43-4a0e-9a55-3f0e2b1c9d77")


class FakePublisher(InteractionPublisher):
    """Confirms at once (or never, or fails) and keeps what it was given."""

    def __init__(self, *, behaviour: str = "confirm") -> None:
        super().__init__("127.0.0.1:9")
        self.behaviour = behaviour
        self.published: list[InteractionEvent] = []

    async def publish(self, event: InteractionEvent) -> None:
        if self.behaviour == "hang":
            await asyncio.sleep(30)
        if self.behaviour == "fail":
            raise ConnectionError("broker down")
        self.published.append(event)


class Directory(CallerDirectory):
    def customer_for_address(self, address: str) -> UUID | None:
        return KNOWN_CUSTOMER if address == CUSTOMER else None


def post(client: TestClient, path: str, params: dict[str, str], **headers: str):
    signed = signed_twilio_request(TOKEN, PUBLIC + path, params)
    return client.post(path, data=params, headers={**signed, **headers})


def call(sid: str = "CA1", caller: str = CUSTOMER) -> dict[str, str]:
    return {"CallSid": sid, "From": caller, "To": HOTLINE, "Direction": "inbound"}


def voice_app(publisher: FakePublisher, **config: object) -> TestClient:
    app = FastAPI()
    app.include_router(
        twilio_voice_router(
            publisher=publisher,
            config=TwilioVoiceConfig(auth_token=TOKEN, public_base_url=PUBLIC, **config),  # type: ignore[arg-type]
            directory=Directory(),
        )
    )
    return TestClient(app)


def sms_app(publisher: FakePublisher) -> TestClient:
    config = TwilioSmsConfig(
        account_sid="AC" + "0" * 32,
        auth_token=TOKEN,
        public_base_url=PUBLIC,
        from_number=HOTLINE,
        help_text="Call 0800 or reply STOP.",
    )
    app = FastAPI()
    app.include_router(twilio_sms_router(publisher=publisher, config=config))
    return TestClient(app)


# -- signatures and the public URL ------------------------------------------------------------


def echo_app(signature: TwilioSignature, **client: object) -> TestClient:
    app = FastAPI()

    @app.post("/webhooks/echo")
    async def echo(request: Request) -> dict[str, str]:
        return dict(await signature.verified_params(request))

    return TestClient(app, **client)  # type: ignore[arg-type]


def test_signature_is_checked_over_the_public_url_not_the_proxys_host() -> None:
    client = echo_app(TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC + "/"))
    params = {"CallSid": "CA1", "Body": "ünïcode & = signs"}
    # The request reaches us as http://testserver/webhooks/echo, as from a reverse proxy.
    good = post(client, "/webhooks/echo?x=1&y=2", params)
    assert good.status_code == 200, good.text
    assert good.json() == params
    own_url = signed_twilio_request(TOKEN, "http://testserver/webhooks/echo", params)
    assert client.post("/webhooks/echo", data=params, headers=own_url).status_code == 403


def test_the_query_string_is_part_of_what_is_signed() -> None:
    client = echo_app(TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC))
    params = {"CallSid": "CA1"}
    headers = signed_twilio_request(TOKEN, PUBLIC + "/webhooks/echo?From=%2B1415", params)
    assert (
        client.post("/webhooks/echo?From=%2B1415", data=params, headers=headers).status_code == 200
    )
    assert (
        client.post("/webhooks/echo?From=%2B1999", data=params, headers=headers).status_code == 403
    )


def test_an_app_mounted_under_a_root_path_signs_from_the_public_base() -> None:
    signature = TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC)
    client = echo_app(signature, root_path="/internal")
    params = {"CallSid": "CA1"}
    assert post(client, "/webhooks/echo", params).status_code == 200


@pytest.mark.parametrize(
    "forge",
    ["wrong token", "tampered value", "added param", "no signature", "empty signature"],
)
def test_forged_or_missing_signatures_are_refused(forge: str) -> None:
    client = echo_app(TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC))
    params = {"CallSid": "CA1", "From": CUSTOMER}
    headers = signed_twilio_request(TOKEN, PUBLIC + "/webhooks/echo", params)
    sent = dict(params)
    if forge == "wrong token":
        headers = signed_twilio_request("not-the-token", PUBLIC + "/webhooks/echo", params)
    elif forge == "tampered value":
        sent["From"] = "+14155550000"
    elif forge == "added param":
        sent["CallStatus"] = "completed"
    elif forge == "no signature":
        del headers["X-Twilio-Signature"]
    else:
        headers["X-Twilio-Signature"] = ""
    answer = client.post("/webhooks/echo", data=sent, headers=headers)
    assert answer.status_code == 403
    assert "X-Twilio-Signature" in answer.json()["detail"]


def test_hmac_sha256_signatures_by_a_shared_key() -> None:
    secret = "shared-key-secret"
    params = {"CallSid": "CA1"}
    url = PUBLIC + "/webhooks/echo"
    settings = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sk_1,algorithm=HMAC_SHA256"}
    signature = RequestValidator(secret).compute_signature(url, params, algorithm="HMAC_SHA256")
    headers = {"X-Twilio-Signature": signature, **settings}
    configured = echo_app(
        TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC, shared_key_secret=secret)
    )
    assert configured.post("/webhooks/echo", data=params, headers=headers).status_code == 200
    # The same signature without the shared key configured, or an auth-token SHA-1 signature
    # claiming to be SHA-256, is refused.
    unconfigured = echo_app(TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC))
    assert unconfigured.post("/webhooks/echo", data=params, headers=headers).status_code == 403
    sha1 = signed_twilio_request(TOKEN, url, params)
    assert (
        configured.post("/webhooks/echo", data=params, headers={**sha1, **settings}).status_code
        == 403
    )


def test_a_body_that_is_not_a_form_is_a_400() -> None:
    client = echo_app(TwilioSignature(auth_token=TOKEN, public_base_url=PUBLIC))
    headers = {"X-Twilio-Signature": "x"}
    answer = client.post("/webhooks/echo", json={"CallSid": "CA1"}, headers=headers)
    assert answer.status_code == 400 and "x-www-form-urlencoded" in answer.json()["detail"]
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    answer = client.post("/webhooks/echo", content=b"Body=%FF%FE", headers=headers)
    assert answer.status_code == 400 and "UTF-8" in answer.json()["detail"]


# -- voice: TwiML answers ---------------------------------------------------------------------


def test_incoming_call_is_enqueued_in_the_default_queue_with_a_queue_action() -> None:
    publisher = FakePublisher()
    answer = post(voice_app(publisher, default_queue="billing"), "/webhooks/twilio/voice", call())
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    enqueue = ET.fromstring(answer.content).find("Enqueue")
    assert enqueue is not None and enqueue.text == "billing"
    assert enqueue.get("action") == PUBLIC + "/webhooks/twilio/voice/queue"
    [ringing] = publisher.published
    assert (ringing.type, ringing.provider_ref, ringing.party) == (
        "call.ringing.v1",
        "CA1:ringing",
        CUSTOMER,
    )


def test_known_caller_rings_at_the_agents_client_with_the_customer_id() -> None:
    answer = post(
        voice_app(FakePublisher(), dial_client="agent_42"), "/webhooks/twilio/voice", call()
    )
    client = ET.fromstring(answer.content).find("Dial/Client")
    assert client is not None
    assert client.findtext("Identity") == "agent_42"
    parameters = {p.get("name"): p.get("value") for p in client.findall("Parameter")}
    assert parameters == {"call_sid": "CA1", "customer_id": str(KNOWN_CUSTOMER)}
    assert client.get("statusCallback") == PUBLIC + "/webhooks/twilio/voice/status"


def test_taskrouter_enqueue_carries_the_customer_in_the_task_attributes() -> None:
    answer = post(voice_app(FakePublisher(), workflow_sid="WW1"), "/webhooks/twilio/voice", call())
    enqueue = ET.fromstring(answer.content).find("Enqueue")
    assert enqueue is not None and enqueue.get("workflowSid") == "WW1"
    assert str(KNOWN_CUSTOMER) in (enqueue.findtext("Task") or "")


@pytest.mark.parametrize("caller", ["anonymous", "Restricted", "+266696687", "not-a-number"])
def test_a_withheld_callers_call_is_answered_and_recorded_under_the_call(caller: str) -> None:
    publisher = FakePublisher()
    answer = post(voice_app(publisher), "/webhooks/twilio/voice", call(caller=caller))
    assert answer.status_code == 200
    assert ET.fromstring(answer.content).find("Enqueue") is not None
    [ringing] = publisher.published
    assert ringing.type == "call.ringing.v1"
    assert ringing.party == "anonymous:CA1"


def test_leaving_the_queue_offers_voicemail_with_the_caller_in_the_signed_callback() -> None:
    params = {**call(), "QueueResult": "leave", "QueueTime": "40"}
    answer = post(voice_app(FakePublisher()), "/webhooks/twilio/voice/queue", params)
    record = ET.fromstring(answer.content).find("Record")
    assert record is not None
    assert record.get("recordingStatusCallback") == (
        PUBLIC + "/webhooks/twilio/voice/recording?From=%2B14155552671"
    )


@pytest.mark.parametrize(("behaviour", "seconds"), [("hang", 0.3), ("fail", 5)])
def test_kafka_not_confirming_is_a_503_so_twilio_retries(behaviour: str, seconds: float) -> None:
    client = voice_app(FakePublisher(behaviour=behaviour), publish_timeout_s=seconds)
    answer = post(client, "/webhooks/twilio/voice", call())
    assert answer.status_code == 503
    assert "retry" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("app", "path", "params"),
    [
        (voice_app, "/webhooks/twilio/voice", call()),
        (voice_app, "/webhooks/twilio/voice/status", {**call(), "CallStatus": "busy"}),
        (voice_app, "/webhooks/twilio/voice/queue", {**call(), "QueueResult": "hangup"}),
        (
            voice_app,
            "/webhooks/twilio/voice/recording",
            {
                "RecordingSid": "RE1",
                "CallSid": "CA1",
                "From": CUSTOMER,
                "RecordingUrl": "https://api.twilio.com/recordings/RE1",
                "RecordingDuration": "4",
            },
        ),
        (sms_app, "/webhooks/twilio/sms", {"MessageSid": "SM1", "From": CUSTOMER, "Body": "hi"}),
        (
            sms_app,
            "/webhooks/twilio/sms/status",
            {"MessageSid": "SM1", "From": HOTLINE, "To": CUSTOMER, "MessageStatus": "delivered"},
        ),
    ],
)
def test_a_repeated_delivery_token_gets_the_same_answer_without_publishing_again(
    app: Callable[[FakePublisher], TestClient], path: str, params: dict[str, str]
) -> None:
    publisher = FakePublisher()
    client = app(publisher)
    token = {"I-Twilio-Idempotency-Token": "tok-1"}
    first = post(client, path, params, **token)
    again = post(client, path, params, **token)
    assert first.is_success, first.text
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert len(publisher.published) == 1


# -- sms: keyword answers ---------------------------------------------------------------------


def sms(body: str, sid: str = "SM1") -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "From": CUSTOMER, "To": HOTLINE, "Body": body}


def test_stop_records_the_message_and_withdraws_both_consents_with_an_empty_answer() -> None:
    publisher = FakePublisher()
    answer = post(sms_app(publisher), "/webhooks/twilio/sms", sms("  stop "))
    assert answer.status_code == 200
    assert list(ET.fromstring(answer.content)) == []
    assert [(e.type, e.provider_ref) for e in publisher.published] == [
        ("message.received.v1", "SM1"),
        ("consent.changed.v1", "SM1:consent:service"),
        ("consent.changed.v1", "SM1:consent:marketing"),
    ]


def test_help_is_answered_with_the_help_text() -> None:
    publisher = FakePublisher()
    answer = post(sms_app(publisher), "/webhooks/twilio/sms", sms("Help"))
    assert ET.fromstring(answer.content).findtext("Message") == "Call 0800 or reply STOP."
    assert [e.type for e in publisher.published] == ["message.received.v1"]


def test_twilio_whatsapp_messages_are_filed_on_the_whatsapp_channel() -> None:
    publisher = FakePublisher()
    params = {**sms("hola"), "From": "whatsapp:" + CUSTOMER}
    assert post(sms_app(publisher), "/webhooks/twilio/sms", params).status_code == 200
    [message] = publisher.published
    assert (str(message.channel), message.party) == ("whatsapp", "whatsapp:" + CUSTOMER)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/webhooks/twilio/sms", {"From": CUSTOMER, "Body": "hi"}, "MessageSid"),
        ("/webhooks/twilio/sms", {"MessageSid": "SM1", "Body": "hi"}, "From"),
        ("/webhooks/twilio/sms", {"MessageSid": "SM1", "From": "12", "Body": "hi"}, "From"),
        ("/webhooks/twilio/sms/status", {"MessageSid": "SM1", "To": CUSTOMER}, "MessageStatus"),
        (
            "/webhooks/twilio/sms/status",
            {"MessageSid": "SM1", "To": CUSTOMER, "MessageStatus": "teleported"},
            "MessageStatus",
        ),
    ],
)
def test_malformed_sms_webhooks_are_400s_naming_the_field(
    path: str, params: dict[str, str], field: str
) -> None:
    publisher = FakePublisher()
    answer = post(sms_app(publisher), path, params)
    assert answer.status_code == 400
    assert field in answer.json()["detail"]
    assert publisher.published == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        # An unreadable caller id is filed under the call, which needs a usable CallSid.
        ("/webhooks/twilio/voice", {"CallSid": "{", "From": "0", "To": HOTLINE}),
        ("/webhooks/twilio/voice", {"CallSid": "CA 1", "From": "anonymous", "To": HOTLINE}),
        (
            "/webhooks/twilio/voice/status",
            {"CallSid": "ÿ", "CallStatus": "completed", "From": "anonymous", "CallDuration": "3"},
        ),
    ],
)
def test_a_withheld_caller_on_an_unusable_call_sid_is_a_400_naming_call_sid(
    path: str, params: dict[str, str]
) -> None:
    publisher = FakePublisher()
    answer = post(voice_app(publisher), path, params)
    assert answer.status_code == 400, answer.text
    assert "CallSid" in answer.json()["detail"]
    assert publisher.published == []
