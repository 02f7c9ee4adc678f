"""Twilio Voice webhooks -> real Kafka -> recorder -> timeline.

Requests are signed with Twilio's own RequestValidator over the public URL, and reach the
app as they would behind a reverse proxy: at another host and scheme (an ASGI transport).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from channels.publishing import InteractionPublisher
from channels.voice import TwilioVoiceConfig, twilio_voice_router
from deploy.kafka_local import LocalKafka
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.helpers import (
    eventually,
    recorded_refs,
    records_in,
    timeline_when_shown,
)
from tests.standins.twilio_api import signed_twilio_request

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://hooks.example.com/switchboard"
LOCAL = "http://127.0.0.1:8080"  # what the reverse proxy forwards to
CUSTOMER = "+14155552671"
HOTLINE = "+18005550100"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Channel tests need one store; the store itself is tested on both elsewhere."""
    return f"sqlite:///{tmp_path / 'history.db'}"


def voice_app(publisher: InteractionPublisher, settings: Settings, **config: object) -> FastAPI:
    app = FastAPI()
    app.include_router(
        twilio_voice_router(
            publisher=publisher,
            config=TwilioVoiceConfig(auth_token=TOKEN, public_base_url=PUBLIC, **config),  # type: ignore[arg-type]
            directory=bootstrap(settings).timeline_view(),
        )
    )
    return app


@pytest.fixture
async def twilio(publisher: InteractionPublisher, hub_settings: Settings) -> AsyncIterator:
    """An HTTP client that posts signed webhooks to the voice app."""
    app = voice_app(publisher, hub_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL) as c:
        yield c


async def post(
    client: httpx.AsyncClient, path: str, params: dict[str, str], **headers: str
) -> httpx.Response:
    signed = signed_twilio_request(TOKEN, PUBLIC + path, params)
    return await client.post(path, data=params, headers={**signed, **headers})


def call(sid: str, caller: str = CUSTOMER, **more: str) -> dict[str, str]:
    return {"CallSid": sid, "From": caller, "To": HOTLINE, "Direction": "inbound", **more}


def stamp(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


async def test_a_call_rings_is_answered_by_an_agent_and_ends_on_the_timeline(
    hub_settings: Settings,
    running_recorder: Recorder,
    publisher: InteractionPublisher,
    twilio: httpx.AsyncClient,
) -> None:
    ringing = await post(twilio, "/webhooks/twilio/voice", call("CA100"))
    assert ringing.status_code == 200, ringing.text
    assert ET.fromstring(ringing.content).findtext("Enqueue") == "support"
    # The status callbacks arrive out of order: the end before the agent's answer.
    later = datetime.now(UTC) + timedelta(seconds=2)
    ended = call("CA100", CallStatus="completed", CallDuration="95", Timestamp=stamp(later))
    answered = {
        **call("CA100-agent", To="client:agent_42", Direction="outbound-dial"),
        "ParentCallSid": "CA100",
        "CallStatus": "in-progress",
        "Timestamp": stamp(later),
        "SequenceNumber": "0",
    }
    ended["SequenceNumber"] = "3"
    assert (await post(twilio, "/webhooks/twilio/voice/status", ended)).status_code == 204
    assert (await post(twilio, "/webhooks/twilio/voice/status", answered)).status_code == 204

    entries = await timeline_when_shown(hub_settings, CUSTOMER, 3)
    assert [(e.type, e.summary) for e in entries] == [
        ("call.ended.v1", "Call ended after 1m35s"),
        ("call.answered.v1", "Call answered by agent_42"),
        ("call.ringing.v1", f"Incoming call from {CUSTOMER}"),
    ]
    assert {e.payload["call_id"] for e in entries} == {"CA100"}

    # The caller is now in the directory: the next call rings at the agent with their id.
    app = voice_app(publisher, hub_settings, dial_client="agent_42")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL) as c:
        again = await post(c, "/webhooks/twilio/voice", call("CA101"))
    customer_id = bootstrap(hub_settings).timeline_view().customer_for_address(CUSTOMER)
    parameters = {
        p.get("name"): p.get("value")
        for p in ET.fromstring(again.content).findall("Dial/Client/Parameter")
    }
    assert parameters["customer_id"] == str(customer_id)


async def test_voicemail_and_an_abandoned_call_reach_the_timeline(
    hub_settings: Settings, running_recorder: Recorder, twilio: httpx.AsyncClient
) -> None:
    assert (await post(twilio, "/webhooks/twilio/voice", call("CA200"))).status_code == 200
    left = await post(twilio, "/webhooks/twilio/voice/queue", call("CA200", QueueResult="leave"))
    callback = ET.fromstring(left.content).find("Record").get("recordingStatusCallback")  # type: ignore[union-attr]
    # Twilio posts the recording to the URL our TwiML gave it, signed over that URL.
    recording = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": "CA200",
        "RecordingSid": "RE200",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE200",
        "RecordingStatus": "completed",
        "RecordingDuration": "21",
    }
    path = callback.removeprefix(PUBLIC)
    assert (await post(twilio, path, recording)).status_code == 204

    assert (await post(twilio, "/webhooks/twilio/voice", call("CA201"))).status_code == 200
    gone = await post(twilio, "/webhooks/twilio/voice/queue", call("CA201", QueueResult="hangup"))
    assert gone.status_code == 200

    entries = await timeline_when_shown(hub_settings, CUSTOMER, 4)
    by_type = {e.type: e for e in entries if e.type != "call.ringing.v1"}
    assert by_type["voicemail.recorded.v1"].summary == "Voicemail, 21s"
    assert by_type["voicemail.recorded.v1"].payload["recording_url"] == recording["RecordingUrl"]
    assert by_type["call.missed.v1"].summary == "Missed call (abandoned)"


