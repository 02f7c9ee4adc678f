"""Consent to be contacted, as given or withdrawn by the customer."""

from typing import Literal

from pydantic import Field

from contracts.envelope import InteractionEvent
from contracts.text import Label

__all__ = ["ConsentChanged"]


class ConsentChanged(InteractionEvent):
    """A customer granted or withdrew consent for one purpose on this channel and address."""

    type: Literal["consent.changed.v1"] = "consent.changed.v1"
    purpose: Literal["service", "marketing"] = Field(
        description="What the consent covers: service messages or marketing.",
        examples=["marketing"],
    )
    granted: bool = Field(description="True when given, False when withdrawn.", examples=[False])
    source: Label = Field(
        description="How we learned it: sms-keyword, web-form, agent, ...",
        examples=["sms-keyword", "web-form", "agent"],
    )
    keyword: Label | None = Field(
        default=None,
        description="The keyword the customer sent, for sms-keyword consent.",
        examples=["STOP"],
    )
