"""The Twilio webhook edge that Twilio Voice (``channels.voice``) and Twilio Messaging
(``channels.sms``) share, once.

- ``signature``: ``TwilioSignature``, is this request from Twilio? ``X-Twilio-Signature``
  checked against the configured public URL (not the Host header), 403 on any failure.
- ``form``: ``TwilioForm``, the verified parameters read field by field, 400 naming the field.
- ``webhook``: ``TwilioWebhook.answers_once``, the opening and closing of every route:
  verified form in, a repeated delivery answered as before without publishing twice.
- ``answers``: TwiML answers and what the OpenAPI document says about every Twilio webhook.

Publishing is ``channels.webhooks.publish_confirmed`` (shared with every channel).
"""

from channels.twilio.answers import (
    SIGNATURE_SCHEME,
    TWIML_ANSWER,
    WEBHOOK_RESPONSES,
    form_body,
    twiml,
)
from channels.twilio.form import TwilioForm, WithheldAddress
from channels.twilio.signature import TwilioSignature
from channels.twilio.webhook import IDEMPOTENCY_HEADER, TwilioWebhook

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_SCHEME",
    "TWIML_ANSWER",
    "WEBHOOK_RESPONSES",
    "TwilioForm",
    "TwilioSignature",
    "TwilioWebhook",
    "WithheldAddress",
    "form_body",
    "twiml",
]
