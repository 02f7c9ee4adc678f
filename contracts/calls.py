"""Voice call events, reported by the telephony provider's status callbacks."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from contracts.enums import Channel
from contracts.envelope import InteractionEvent, channel_field
from contracts.text import Label, Ref, Text, Url

__all__ = ["CallAnswered", "CallEnded", "CallEvent", "CallMissed", "VoicemailRecorded"]

# A week is far longer than any call or voicemail; the bound keeps nonsense out of the sums.
Seconds = Annotated[float, Field(ge=0, le=604_800, allow_inf_nan=False)]


class CallEvent(InteractionEvent):
    """A moment in one phone call; every call event is on the voice channel."""

    allowed_channels: ClassVar[frozenset[Channel]] = frozenset({Channel.voice})

    channel: Channel = channel_field(Channel.voice)
    call_id: Ref = Field(
        description=(
            "The provider's id of the whole call (Twilio CallSid); ties ringing, answer and "
            "end together. Usually equal to provider_ref."
        ),
        examples=["CA0123456789abcdef0123456789abcdef"],
    )


class CallRinging(CallEvent):
    """A call reached us (inbound) or started ringing at the customer (outbound)."""

    type: Literal["call.ringing.v1"] = "call.ringing.v1"


class CallAnswered(CallEvent):
    """The call was picked up."""

    type: Literal["call.answered.v1"] = "call.answered.v1"
    agent: Label | None = Field(
        default=None,
        description="The agent who answered, if an agent did.",
        examples=["agent-42"],
    )


class CallEnded(CallEvent):
    """A connected call was hung up."""

    type: Literal["call.ended.v1"] = "call.ended.v1"
    duration_s: Seconds = Field(description="Talk time in seconds.", examples=[183.4])
    agent: Label | None = Field(
        default=None,
        description="The agent on the call when it ended.",
        examples=["agent-42"],
    )


class CallMissed(CallEvent):
    """The call ended without being answered."""

    type: Literal["call.missed.v1"] = "call.missed.v1"
    reason: Literal["no-answer", "busy", "canceled", "failed", "abandoned"] = Field(
        description="Why nobody talked: abandoned means the caller hung up while queued.",
        examples=["no-answer"],
    )


class VoicemailRecorded(CallEvent):
    """The caller left a voicemail."""

    type: Literal["voicemail.recorded.v1"] = "voicemail.recorded.v1"
    recording_url: Url = Field(
        description="Where the provider stores the recording.",
        examples=["https://api.twilio.com/2010-04-01/Accounts/AC123/Recordings/RE123"],
    )
    duration_s: Seconds = Field(description="Length of the recording in seconds.", examples=[21.0])
    transcript: Text | None = Field(
        default=None,
        max_length=65_536,
        description="The provider's transcription, when there is one.",
        examples=["Hi, this is Ann, please call me back about my order."],
    )
