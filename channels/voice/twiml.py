"""The routing answers we give Twilio, as TwiML. Pure: values in, documents out."""

from __future__ import annotations

import json
from urllib.parse import urlencode
from uuid import UUID

from twilio.twiml.voice_response import Dial, Enqueue, VoiceResponse

from channels.voice.config import TwilioVoiceConfig


def route_call(
    config: TwilioVoiceConfig,
    *,
    call_sid: str,
    caller: str | None,
    customer_id: UUID | None,
    queue_action_url: str,
    agent_status_url: str,
) -> VoiceResponse:
    """Where an incoming call goes: an agent's Voice SDK client, or the default queue.

    The caller's customer id rides along where TwiML can carry it: as a ``<Parameter>`` of
    the client (the agent's SDK sees it on the incoming connection) or in the TaskRouter task
    attributes. A plain ``<Enqueue>`` has no place for it; the screen pop then comes from the
    ringing event on Kafka.
    """
    response = VoiceResponse()
    if config.dial_client is not None:
        dial = Dial(answer_on_bridge=True)
        client = dial.client(status_callback=agent_status_url, status_callback_event="answered")
        client.identity(config.dial_client)
        client.parameter(name="call_sid", value=call_sid)
        if customer_id is not None:
            client.parameter(name="customer_id", value=str(customer_id))
        response.append(dial)
        return response
    if config.workflow_sid is not None:
        enqueue = Enqueue(workflow_sid=config.workflow_sid, action=queue_action_url, method="POST")
        attributes = {"call_sid": call_sid, "caller": caller, "queue": config.default_queue}
        if customer_id is not None:
            attributes["customer_id"] = str(customer_id)
        enqueue.task(json.dumps(attributes, separators=(",", ":")))
        response.append(enqueue)
        return response
    return queue_call(config, queue_action_url=queue_action_url)


def routes_by_caller(config: TwilioVoiceConfig) -> bool:
    """Whether the answer depends on the call; if not, it can be built once."""
    return config.dial_client is not None or config.workflow_sid is not None


def queue_call(config: TwilioVoiceConfig, *, queue_action_url: str) -> VoiceResponse:
    """Wait in the default queue; leaving it (or hanging up) reports to the queue action."""
    response = VoiceResponse()
    response.enqueue(config.default_queue, action=queue_action_url, method="POST")
    return response


def take_voicemail(config: TwilioVoiceConfig, *, caller: str, recording_url: str) -> VoiceResponse:
    """Record a message after the caller left the queue.

    Twilio's recording callback does not say who called, so the caller rides in the
    callback's query string; the signature covers the query, so it cannot be forged.
    """
    response = VoiceResponse()
    response.record(
        max_length=config.voicemail_max_s,
        play_beep=True,
        recording_status_callback=f"{recording_url}?{urlencode({'From': caller})}",
        recording_status_callback_event="completed",
        recording_status_callback_method="POST",
    )
    return response


def hang_up() -> VoiceResponse:
    """Nothing more to do on this call: an empty answer lets Twilio go on or end it."""
    return VoiceResponse()
