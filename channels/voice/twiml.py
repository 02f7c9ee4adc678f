"""The routing answers we give Twilio, as TwiML. Pure: values in, documents out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode
from uuid import UUID

from twilio.twiml.voice_response import Dial, Enqueue, VoiceResponse

from channels.voice.config import TwilioVoiceConfig
from contracts import ContactRouted


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


@dataclass(frozen=True)
class CallbackUrls:
    """Our routes a routed call's TwiML hands to Twilio (absolute, signed by Twilio)."""

    dial_action: str  # the agent did not take the offer: route again
    queue_action: str  # the caller left the queue
    queue_wait: str  # while waiting: hold, or leave to overflow
    agent_status: str  # the agent's leg was answered
    recording: str  # a voicemail was recorded


def answer_routed(
    config: TwilioVoiceConfig,
    routed: ContactRouted,
    *,
    urls: CallbackUrls,
    offer_timeout_s: float,
    excluded: tuple[str, ...] = (),
) -> VoiceResponse:
    """The TwiML that carries out a routing decision.

    - agent: ring the agent's Voice SDK client (identity = user name) for ``offer_timeout_s``;
      when they do not take it, the dial action routes the call again without them;
    - queue: wait in the queue (TaskRouter when a workflow is configured), with a wait URL that
      lets the caller leave to the overflow target when the queue's time is up;
    - voicemail: record a message; callback: say so and record the caller's message too, so
      the callback has something to go on.
    """
    target = routed.target
    response = VoiceResponse()
    next_attempt = {"attempt": str(routed.attempt + 1)}
    if target.kind == "agent" and target.agent:
        query = {**next_attempt, "exclude": ",".join((*excluded, target.agent))}
        dial = Dial(
            answer_on_bridge=True,
            timeout=max(5, min(600, round(offer_timeout_s))),
            action=f"{urls.dial_action}?{urlencode(query)}",
            method="POST",
        )
        client = dial.client(status_callback=urls.agent_status, status_callback_event="answered")
        client.identity(target.agent)
        client.parameter(name="call_sid", value=routed.contact_ref)
        if routed.customer_id is not None:
            client.parameter(name="customer_id", value=str(routed.customer_id))
        client.parameter(name="reason", value=routed.reason[:500])
        response.append(dial)
        return response
    if target.kind == "queue" and target.queue:
        action = f"{urls.queue_action}?{urlencode({**next_attempt, 'queue': target.queue})}"
        wait = f"{urls.queue_wait}?{urlencode({'queue': target.queue})}"
        if config.workflow_sid is not None:
            enqueue = Enqueue(
                workflow_sid=config.workflow_sid, action=action, method="POST", wait_url=wait
            )
            attributes = {
                "call_sid": routed.contact_ref,
                "caller": routed.party,
                "queue": target.queue,
                "rule": routed.rule,
            }
            if routed.customer_id is not None:
                attributes["customer_id"] = str(routed.customer_id)
            enqueue.task(json.dumps(attributes, separators=(",", ":")))
            response.append(enqueue)
        else:
            response.enqueue(
                target.queue, action=action, method="POST", wait_url=wait, wait_url_method="POST"
            )
        return response
    if target.kind == "callback":
        response.say("All our agents are busy. Leave your message and we will call you back.")
    return take_voicemail(config, caller=routed.party, recording_url=urls.recording, into=response)


def hold_or_leave(*, waited_s: float, overflow_after_s: float | None) -> VoiceResponse:
    """The queue's wait TwiML: hold, or leave once the queue's overflow time is up (the
    queue action then routes the call on)."""
    response = VoiceResponse()
    if overflow_after_s is not None and waited_s >= overflow_after_s:
        response.leave()
        return response
    left = 10.0 if overflow_after_s is None else overflow_after_s - waited_s
    response.say("Please hold, you will be connected shortly.")
    response.pause(length=max(1, min(10, round(left))))
    return response


def routes_by_caller(config: TwilioVoiceConfig) -> bool:
    """Whether the answer depends on the call; if not, it can be built once."""
    return config.dial_client is not None or config.workflow_sid is not None


def queue_call(config: TwilioVoiceConfig, *, queue_action_url: str) -> VoiceResponse:
    """Wait in the default queue; leaving it (or hanging up) reports to the queue action."""
    response = VoiceResponse()
    response.enqueue(config.default_queue, action=queue_action_url, method="POST")
    return response


def take_voicemail(
    config: TwilioVoiceConfig,
    *,
    caller: str,
    recording_url: str,
    into: VoiceResponse | None = None,
) -> VoiceResponse:
    """Record a message after the caller left the queue.

    Twilio's recording callback does not say who called, so the caller rides in the
    callback's query string; the signature covers the query, so it cannot be forged.
    """
    response = into if into is not None else VoiceResponse()
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
