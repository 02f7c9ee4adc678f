"""A generic CTI webhook: any phone system (Asterisk, 3CX, a cloud PBX) reports its calls.

POST ``/webhooks/cti/events`` with ``Authorization: Bearer <token>`` and a JSON or
form-encoded body (see ``CtiCallEvent``; the OpenAPI document shows both). It produces the
same contract events as the Twilio webhooks:

- ``newCall`` -> call.ringing.v1 (``provider_ref`` ``<call_id>:ringing``)
- ``answer``  -> call.answered.v1 (``<call_id>:answered``; agent = ``agent`` or ``extension``)
- ``hangup``  -> call.ended.v1 when ``duration`` (talk seconds, e.g. Asterisk's billsec) is
  above zero (``<call_id>:ended``), else call.missed.v1 with ``reason`` (default
  ``no-answer``; ``<call_id>:missed``).

The customer is ``from`` on inbound calls and ``to`` on outbound ones. A phone system that
posts the same event twice gets one recorded event (the recorder dedupes ``provider_ref``).
A withheld or unreadable caller id is recorded under the party ``anonymous:<call_id>`` (see
``contracts.call_party``, the rule the Twilio webhooks follow too): the call is still a
contact.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from starlette.concurrency import run_in_threadpool

from channels.publishing import InteractionPublisher
from channels.voice.config import CtiConfig
from channels.voice.directory import CallRouter
from channels.voice.paths import CTI_EVENTS_PATH
from channels.webhooks import bad_request, invalid_event, publish_confirmed, refused_values
from contracts import (
    AddressError,
    CallAnswered,
    CallEnded,
    CallMissed,
    CallRinging,
    Direction,
    call_party,
    is_withheld_party,
)
from contracts.calls import CallEvent
from contracts.text import Label, Ref, UtcDatetime

MAX_BODY_BYTES = 64 * 1024
_NUMERIC = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


class CtiCallEvent(BaseModel):
    """One call event from a phone system. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event: Literal["newCall", "answer", "hangup"] = Field(
        description="newCall: it rings; answer: someone picked up; hangup: it is over.",
        examples=["newCall"],
    )
    call_id: Ref = Field(
        description="The phone system's id of the call (Asterisk: linkedid or uniqueid).",
        examples=["1714060712.42"],
    )
    direction: Literal["inbound", "outbound"] = Field(
        description="inbound: the customer called us; outbound: we called the customer.",
        examples=["inbound"],
    )
    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=320,
        description=(
            "Calling number (E.164, or national with the configured default region); a "
            "withheld or unreadable one files the call under itself."
        ),
        examples=["+14155552671"],
    )
    to: str = Field(
        min_length=1, max_length=320, description="Called number.", examples=["+18005550100"]
    )
    agent: Label | None = Field(None, description="The agent involved.", examples=["agent_42"])
    extension: Label | None = Field(
        None, description="The extension involved, when the agent is not known.", examples=["201"]
    )
    timestamp: UtcDatetime | None = Field(
        None,
        description="When it happened, ISO 8601 with an offset; default: when we received it.",
        examples=["2026-03-14T09:26:53+01:00"],
    )
    duration: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="hangup: talk time in seconds; absent or 0 means nobody answered.",
        examples=[183.4],
    )
    reason: Literal["no-answer", "busy", "canceled", "failed", "abandoned"] | None = Field(
        None,
        description="hangup of an unanswered call: why nobody talked (default no-answer).",
        examples=["busy"],
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_8601_only(cls, value: Any) -> Any:
        # pydantic would also read a number (or a numeric string, as every form value is) as
        # Unix seconds; the document promises ISO 8601, so that is all a time may be.
        if isinstance(value, int | float) or (isinstance(value, str) and _NUMERIC.match(value)):
            raise ValueError("must be an ISO 8601 time with an offset, not a number")
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _a_number_in_json(cls, value: Any, info: ValidationInfo) -> Any:
        # A form has only strings, so "183.4" must do there; JSON has numbers, and the
        # document says a number, so pydantic's lax "183.4" or false is refused.
        typed = bool(info.context and info.context.get("typed"))
        if typed and value is not None and isinstance(value, bool | str):
            raise ValueError("must be a number of seconds")
        return value


class CtiRoute(BaseModel):
    """Where the hub routed a new inbound call: ring this agent, or put it in this queue."""

    kind: Literal["agent", "queue", "voicemail", "callback"] = Field(examples=["agent"])
    queue: str | None = Field(None, examples=["support"])
    agent: str | None = Field(None, description="The agent's user name.", examples=["ann"])
    rule: str = Field(examples=["last-agent"])
    reason: str = Field(examples=["ann was the last agent (2 h ago) and is available"])


class CtiAccepted(BaseModel):
    status: Literal["recorded", "ignored"] = Field(
        description="recorded: Kafka confirmed the event; ignored: nothing to record."
    )
    type: str | None = Field(None, examples=["call.ringing.v1"])
    provider_ref: str | None = Field(None, examples=["1714060712.42:ringing"])
    detail: str | None = Field(None, examples=["the caller id is withheld"])
    route: CtiRoute | None = Field(
        None, description="newCall, inbound, when the hub routes calls: where it goes."
    )


def _form_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON body's schema for a form, where a blank value stands for an absent field
    (``_fields`` drops them: a form cannot say null)."""
    blank = {"type": "string", "pattern": r"^\s*$"}
    optional = set(schema["properties"]) - set(schema.get("required", ()))
    properties = {
        name: {"anyOf": [prop, blank]} if name in optional else prop
        for name, prop in schema["properties"].items()
    }
    return {**schema, "properties": properties}


_SCHEMA = CtiCallEvent.model_json_schema(by_alias=True)
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _SCHEMA},
            "application/x-www-form-urlencoded": {"schema": _form_schema(_SCHEMA)},
        },
    }
}


def cti_router(
    *,
    publisher: InteractionPublisher,
    config: CtiConfig,
    router: CallRouter | None = None,
    routing_topic: str | None = None,
) -> APIRouter:
    """The CTI webhook.  With a ``router``, a new inbound call is routed at once and the answer
    names the target (``route``): the phone system rings that agent's extension or queue."""
    if router is not None and routing_topic is None:
        raise ValueError("a router needs the routing_topic its decisions go to")
    call_router = router
    router = APIRouter(tags=["webhooks: CTI"])
    bearer = HTTPBearer(auto_error=False, description="The CTI token of this installation.")
    expected = config.token.encode()

    @router.post(
        CTI_EVENTS_PATH,
        response_model=CtiAccepted,
        summary="A call event from any phone system",
        openapi_extra=_REQUEST_BODY,
        responses={
            400: {"description": "Malformed event; the detail names the field."},
            401: {"description": "Missing or wrong bearer token; nothing was published."},
            413: {"description": f"The body is over {MAX_BODY_BYTES} bytes."},
            415: {"description": "Neither JSON nor form-encoded."},
            503: {"description": "Kafka did not confirm; post the event again."},
        },
    )
    async def cti_event(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> CtiAccepted:
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected):
            # 401, not 403: the caller has not authenticated (RFC 9110 15.5.2), and the
            # challenge tells it how to.
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        fields, typed = await _fields(request)
        posted = parse_cti_event(fields, typed=typed)
        event = contract_event(posted, default_region=config.default_region)
        route = None
        writes = []
        if (
            call_router is not None
            and isinstance(event, CallRinging)
            and event.direction == Direction.inbound
        ):
            known = await run_in_threadpool(
                call_router.known, "" if is_withheld_party(event.party) else event.party
            )
            routed = call_router.route(
                channel="voice",
                party=event.party,
                contact_ref=event.call_id,
                known=known,
                dialled=event.endpoint,
            )
            route = CtiRoute(
                kind=routed.target.kind,
                queue=routed.target.queue,
                agent=routed.target.agent,
                rule=routed.rule,
                reason=routed.reason,
            )
            writes.append(
                publish_confirmed(
                    publisher,
                    [routed],
                    timeout_s=config.publish_timeout_s,
                    provider="cti",
                    topic=routing_topic,
                )
            )
        writes.append(
            publish_confirmed(
                publisher, [event], timeout_s=config.publish_timeout_s, provider="cti"
            )
        )
        await asyncio.gather(*writes)
        return CtiAccepted(
            status="recorded", type=event.type, provider_ref=event.provider_ref, route=route
        )

    return router


async def _fields(request: Request) -> tuple[dict[str, Any], bool]:
    """The posted fields, and whether they are typed (JSON) rather than all strings (a form)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body is {len(body)} bytes, over {MAX_BODY_BYTES}")
    if content_type == "application/json":
        try:
            fields = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"the body is not valid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise bad_request("the JSON body must be an object with the event's fields")
        return fields, True
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad_request(f"the form body is not valid UTF-8 form encoding: {exc}") from None
        # An empty form field means "not given", as it would be absent in JSON.
        return {name: value for name, value in pairs if value.strip()}, False
    raise HTTPException(
        415,
        "send application/json or application/x-www-form-urlencoded, "
        f"not {content_type or 'no content type'!r}",
    )


def parse_cti_event(fields: dict[str, Any], *, typed: bool = True) -> CtiCallEvent:
    """The event in the posted fields; ``typed`` for JSON, whose numbers must be numbers."""
    try:
        return CtiCallEvent.model_validate(fields, context={"typed": typed})
    except ValidationError as exc:
        raise bad_request(refused_values(exc, whole="body")) from None


def contract_event(posted: CtiCallEvent, *, default_region: str | None) -> CallEvent:
    """The contract event a CTI event reports. Pure apart from the default time (now)."""
    inbound = posted.direction == "inbound"
    raw, ours = (posted.from_, posted.to) if inbound else (posted.to, posted.from_)
    try:  # withheld or unreadable: still a contact, filed under its call
        party = call_party(raw, posted.call_id, default_region)
    except AddressError as exc:  # the party is made from the call id: it is what is wrong
        raise bad_request(f"call_id: {exc}") from None
    common: dict[str, Any] = {
        "direction": Direction.inbound if inbound else Direction.outbound,
        "party": party,
        "endpoint": ours.strip() or None,
        "call_id": posted.call_id,
        "occurred_at": posted.timestamp or datetime.now(UTC),
    }
    agent = posted.agent or posted.extension
    try:
        if posted.event == "newCall":
            return CallRinging(provider_ref=f"{posted.call_id}:ringing", **common)
        if posted.event == "answer":
            return CallAnswered(provider_ref=f"{posted.call_id}:answered", agent=agent, **common)
        if posted.duration:
            return CallEnded(
                provider_ref=f"{posted.call_id}:ended",
                duration_s=posted.duration,
                agent=agent,
                **common,
            )
        return CallMissed(
            provider_ref=f"{posted.call_id}:missed", reason=posted.reason or "no-answer", **common
        )
    except ValidationError as exc:
        raise invalid_event(exc) from None
