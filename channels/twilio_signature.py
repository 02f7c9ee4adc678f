"""The webhook edge that Twilio Voice and Twilio Messaging share: one place, used by both.

- ``TwilioWebhook.verified_form``: rebuilds the URL Twilio requested from the configured
  public base URL (behind a reverse proxy the Host header and the scheme are the proxy's,
  not what Twilio signed), reads the form and checks ``X-Twilio-Signature`` with Twilio's own
  ``RequestValidator`` -> 403 on any failure, before anything is parsed or published.
- ``TwilioForm``: field access that answers 400 naming the missing or invalid field.
- Publishing is ``channels.webhooks.publish_confirmed`` (shared with every channel).
- Replays: Twilio repeats a delivery with the same ``I-Twilio-Idempotency-Token``; an
  answered token gets the same answer again without publishing twice. That cache is only a
  saving: the guarantee is the recorder's dedupe on ``provider_ref``, which survives restarts
  and spans processes.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, Response
from fastapi.security import APIKeyHeader
from pydantic import ValidationError
from starlette.datastructures import FormData
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from contracts import AddressError, Channel, normalize_party, withheld_caller

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_SCHEME",
    "TWIML_ANSWER",
    "WEBHOOK_RESPONSES",
    "WITHHELD_CALLER_IDS",
    "TwilioForm",
    "TwilioWebhook",
    "WithheldAddress",
    "bad_request",
    "form_body",
    "invalid_event",
    "twiml",
    "withheld_call_party",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

# Twilio's bodies are a few hundred bytes (an SMS body is at most 1600 characters); anything
# far bigger is not Twilio and is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024
_REPLAY_CACHE_SIZE = 10_000

# Caller ids that carriers and Twilio put in From when the number is withheld. Twilio also
# uses "+266696687" (a number in Lesotho that is never assigned) for anonymous callers.
WITHHELD_CALLER_IDS = frozenset(
    {"anonymous", "restricted", "private", "unknown", "unavailable", "blocked", "+266696687"}
)


# -- what the OpenAPI document says about every Twilio webhook --------------------------------
# The scheme only documents the header (auto_error off): verified_form checks it, after the
# body is read, because the signature covers the form parameters.
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


class WithheldAddress(Exception):
    """The customer's address is withheld: the contact cannot be filed under anyone."""


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def invalid_event(exc: ValidationError) -> HTTPException:
    """400 for a request whose values do not make a valid contract event."""
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or 'event'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return bad_request("the request does not make a valid event: " + "; ".join(parts))


def withheld_call_party(call_sid: str) -> str:
    """The party a call with no readable caller id is filed under; 400 naming CallSid when
    the call id itself cannot be one."""
    try:
        return withheld_caller(call_sid)
    except AddressError as exc:
        raise bad_request(f"CallSid: {exc}") from None


def twiml(document: object) -> Response:
    """A TwiML answer (VoiceResponse or MessagingResponse)."""
    return Response(content=str(document), media_type="application/xml")


@dataclass(frozen=True)
class TwilioForm:
    """The verified parameters of one Twilio webhook request."""

    params: FormData
    idempotency_token: str | None = None

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if value is None or not str(value).strip():
            raise bad_request(f"{name} is missing: Twilio always sends it on this webhook")
        return str(value).strip()

    def optional(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None or not str(value).strip():
            return None
        return str(value).strip()

    def number(self, name: str, *, required: bool = False) -> float | None:
        raw = self.required(name) if required else self.optional(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise bad_request(f"{name} must be a number of seconds, not {raw!r}") from None
        if not value >= 0 or value == float("inf"):
            raise bad_request(f"{name} must be zero or more seconds, not {raw!r}")
        return value

    def integer(self, name: str) -> int | None:
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise bad_request(f"{name} must be an integer, not {raw!r}") from None

    def timestamp(self, name: str) -> datetime | None:
        """Twilio's ``Timestamp`` is RFC 2822 (``Mon, 16 Aug 2010 03:45:01 +0000``)."""
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            moment = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            moment = None
        if moment is None or moment.tzinfo is None:
            raise bad_request(
                f"{name} must be an RFC 2822 date with an offset such as "
                f"'Mon, 16 Aug 2010 03:45:01 +0000', not {raw!r}"
            )
        return moment

    def address(self, name: str, channel: Channel, *, default_region: str | None = None) -> str:
        """The field as a normalized party address; 400 if it is not one.

        Raises WithheldAddress for a withheld caller id, which is not malformed: the
        caller chose to hide it.
        """
        raw = self.required(name)
        if raw.lower() in WITHHELD_CALLER_IDS:
            call_sid = self.optional("CallSid")
            if channel is Channel.voice and call_sid:
                return withheld_call_party(call_sid)  # still a contact: filed under its call
            raise WithheldAddress(f"{name} is withheld ({raw!r})")
        try:
            return normalize_party(channel, raw, default_region)
        except AddressError as exc:
            raise bad_request(f"{name}: {exc}") from None


class TwilioWebhook:
    """Signature checks for the webhooks of one Twilio account, behind one public URL.

    ``public_base_url`` is the URL at which Twilio reaches this application's root, e.g.
    ``https://hooks.example.com/switchboard``: a route's public URL is that plus the route's
    path and query string. ``shared_key_secret`` is the secret of a Twilio SharedKey, used
    when a request says it was signed with one (``X-Twilio-Webhooks-Signature-Settings``).
    """

    def __init__(
        self,
        *,
        auth_token: str,
        public_base_url: str,
        shared_key_secret: str | None = None,
    ) -> None:
        if not auth_token:
            raise ValueError("auth_token is empty: Twilio webhooks cannot be verified without it")
        if not public_base_url.startswith(("https://", "http://")):
            raise ValueError(
                f"public_base_url must be the absolute URL Twilio calls, not {public_base_url!r}"
            )
        self.public_base_url = public_base_url.rstrip("/")
        self._by_token = RequestValidator(auth_token)
        self._by_shared_key = RequestValidator(shared_key_secret) if shared_key_secret else None
        self._answered: OrderedDict[str, Response] = OrderedDict()

    def url(self, path: str) -> str:
        """The public URL of one of our routes, for callbacks we hand to Twilio."""
        return self.public_base_url + path

    def public_url(self, request: Request) -> str:
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        # ASGI servers put the mount prefix in root_path; newer Starlette also keeps it in
        # path. Either way the public base URL already stands for the application's root.
        if root and path.startswith(root):
            path = path[len(root) :]
        query = request.scope.get("query_string", b"")
        return self.public_base_url + path + (f"?{query.decode('latin-1')}" if query else "")

    async def verified_form(self, request: Request) -> TwilioForm:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise HTTPException(403, f"{SIGNATURE_HEADER} is missing: not signed by Twilio")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise bad_request(
                "expected an application/x-www-form-urlencoded body, "
                f"not {content_type or 'no content type'!r}"
            )
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body is {len(body)} bytes, over {MAX_BODY_BYTES}")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad_request(f"the form body is not valid UTF-8 form encoding: {exc}") from None
        params = FormData(pairs)
        settings = request.headers.get(SIGNATURE_SETTINGS_HEADER)
        validator = self._by_token
        if settings and "key=" in settings:
            if self._by_shared_key is None:
                raise HTTPException(
                    403, "signed with a Twilio SharedKey, but no shared_key_secret is configured"
                )
            validator = self._by_shared_key
        url = self.public_url(request)
        if not _signature_matches(validator, url, params, signature, settings):
            raise HTTPException(403, f"{SIGNATURE_HEADER} does not match this request at {url}")
        return TwilioForm(params=params, idempotency_token=request.headers.get(IDEMPOTENCY_HEADER))

    def replayed(self, form: TwilioForm) -> Response | None:
        """The answer already given to this delivery, if Twilio is repeating it."""
        if form.idempotency_token is None:
            return None
        answer = self._answered.get(form.idempotency_token)
        if answer is not None:
            self._answered.move_to_end(form.idempotency_token)
        return answer

    def remember(self, form: TwilioForm, answer: Response) -> Response:
        """Keep the answer to a delivery whose events Kafka confirmed; returns it."""
        if form.idempotency_token is not None:
            self._answered[form.idempotency_token] = answer
            if len(self._answered) > _REPLAY_CACHE_SIZE:
                self._answered.popitem(last=False)
        return answer


def _signature_matches(
    validator: RequestValidator,
    url: str,
    params: FormData,
    signature: str,
    settings: str | None,
) -> bool:
    algorithm = get_signature_algorithm(settings)
    # RequestValidator.validate computes two HMACs on every request (the URL with and
    # without an explicit port, since Twilio signs either). The URL as configured is the
    # usual one, so one HMAC settles a genuine request; anything else gets the full check.
    try:
        expected = validator.compute_signature(url, params, algorithm)
    except ValueError:  # an algorithm this twilio version does not know
        return False
    if hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return validator.validate(url, params, signature, algorithm=algorithm)
