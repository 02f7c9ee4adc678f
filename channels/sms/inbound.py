"""Twilio Messaging webhooks: incoming messages (with STOP/START/HELP) and delivery status.

Every route checks Twilio's signature first (403, nothing published), answers 400 naming
the field for a malformed request, and answers 2xx only after Kafka confirmed every event
of the delivery (503 otherwise, so that Twilio retries).

An incoming message is always recorded as message.received.v1 (provider_ref MessageSid);
a keyword adds its consent events (``channels.sms.keywords``). Twilio's numbers handle
STOP/START themselves and send the carrier-mandated confirmation, so we reply only to HELP.
A ``whatsapp:`` sender (Twilio's WhatsApp) is filed on the whatsapp channel.

Status callbacks become delivery.status.v1 with provider_ref ``<MessageSid>:<MessageStatus>``:
every report is recorded once, in whatever order it arrives; the delivery-status view keeps
the furthest one (``contracts.status_advances``), so a late "sent" never hides "delivered".
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response, Security
from pydantic import ValidationError
from twilio.twiml.messaging_response import MessagingResponse

from channels.publishing import InteractionPublisher
from channels.sms.config import TwilioSmsConfig
from channels.sms.keywords import Keyword, consent_changes, keyword_in
from channels.sms.paths import TWILIO_SMS_PATH, TWILIO_SMS_STATUS_PATH
from channels.sms.status import INBOUND_MESSAGE_STATUSES, TWILIO_MESSAGE_STATUS, delivery_status
from channels.twilio import (
    SIGNATURE_SCHEME,
    TWIML_ANSWER,
    WEBHOOK_RESPONSES,
    TwilioForm,
    TwilioSignature,
    TwilioWebhook,
    WithheldAddress,
    form_body,
    twiml,
)
from channels.webhooks import bad_request, invalid_event, publish_confirmed
from contracts import Channel, DeliveryStatusChanged, InteractionEvent, MessageReceived

# The request bodies as the OpenAPI document shows them. MessageSid or its older name SmsSid
# (and MessageStatus or SmsStatus) must be there: JSON Schema's "required" cannot say "either".
_MESSAGE = {
    "MessageSid": "The message.",
    "SmsSid": "The message (older name).",
    "From": "The sender.",
    "To": "The recipient.",
}
_INCOMING_FORM = form_body(
    {**_MESSAGE, "Body": "The text; STOP, START and HELP are keywords."}, required=("From",)
)
_STATUS_FORM = form_body(
    {
        **_MESSAGE,
        "MessageStatus": "How far the message got (case does not matter).",
        "SmsStatus": "How far the message got (older name).",
        "ErrorCode": "Twilio's error code of a failure.",
        "ErrorMessage": "Its text.",
    }
)


def channel_of(address: str) -> Channel:
    return Channel.whatsapp if address.lower().startswith("whatsapp:") else Channel.sms


def message_sid(form: TwilioForm) -> str:
    # SmsSid is the older name of the same id; some callbacks still carry only it.
    sid = form.optional("MessageSid") or form.optional("SmsSid")
    if sid is None:
        raise bad_request("MessageSid is missing: Twilio always sends it on this webhook")
    return sid


def received_events(
    form: TwilioForm, *, default_region: str | None
) -> tuple[list[InteractionEvent], Keyword | None]:
    """The events an incoming message means, and the keyword it is (if any)."""
    sid = message_sid(form)
    channel = channel_of(form.required("From"))
    party = form.address("From", channel, default_region=default_region)
    body = form.params.get("Body") or ""
    endpoint = form.optional("To")
    now = datetime.now(UTC)
    events: list[InteractionEvent] = [
        MessageReceived(
            channel=channel,
            party=party,
            endpoint=endpoint,
            provider_ref=sid,
            occurred_at=now,
            body=str(body),
        )
    ]
    found = keyword_in(str(body))
    if found is None:
        return events, None
    keyword, word = found
    events += consent_changes(
        keyword,
        word,
        channel=channel,
        party=party,
        message_sid=sid,
        endpoint=endpoint,
        occurred_at=now,
    )
    return events, keyword


def status_event(form: TwilioForm, *, default_region: str | None) -> DeliveryStatusChanged | None:
    """The delivery report a status callback carries, or None for an inbound status."""
    sid = message_sid(form)
    reported = form.optional("MessageStatus") or form.optional("SmsStatus")
    if reported is None:
        raise bad_request("MessageStatus is missing: Twilio always sends it on this webhook")
    try:
        status = delivery_status(reported)
    except KeyError:
        known = sorted(TWILIO_MESSAGE_STATUS.keys() | INBOUND_MESSAGE_STATUSES)
        raise bad_request(
            f"MessageStatus {reported!r} is unknown; expected one of {known}"
        ) from None
    if status is None:
        return None
    channel = channel_of(form.required("To"))
    error_message = form.optional("ErrorMessage")
    if reported.lower() == "canceled" and error_message is None:
        error_message = "canceled before it was sent"
    return DeliveryStatusChanged(
        channel=channel,
        party=form.address("To", channel, default_region=default_region),
        endpoint=form.optional("From"),
        provider_ref=f"{sid}:{reported.lower()}",
        message_ref=sid,
        status=status,
        error_code=form.optional("ErrorCode"),
        error_message=error_message,
        occurred_at=datetime.now(UTC),
    )


def twilio_sms_router(*, publisher: InteractionPublisher, config: TwilioSmsConfig) -> APIRouter:
    webhook = TwilioWebhook(
        TwilioSignature(
            auth_token=config.auth_token,
            public_base_url=config.public_base_url,
            shared_key_secret=config.shared_key_secret,
        )
    )
    router = APIRouter(
        tags=["webhooks: Twilio Messaging"],
        responses=WEBHOOK_RESPONSES,
        dependencies=[Security(SIGNATURE_SCHEME)],
    )

    @router.post(
        TWILIO_SMS_PATH,
        summary="Incoming SMS: record it; STOP/START/HELP keywords",
        response_class=Response,
        responses=TWIML_ANSWER,
        openapi_extra=_INCOMING_FORM,
    )
    @webhook.answers_once
    async def incoming_message(form: TwilioForm) -> Response:
        reply = MessagingResponse()
        try:
            events, keyword = received_events(form, default_region=config.default_region)
        except WithheldAddress:
            return twiml(reply)
        except ValidationError as exc:
            raise invalid_event(exc) from None
        if keyword is Keyword.help:
            reply.message(config.help_text)
        await publish_confirmed(
            publisher, events, timeout_s=config.publish_timeout_s, provider="twilio-sms"
        )
        return twiml(reply)

    @router.post(
        TWILIO_SMS_STATUS_PATH,
        status_code=204,
        summary="Message status callback",
        response_class=Response,
        openapi_extra=_STATUS_FORM,
    )
    @webhook.answers_once
    async def message_status(form: TwilioForm) -> Response:
        try:
            event = status_event(form, default_region=config.default_region)
        except WithheldAddress:
            event = None
        except ValidationError as exc:
            raise invalid_event(exc) from None
        if event is not None:
            await publish_confirmed(
                publisher, [event], timeout_s=config.publish_timeout_s, provider="twilio-sms"
            )
        return Response(status_code=204)

    return router
