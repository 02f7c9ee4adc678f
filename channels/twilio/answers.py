"""How the Twilio webhooks answer, and what the OpenAPI document says about them."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.security import APIKeyHeader

from channels.twilio.signature import MAX_BODY_BYTES, SIGNATURE_HEADER

__all__ = ["SIGNATURE_SCHEME", "TWIML_ANSWER", "WEBHOOK_RESPONSES", "form_body", "twiml"]

# The scheme only documents the header (auto_error off): the signature is checked after the
# body is read, because it covers the form parameters.
SIGNATURE_SCHEME = APIKeyHeader(
    name=SIGNATURE_HEADER,
    scheme_name="TwilioSignature",
    auto_error=False,
    description="Twilio's signature of the public URL and the form parameters "
    "(twilio.request_validator.RequestValidator).",
)
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request; the detail names the field."},
    403: {"description": "Missing or wrong X-Twilio-Signature; nothing was published."},
    413: {"description": f"The body is over {MAX_BODY_BYTES} bytes: not Twilio."},
    503: {"description": "Kafka did not confirm; Twilio should retry."},
}
TWIML_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "TwiML: what Twilio does next.",
        "content": {"application/xml": {"schema": {"type": "string"}}},
    }
}


def twiml(document: object) -> Response:
    """A TwiML answer (VoiceResponse or MessagingResponse)."""
    return Response(content=str(document), media_type="application/xml")


def form_body(
    fields: dict[str, str],
    *,
    required: tuple[str, ...] = (),
    enums: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """``openapi_extra`` for a Twilio form: the fields we read (Twilio sends more, all kept)."""
    properties: dict[str, Any] = {
        name: {"type": "string", "description": description} for name, description in fields.items()
    }
    for name, values in (enums or {}).items():
        properties[name]["enum"] = values
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }
