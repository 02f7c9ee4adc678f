"""Written messages on every channel except voice: e-mail, SMS and the social messengers."""

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from contracts.enums import Channel, Direction
from contracts.envelope import InteractionEvent, direction_field
from contracts.text import HeaderText, Label, Ref, Text

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_BODY_CHARS",
    "MAX_REFERENCES",
    "AttachmentRef",
    "MessageEvent",
    "MessageReceived",
    "MessageSent",
]

MAX_BODY_CHARS = 65_536
MAX_ATTACHMENTS = 100
# A long e-mail thread carries its whole ancestry; beyond this only the newest are kept.
MAX_REFERENCES = 100

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class AttachmentRef(BaseModel):
    """A file that came with a message; the bytes live in blob storage under their sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: Label = Field(
        description="The name the sender gave the file.", examples=["invoice.pdf"]
    )
    content_type: Label = Field(
        description="MIME type as declared by the sender.", examples=["application/pdf"]
    )
    size: int = Field(ge=0, le=2**53 - 1, description="Size in bytes.", examples=[48213])
    sha256: Annotated[
        str,
        StringConstraints(pattern=_SHA256.pattern),
        # Lower case so that one file has one key whatever case the producer used.
        AfterValidator(str.lower),
    ] = Field(
        description="SHA-256 of the content, 64 hex digits.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )


class MessageEvent(InteractionEvent):
    """What every written message carries."""

    allowed_channels: ClassVar[frozenset[Channel]] = frozenset(Channel) - {Channel.voice}

    body: Text = Field(
        max_length=MAX_BODY_CHARS,
        description="Plain-text body (for e-mail: the new text with quotes stripped).",
        examples=["Hi, where is my order 4711?"],
    )
    subject: HeaderText | None = Field(
        default=None,
        description="Subject line (e-mail only).",
        examples=["Order 4711"],
    )
    thread_ref: Ref | None = Field(
        default=None,
        description="Conversation key, e.g. the root Message-ID of an e-mail thread.",
        examples=["<CAF1root@mail.example.com>"],
    )
    in_reply_to: Ref | None = Field(
        default=None,
        description="provider_ref of the message this one answers.",
        examples=["<CAF1x@mail.example.com>"],
    )
    attachments: list[AttachmentRef] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS,
        description="Files that came with the message.",
    )
    full_body: Text | None = Field(
        default=None,
        max_length=MAX_BODY_CHARS,
        description=(
            "The whole plain text, quoted reply and signature included, when ``body`` is "
            "shortened (e-mail); absent when ``body`` already is the whole text."
        ),
        examples=["Hi, where is my order 4711?\n\n-- \nAnn\n\n> On Monday you wrote: ..."],
    )
    references: list[Ref] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description=(
            "E-mail thread ancestry, oldest first (the References header): a reply to this "
            "message sends these followed by its provider_ref."
        ),
        examples=[["<CAF1root@mail.example.com>", "<CAF1x@mail.example.com>"]],
    )
    auto_reply: bool = Field(
        default=False,
        description=(
            "Sent by a machine, not typed by the customer: out-of-office notes and other "
            "automatic replies (e-mail: Auto-Submitted and similar headers)."
        ),
        examples=[False],
    )


class MessageReceived(MessageEvent):
    """A customer wrote to us."""

    allowed_directions: ClassVar[frozenset[Direction]] = frozenset({Direction.inbound})

    type: Literal["message.received.v1"] = "message.received.v1"
    direction: Direction = direction_field(Direction.inbound)


class MessageSent(MessageEvent):
    """We wrote to a customer and the provider accepted it."""

    allowed_directions: ClassVar[frozenset[Direction]] = frozenset({Direction.outbound})

    type: Literal["message.sent.v1"] = "message.sent.v1"
    direction: Direction = direction_field(Direction.outbound)
