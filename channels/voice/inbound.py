"""Twilio Voice webhooks: incoming calls, call status, queue results and voicemail.

Every route checks Twilio's signature first (403, nothing published), answers 400 naming
the field for a malformed request, and answers 2xx only after Kafka confirmed the events
(503 otherwise, so that Twilio retries or falls back).

Withheld (or unreadable) caller ids: the call is answered and routed like any other, and
recorded under the party ``anonymous:<CallSid>`` (``contracts.call_party``): it is a
contact like any other, filed under its own call until an agent links it to a customer.
Its status and recording callbacks carry the same CallSid, so they land on the same
history. Counted in ``VoiceWebhookStats.withheld``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response, Security
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from channels.publishing import InteractionPublisher
from channels.twilio import (
    SIGNATURE_SCHEME,
    TWIML_ANSWER,
    WEBHOOK_RESPONSES,
    TwilioForm,
    TwilioSignature,
    TwilioWebhook,
    form_body,
    twiml,
)
from channels.voice.config import TwilioVoiceConfig
from channels.voice.directory import CallerDirectory, CallRouter
from channels.voice.paths import (
    TWILIO_VOICE_DIAL_PATH,
    TWILIO_VOICE_PATH,
    TWILIO_VOICE_QUEUE_PATH,
    TWILIO_VOICE_RECORDING_PATH,
    TWILIO_VOICE_STATUS_PATH,
    TWILIO_VOICE_WAIT_PATH,
)
from channels.voice.status import call_event_from_status
from channels.voice.twiml import (
    CallbackUrls,
    answer_routed,
    hang_up,
    hold_or_leave,
    queue_call,
    route_call,
    routes_by_caller,
    take_voicemail,
)
from channels.webhooks import bad_request, invalid_event, publish_confirmed
from contracts import (
    CallMissed,
    CallRinging,
    Channel,
    ContactRouted,
    Direction,
    VoicemailRecorded,
    is_withheld_party,
)
from contracts.addresses import is_withheld_caller
from contracts.envelope import InteractionEvent

log = logging.getLogger(__name__)

_TAGS = ["webhooks: Twilio Voice"]
# Enqueue's action request: the caller left the queue without reaching an agent.
_VOICEMAIL_RESULTS = frozenset({"leave", "queue-full", "error", "system-error"})
_QUEUE_RESULTS = _VOICEMAIL_RESULTS | {"hangup", "bridged", "bridging-in-process", "redirected"}

# The request bodies as the OpenAPI document shows them: the fields each route reads.
_CALL = {"CallSid": "The call.", "From": "The caller.", "To": "The number dialled."}
_INCOMING_FORM = form_body(_CALL, required=("CallSid", "From", "To"))
_STATUS_FORM = form_body(
    {
        **_CALL,
        "CallStatus": "Where the call is (case does not matter).",
        "Direction": "inbound, outbound-api or outbound-dial.",
        "ParentCallSid": "The customer's call, on an agent's leg.",
        "CallDuration": "completed: seconds the call lasted.",
        "Timestamp": "RFC 2822 time of the status.",
        "SequenceNumber": "Order of the callbacks of one call.",
    },
    required=("CallSid", "CallStatus"),
)
_QUEUE_FORM = form_body(
    {**_CALL, "QueueResult": "Why the caller left the queue."},
    required=("CallSid", "QueueResult"),
    enums={"QueueResult": sorted(_QUEUE_RESULTS)},
)
_DIAL_FORM = {
    **form_body(
        {
            **_CALL,
            "DialCallStatus": "completed, answered, busy, no-answer, failed or canceled.",
            "CallStatus": "The caller's call: in-progress while they wait.",
        },
        required=("CallSid", "From"),
    ),
    "parameters": [
        {"name": "attempt", "in": "query", "required": False, "schema": {"type": "integer"}},
        {"name": "exclude", "in": "query", "required": False, "schema": {"type": "string"}},
    ],
}
_WAIT_FORM = {
    **form_body(
        {**_CALL, "QueueTime": "Seconds the caller has waited.", "QueueSid": "The queue."},
        required=("CallSid",),
    ),
    "parameters": [
        {"name": "queue", "in": "query", "required": False, "schema": {"type": "string"}},
    ],
}
_RECORDING_FORM = {
    **form_body(
        {
            "RecordingSid": "The recording.",
            "CallSid": "The call.",
            "RecordingStatus": "completed, absent or failed.",
            "RecordingUrl": "completed: where Twilio keeps it.",
            "RecordingDuration": "completed: its length in seconds.",
            "RecordingStartTime": "RFC 2822 time it began.",
            "TranscriptionText": "Its transcript, when transcribed.",
            "From": "The caller (else the From query parameter).",
        },
        required=("RecordingSid", "CallSid"),
    ),
    "parameters": [
        {
            "name": "From",
            "in": "query",
            "required": False,
            "description": "The caller, as our TwiML puts it on the callback URL.",
            "schema": {"type": "string"},
        }
    ],
}


@dataclass
class VoiceWebhookStats:
    calls: int = 0
    withheld: int = 0
    lookup_failures: int = 0


def twilio_voice_router(
    *,
    publisher: InteractionPublisher,
    config: TwilioVoiceConfig,
    directory: CallerDirectory | None = None,
    router: CallRouter | None = None,
    routing_topic: str | None = None,
) -> APIRouter:
    """The voice webhooks.  With a ``router`` (and the ``routing_topic`` its decisions are
    published on), every call is routed by it: an agent's client, a queue, voicemail; without
    one, every call waits in the configured queue (or rings the one configured client)."""
    if router is not None and routing_topic is None:
        raise ValueError("a router needs the routing_topic its decisions go to")
    webhook = TwilioWebhook(
        TwilioSignature(
            auth_token=config.auth_token,
            public_base_url=config.public_base_url,
            shared_key_secret=config.shared_key_secret,
        )
    )
    stats = VoiceWebhookStats()
    routes = APIRouter(
        tags=_TAGS, responses=WEBHOOK_RESPONSES, dependencies=[Security(SIGNATURE_SCHEME)]
    )
    routes.stats = stats  # type: ignore[attr-defined]  # read by tests and metrics

    # Without a router and a client or workflow, the answer is the same for every call.
    fixed_answer = (
        None
        if router is not None or routes_by_caller(config)
        else str(queue_call(config, queue_action_url=webhook.url(TWILIO_VOICE_QUEUE_PATH)))
    )
    urls = CallbackUrls(
        dial_action=webhook.url(TWILIO_VOICE_DIAL_PATH),
        queue_action=webhook.url(TWILIO_VOICE_QUEUE_PATH),
        queue_wait=webhook.url(TWILIO_VOICE_WAIT_PATH),
        agent_status=webhook.url(TWILIO_VOICE_STATUS_PATH),
        recording=webhook.url(TWILIO_VOICE_RECORDING_PATH),
    )

    async def publish(events: list[InteractionEvent]) -> None:
        await publish_confirmed(
            publisher, events, timeout_s=config.publish_timeout_s, provider="twilio-voice"
        )

    def caller_of(form: TwilioForm) -> str:
        """The caller, filed under the call when the caller id is withheld or unreadable
        (``contracts.call_party``): a person is on the line either way, and the call is
        still a contact."""
        caller = form.address("From", Channel.voice, default_region=config.default_region)
        if is_withheld_party(caller):
            stats.withheld += 1
            raw = form.required("From")
            if not is_withheld_caller(raw):
                log.warning("call %s: unreadable caller id %r", form.required("CallSid"), raw)
        return caller

    async def lookup(caller: str) -> UUID | None:
        if directory is None:
            return None
        try:
            if config.lookup_in_threadpool:
                return await run_in_threadpool(directory.customer_for_address, caller)
            return directory.customer_for_address(caller)
        except Exception:
            # A screen-pop enrichment must never cost the caller their call.
            stats.lookup_failures += 1
            log.exception("caller lookup failed for %s", caller)
            return None

    async def known(caller: str) -> Any:
        """The router's view of the caller: their card, or nothing if it cannot be read."""
        assert router is not None
        if is_withheld_party(caller):
            return router.known("")  # nobody to look up
        try:
            if config.lookup_in_threadpool:
                return await run_in_threadpool(router.known, caller)
            return router.known(caller)
        except Exception:
            stats.lookup_failures += 1
            log.exception("caller lookup failed for %s", caller)
            return router.known("")

    async def publish_routed(routed: ContactRouted, *also: InteractionEvent) -> None:
        """The decision on the routing topic and the call's own events, all confirmed."""
        await asyncio.gather(
            publish(list(also)) if also else asyncio.sleep(0),
            publish_confirmed(
                publisher,
                [routed],
                timeout_s=config.publish_timeout_s,
                provider="twilio-voice",
                topic=routing_topic,
            ),
        )

    def attempt_of(form: TwilioForm) -> int:
        """The attempt our callback URL carries (2 and up: the call was routed before)."""
        try:
            given = form.query.get("attempt")
            attempt = 2 if given is None else int(given)  # present but empty: not a number
        except ValueError:
            raise bad_request("attempt (query) must be a whole number") from None
        if not 2 <= attempt <= 1000:
            raise bad_request("attempt (query) must be between 2 and 1000")
        return attempt

    async def route_again(
        form: TwilioForm, *, exclude: tuple[str, ...] = (), waited_s: float = 0.0
    ) -> Response:
        """Route a call that is still on the line once more (attempt from our callback URL)."""
        assert router is not None
        call_sid = form.required("CallSid")
        caller = caller_of(form)
        attempt = attempt_of(form)
        routed = router.route(
            channel="voice",
            party=caller,
            contact_ref=call_sid,
            known=await known(caller),
            dialled=form.optional("To"),
            attempt=attempt,
            exclude=exclude,
            waited_s=waited_s,
        )
        await publish_routed(routed)
        return twiml(
            answer_routed(
                config,
                routed,
                urls=urls,
                offer_timeout_s=router.offer_timeout_s,
                excluded=exclude,
            )
        )

    async def route_incoming(
        form: TwilioForm, call_sid: str, caller: str, dialled: str
    ) -> Response:
        assert router is not None
        routed = router.route(
            channel="voice",
            party=caller,
            contact_ref=call_sid,
            known=await known(caller),
            dialled=dialled,
        )
        try:
            ringing = CallRinging(
                direction=Direction.inbound,
                party=caller,
                endpoint=dialled,
                call_id=call_sid,
                provider_ref=f"{call_sid}:ringing",
                occurred_at=routed.occurred_at,
            )
        except ValidationError as exc:
            raise invalid_event(exc) from None
        await publish_routed(routed, ringing)
        stats.calls += 1
        return twiml(
            answer_routed(config, routed, urls=urls, offer_timeout_s=router.offer_timeout_s)
        )

    @routes.post(
        TWILIO_VOICE_PATH,
        summary="Incoming call: route it and record the ringing",
        response_class=Response,
        responses=TWIML_ANSWER,
        openapi_extra=_INCOMING_FORM,
    )
    @webhook.answers_once
    async def incoming_call(form: TwilioForm) -> Response:
        call_sid = form.required("CallSid")
        dialled = form.required("To")
        caller = caller_of(form)
        if router is not None:
            return await route_incoming(form, call_sid, caller, dialled)
        customer_id = await lookup(caller)
        if fixed_answer is not None:
            answer = Response(content=fixed_answer, media_type="application/xml")
        else:
            answer = twiml(
                route_call(
                    config,
                    call_sid=call_sid,
                    caller=caller,
                    customer_id=customer_id,
                    queue_action_url=webhook.url(TWILIO_VOICE_QUEUE_PATH),
                    agent_status_url=webhook.url(TWILIO_VOICE_STATUS_PATH),
                )
            )
        try:
            ringing = CallRinging(
                direction=Direction.inbound,
                party=caller,
                endpoint=dialled,
                call_id=call_sid,
                provider_ref=f"{call_sid}:ringing",
                occurred_at=datetime.now(UTC),
            )
        except ValidationError as exc:
            raise invalid_event(exc) from None
        await publish([ringing])
        stats.calls += 1
        return answer

    @routes.post(
        TWILIO_VOICE_STATUS_PATH,
        status_code=204,
        summary="Call status callback",
        response_class=Response,
        openapi_extra=_STATUS_FORM,
    )
    @webhook.answers_once
    async def call_status(form: TwilioForm) -> Response:
        try:
            event = call_event_from_status(form, default_region=config.default_region)
        except ValidationError as exc:
            raise invalid_event(exc) from None
        if event is not None:
            await publish([event])
        return Response(status_code=204)

    @routes.post(
        TWILIO_VOICE_DIAL_PATH,
        summary="Dial action: the agent took the call, or the call is routed again",
        response_class=Response,
        responses=TWIML_ANSWER,
        openapi_extra=_DIAL_FORM,
    )
    @webhook.answers_once
    async def dial_result(form: TwilioForm) -> Response:
        form.required("CallSid")
        form.required("From")
        attempt_of(form)
        status = (form.optional("DialCallStatus") or "").lower()
        if router is None or status in ("completed", "answered"):
            return twiml(hang_up())  # they talked; the call ends when the agent hangs up
        if (form.optional("CallStatus") or "").lower() in ("completed", "canceled"):
            return twiml(hang_up())  # the caller is gone: nothing to route
        exclude = tuple(a for a in (form.query.get("exclude") or "").split(",") if a)
        return await route_again(form, exclude=exclude[:50])

    @routes.post(
        TWILIO_VOICE_WAIT_PATH,
        summary="Queue wait: hold, or leave to overflow",
        response_class=Response,
        responses=TWIML_ANSWER,
        openapi_extra=_WAIT_FORM,
    )
    @webhook.answers_once
    async def queue_wait(form: TwilioForm) -> Response:
        form.required("CallSid")
        waited = form.number("QueueTime") or 0.0
        overflow = router.overflow_after_s(form.query.get("queue")) if router else None
        return twiml(hold_or_leave(waited_s=waited, overflow_after_s=overflow))

    @routes.post(
        TWILIO_VOICE_QUEUE_PATH,
        summary="Enqueue action: the caller left the queue",
        response_class=Response,
        responses=TWIML_ANSWER,
        openapi_extra=_QUEUE_FORM,
    )
    @webhook.answers_once
    async def queue_result(form: TwilioForm) -> Response:
        call_sid = form.required("CallSid")
        result = form.required("QueueResult").lower()
        if result not in _QUEUE_RESULTS:
            raise bad_request(
                f"QueueResult {result!r} is unknown; expected one of {sorted(_QUEUE_RESULTS)}"
            )
        if result == "leave" and router is not None:
            # Our wait URL let the caller leave: the queue's time is up, route on (overflow).
            return await route_again(form, waited_s=form.number("QueueTime") or 0.0)
        if result in _VOICEMAIL_RESULTS:
            return twiml(
                take_voicemail(
                    config,
                    caller=form.required("From"),
                    recording_url=webhook.url(TWILIO_VOICE_RECORDING_PATH),
                )
            )
        caller = caller_of(form)
        if result == "hangup":
            try:
                missed = CallMissed(
                    direction=Direction.inbound,
                    party=caller,
                    endpoint=form.optional("To"),
                    call_id=call_sid,
                    reason="abandoned",
                    provider_ref=f"{call_sid}:abandoned",
                    occurred_at=datetime.now(UTC),
                )
            except ValidationError as exc:
                raise invalid_event(exc) from None
            await publish([missed])
        return twiml(hang_up())

    @routes.post(
        TWILIO_VOICE_RECORDING_PATH,
        status_code=204,
        summary="Voicemail recorded",
        response_class=Response,
        openapi_extra=_RECORDING_FORM,
    )
    @webhook.answers_once
    async def recording_status(form: TwilioForm) -> Response:
        recording_sid = form.required("RecordingSid")
        call_sid = form.required("CallSid")
        status = (form.optional("RecordingStatus") or "completed").lower()
        if status != "completed":
            # "absent" (silence) and "failed" leave nothing to listen to.
            return Response(status_code=204)
        if form.optional("From") is None:
            # The recording callback does not name the caller; our TwiML puts it in the
            # (signed) query string of the callback URL.
            from_query = form.query.get("From")
            if not from_query:
                raise bad_request(
                    "From is missing: put ?From=<caller> on the recordingStatusCallback URL"
                )
            form = replace(
                form, params=FormData([*form.params.multi_items(), ("From", from_query)])
            )
        caller = caller_of(form)
        try:
            voicemail = VoicemailRecorded(
                direction=Direction.inbound,
                party=caller,
                call_id=call_sid,
                recording_url=form.required("RecordingUrl"),
                duration_s=form.number("RecordingDuration", required=True),
                transcript=form.optional("TranscriptionText"),
                provider_ref=recording_sid,
                occurred_at=form.timestamp("RecordingStartTime") or datetime.now(UTC),
            )
        except ValidationError as exc:
            raise invalid_event(exc) from None
        await publish([voicemail])
        return Response(status_code=204)

    return routes
