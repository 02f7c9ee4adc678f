"""Outbound commands: what agents and campaigns ask a channel to send.

Published on ``sb.outbound.v1`` keyed by the recipient's address, so one customer's
messages leave in order. A channel's outbound adapter sends each command at most once
(``command_id`` is the idempotency key) and reports back on ``sb.interactions.v1``:
``message.sent.v1`` with the provider's id when the provider accepted it, otherwise
``delivery.status.v1`` *failed* whose ``message_ref`` is the command id.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.addresses import AddressError, normalize_party
from contracts.enums import Channel
from contracts.interactions import InvalidInteraction, parse_payload
from contracts.messages import MAX_BODY_CHARS
from contracts.text import HeaderText, Label, Ref, Text, UtcDatetime

__all__ = [
    "InvalidCommand",
    "MessageTemplate",
    "SendMessage",
    "dump_command",
    "parse_command",
]


class MessageTemplate(BaseModel):
    """A provider-approved template (WhatsApp outside the 24-hour customer-service window)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Label = Field(
        description="Template name as approved by the provider.", examples=["order_update"]
    )
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")] = Field(
        description="Template language code.", examples=["en_US", "de"]
    )
    parameters: list[Annotated[Text, StringConstraints(max_length=1024)]] = Field(
        default_factory=list,
        max_length=20,
        description="Body parameters {{1}}, {{2}}, … in order.",
        examples=[["4711", "Friday"]],
    )


class SendMessage(BaseModel):
    """Send one written message to a customer on one channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["message.send.v1"] = "message.send.v1"
    command_id: Ref = Field(
        default_factory=lambda: str(uuid4()),
        description="Idempotency key: the same command id is sent at most once.",
        examples=["c0a8012e-7d1f-4b8e-9a55-3f0e2b1c9d77"],
    )
    requested_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When the agent or campaign asked for it (UTC).",
    )
    channel: Channel = Field(description="email, sms, whatsapp, messenger or telegram.")
    to: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(
        description="The recipient's address, normalized like an event's party.",
        examples=["+14155552671", "ann@example.com", "telegram:123456789"],
    )
    purpose: Literal["service", "marketing"] = Field(
        "service",
        description="service: an answer the customer asked for; marketing: needs opt-in.",
    )
    body: Text = Field("", max_length=MAX_BODY_CHARS, description="Plain-text body.")
    subject: HeaderText | None = Field(None, description="Subject (e-mail only).")
    in_reply_to: Ref | None = Field(
        None, description="provider_ref (e.g. Message-ID) of the message this answers."
    )
    references: list[Ref] = Field(
        default_factory=list,
        max_length=100,
        description="E-mail thread ancestry, oldest first (References header).",
    )
    thread_ref: Ref | None = Field(None, description="Conversation key, if known.")
    template: MessageTemplate | None = Field(
        None, description="Send a provider-approved template instead of free text."
    )
    requested_by: Label | None = Field(
        None, description="The agent or campaign that asked.", examples=["agent_42"]
    )

    @field_validator("channel")
    @classmethod
    def _not_voice(cls, value: Channel) -> Channel:
        if value is Channel.voice:
            raise PydanticCustomError("channel", "voice has no written messages to send")
        return value

    @field_validator("to")
    @classmethod
    def _normalize_to(cls, value: str, info: ValidationInfo) -> str:
        channel = info.data.get("channel")
        if channel is None:
            return value
        try:
            return normalize_party(channel, value)
        except AddressError as exc:
            raise PydanticCustomError("address", "{reason}", {"reason": str(exc)}) from None

    @model_validator(mode="after")
    def _body_or_template(self) -> "SendMessage":
        if self.template is None and not self.body:
            raise PydanticCustomError("empty", "a message needs a body or a template")
        return self


class InvalidCommand(InvalidInteraction):
    """A payload on the outbound topic that is not a valid command (dead-lettered)."""


_ADAPTER: TypeAdapter[SendMessage] = TypeAdapter(SendMessage)


def parse_command(raw: bytes | str) -> SendMessage:
    """Validate one outbound command, or raise InvalidCommand."""
    return parse_payload(_ADAPTER, raw, InvalidCommand)


def dump_command(command: SendMessage) -> bytes:
    return command.model_dump_json().encode()
