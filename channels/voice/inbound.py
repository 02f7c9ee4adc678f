"""Twilio Voice webhooks: incoming calls, call status, queue results and voicemail.

Every route checks Twilio's signature first (403, nothing published), answers 400 naming
the field for a malformed request, and answers 2xx only after Kafka confirmed the events
(503 otherwise, so that Twilio retries or falls back).

Withheld (or unreadable) caller ids: the call is answered and routed like any other, and
recorded under the party ``anonymous:<CallSid>`` (``contracts.withheld_caller``): it is a
contact like any other, filed under its own call until an agent links it to a customer.
Its status and recording callbacks carry the same CallSid, so they land on the same
history. Counted in ``VoiceWebhookStats.withheld``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
    withheld_call_party,
)
from channels.voice.config import TwilioVoiceConfig
from channels.voice.directory import CallerDirectory
from channels.voice.paths import (
    TWILIO_VOICE_PATH,
    TWILIO_VOICE_QUEUE_PATH,
    TWILIO_VOICE_RECORDING_PATH,
    TWILIO_VOICE_STATUS_PATH,
)
from channels.voice.status import call_event_from_status
from channels.voice.twiml import (
    hang_up,
    queue_call,
    route_call,
    routes_by_caller,
    take_voicemail,
)
from channels.webhooks import bad_request, invalid_event, publish_confirmed
from contracts import (
    AddressError,
    CallMissed,
    CallRinging,
    Channel,
    Direction,
    VoicemailRecorded,
    normalize_party,
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
) -> APIRouter:
    webhook = TwilioWebhook(
        TwilioSignature(
            auth_token=config.auth_token,
            public_base_url=config.public_base_url,
            shared_key_secret=config.shared_key_secret,
        )
    )
    stats = VoiceWebhookStats()
    router = APIRouter(
        tags=_TAGS, responses=WEBHOOK_RESPONSES, dependencies=[Security(SIGNATURE_SCHEME)]
    )
    router.stats = stats  # type: ignore[attr-defined]  # read by tests and metrics

    # Until inbound routing exists, a plain queue answer is the same for every call.
    fixed_answer = (
        None
        if routes_by_caller(config)
        else str(queue_call(config, queue_action_url=webhook.url(TWILIO_VOICE_QUEUE_PATH)))
    )

    async def publish(events: list[InteractionEvent]) -> None:
        await publish_confirmed(
            publisher, events, timeout_s=config.publish_timeout_s, provider="twilio-voice"
        )

    def caller_of(form: TwilioForm, field: str = "From") -> str:
        caller = form.address(field, Channel.voice, default_region=config.default_region)
        if caller.startswith("anonymous:"):
            stats.withheld += 1
        return caller

    def caller_on_the_line(form: TwilioForm, call_sid: str) -> str:
        """The caller of an incoming call, filed under the call when the caller id is
        withheld or unreadable: a person is waiting on the line either way, and the call
        is still a contact."""
        raw = form.required("From")
        try:
            caller = normalize_party(Channel.voice, raw, config.default_region)
        except AddressError:
            if not is_withheld_caller(raw):
                log.warning("call %s: unreadable caller id %r", call_sid, raw)
            caller = withheld_call_party(call_sid)
        if caller.startswith("anonymous:"):
            stats.withheld += 1
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

    @router.post(
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
        caller = caller_on_the_line(form, call_sid)
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

    @router.post(
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

    @router.post(
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

    @router.post(
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

    return router