async def test_forged_and_unsigned_webhooks_are_refused_and_publish_nothing(
    hub_settings: Settings, twilio: httpx.AsyncClient
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    params = call("CA300")
    url = PUBLIC + "/webhooks/twilio/voice"
    attempts = [
        signed_twilio_request("someone-elses-token", url, params),
        # Signed over the URL the app sees instead of the public one Twilio called.
        signed_twilio_request(TOKEN, LOCAL + "/webhooks/twilio/voice", params),
        {"Content-Type": "application/x-www-form-urlencoded"},
    ]
    for headers in attempts:
        answer = await twilio.post("/webhooks/twilio/voice", data=params, headers=headers)
        assert answer.status_code == 403, answer.text
    tampered = {**params, "From": "+14155550000"}
    signed = signed_twilio_request(TOKEN, url, params)
    assert (
        await twilio.post("/webhooks/twilio/voice", data=tampered, headers=signed)
    ).status_code == 403
    status = call("CA300", CallStatus="completed", CallDuration="5")
    forged = signed_twilio_request("x", PUBLIC + "/webhooks/twilio/voice/status", status)
    answer = await twilio.post("/webhooks/twilio/voice/status", data=status, headers=forged)
    assert answer.status_code == 403
    assert await records_in(hub_settings) == 0


async def test_replayed_deliveries_are_recorded_once(
    hub_settings: Settings, running_recorder: Recorder, twilio: httpx.AsyncClient
) -> None:
    ended = call("CA400", CallStatus="completed", CallDuration="12")
    for token in ("t-1", "t-2", None):  # Twilio's retries, and one without its token header
        headers = {"I-Twilio-Idempotency-Token": token} if token else {}
        assert (await post(twilio, "/webhooks/twilio/voice", call("CA400"))).status_code == 200
        answer = await post(twilio, "/webhooks/twilio/voice/status", ended, **headers)
        assert answer.status_code == 204
    await eventually(
        lambda: running_recorder.stats.consumed >= 6, what="all six deliveries consumed"
    )
    counts = recorded_refs(hub_settings)
    assert counts["call.ringing.v1|CA400:ringing"] == 1
    assert counts["call.ended.v1|CA400:completed"] == 1
    assert running_recorder.stats.duplicates == 4


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/webhooks/twilio/voice", {"From": CUSTOMER, "To": HOTLINE}, "CallSid"),
        ("/webhooks/twilio/voice", {"CallSid": "CA1", "To": HOTLINE}, "From"),
        ("/webhooks/twilio/voice/status", call("CA1", CallStatus="completed"), "CallDuration"),
        ("/webhooks/twilio/voice/status", call("CA1", CallStatus="on-fire"), "CallStatus"),
        ("/webhooks/twilio/voice/queue", call("CA1", QueueResult="teleported"), "QueueResult"),
        (
            "/webhooks/twilio/voice/recording",
            {"CallSid": "CA1", "RecordingSid": "RE1", "RecordingUrl": "https://x/RE1"},
            "From",
        ),
        (
            "/webhooks/twilio/voice/recording?From=%2B14155552671",
            {"CallSid": "CA1", "RecordingSid": "RE1", "RecordingUrl": "https://x/RE1"},
            "RecordingDuration",
        ),
        (
            "/webhooks/twilio/voice/recording?From=%2B14155552671",
            {
                "CallSid": "CA1",
                "RecordingSid": "RE1",
                "RecordingUrl": "ftp://x/RE1",
                "RecordingDuration": "3",
            },
            "recording_url",
        ),
    ],
)
async def test_malformed_webhooks_are_400s_naming_the_field_and_publish_nothing(
    hub_settings: Settings,
    twilio: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    answer = await post(twilio, path, params)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["detail"]
    assert await records_in(hub_settings) == 0


async def test_unreachable_kafka_answers_503(hub_settings: Settings) -> None:
    dead = InteractionPublisher("127.0.0.1:1", topic=hub_settings.interactions_topic)
    app = voice_app(dead, hub_settings)  # never started: there is no broker to start against
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL) as c:
        answer = await post(c, "/webhooks/twilio/voice", call("CA500"))
    assert answer.status_code == 503
    assert "retry" in answer.json()["detail"]


@pytest.mark.slow
async def test_kafka_not_confirming_in_time_answers_503_and_twilios_retry_is_recorded_once(
    hub_settings: Settings, restartable_kafka: LocalKafka
) -> None:
    settings = hub_settings.model_copy(update={"kafka_bootstrap": restartable_kafka.bootstrap})
    await ensure_topics(settings, settings.kafka_bootstrap)
    async with InteractionPublisher(
        settings.kafka_bootstrap, topic=settings.interactions_topic
    ) as publisher:
        app = voice_app(publisher, settings, publish_timeout_s=1.0)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL) as c:
            # A frozen broker accepts connections and never answers, like one in a long GC
            # pause or behind a partitioned network.
            os.kill(restartable_kafka.pid, signal.SIGSTOP)  # type: ignore[arg-type]
            try:
                started = time.monotonic()
                first = await post(c, "/webhooks/twilio/voice", call("CA600"))
                assert first.status_code == 503
                assert time.monotonic() - started < 3
            finally:
                os.kill(restartable_kafka.pid, signal.SIGCONT)  # type: ignore[arg-type]
            retried = await post(c, "/webhooks/twilio/voice", call("CA600"))  # Twilio retries
            assert retried.status_code == 200, retried.text
    recorder = bootstrap(settings).recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        await recorder.wait_started()
        # The write abandoned after 1 s landed once the broker woke up; so did the retry.
        await eventually(lambda: recorder.stats.consumed >= 2, what="both writes consumed")
        assert recorded_refs(settings)["call.ringing.v1|CA600:ringing"] == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
