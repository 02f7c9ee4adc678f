"""Reply from the timeline: ``POST /v1/customers/{id}/messages``.

The agent names the channel (and, if the customer has several addresses on it, which one); the
gateway checks that the address is the customer's and that the hub can send on the channel,
and publishes a ``message.send.v1`` command on ``sb.outbound.v1`` (confirmed by Kafka) before
answering 202.  The outbound dispatcher sends it exactly once and reports ``message.sent.v1``
or a failed delivery on the customer's timeline, where the console shows how far it got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from contracts import AddressError, Channel, SendMessage, normalize_party
from contracts.outbound import MAX_BODY_CHARS
from projections.timeline import TimelineView

WrittenChannel = Literal["sms", "email", "whatsapp", "messenger", "telegram"]
_PREFIXES = {"whatsapp": "whatsapp:", "messenger": "messenger:", "telegram": "telegram:"}


class Reply(BaseModel):
    channel: WrittenChannel = Field(examples=["sms"])
    to: str | None = Field(
        None,
        max_length=320,
        description="One of the customer's addresses on the channel; default: the one they "
        "last wrote from (or the only one).",
        examples=["+4930123456789"],
    )
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, examples=["Your order ships today."])
    subject: str | None = Field(None, max_length=998, description="E-mail only.")
    in_reply_to: str | None = Field(
        None, max_length=512, description="The provider_ref of the message this answers."
    )


class Queued(BaseModel):
    command_id: str
    channel: str
    to: str


def address_channel(address: str) -> str:
    """The written channel an address of ours belongs to."""
    for channel, prefix in _PREFIXES.items():
        if address.startswith(prefix):
            return channel
    if "@" in address:
        return "email"
    if address.startswith("+"):
        return "sms"
    return "other"


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def replies_router(
    view: TimelineView,
    *,
    sending_channels: Callable[[], set[Channel]],
    publish_command: Callable[[SendMessage], Awaitable[None]],
) -> APIRouter:
    router = APIRouter(tags=["messages"])

    @router.post(
        "/customers/{customer_id}/messages",
        status_code=202,
        response_model=Queued,
        responses={
            404: {"description": "No such customer."},
            503: {"description": "Kafka did not confirm the command; nothing was queued."},
        },
    )
    async def reply(customer_id: Annotated[UUID, Path()], reply: Reply, request: Request) -> Queued:
        """Send the customer a message on a written channel (queued for the dispatcher)."""
        card = await run_in_threadpool(view.card, customer_id)
        if card is None:
            raise HTTPException(404, f"no customer {customer_id}")
        if Channel(reply.channel) not in sending_channels():
            raise _invalid(
                "channel", f"the hub has no sender for {reply.channel} (set its credentials)"
            )
        theirs = [a for a in card.addresses if address_channel(a) == reply.channel]
        if reply.to is not None:
            try:
                to = normalize_party(reply.channel, reply.to)
            except AddressError as e:
                raise _invalid("to", str(e)) from None
            if to not in theirs:
                raise _invalid("to", f"{to} is not one of the customer's {reply.channel} addresses")
        else:
            latest = [r.party for r in card.recent if r.party in theirs]
            if not theirs:
                raise _invalid("to", f"the customer has no {reply.channel} address")
            to = latest[0] if latest else theirs[0]
        try:
            command = SendMessage(
                channel=reply.channel,
                to=to,
                body=reply.body,
                subject=reply.subject if reply.channel == "email" else None,
                in_reply_to=reply.in_reply_to,
                requested_by=request.state.caller.username,
            )
        except ValidationError as e:
            first = e.errors()[0]
            raise _invalid(str(first["loc"][0]) if first["loc"] else "body", first["msg"]) from None
        await publish_command(command)
        return Queued(command_id=command.command_id, channel=reply.channel, to=to)

    return router
