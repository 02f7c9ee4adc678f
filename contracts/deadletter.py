"""The record a consumer publishes when it cannot process an input record."""

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from contracts.text import Label, UtcDatetime

__all__ = ["DeadLetter"]


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"payload_b64 is not standard base64: {exc}") from None
    return value


class DeadLetter(BaseModel):
    """An input record that failed, with where it came from and why, to inspect and replay.

    The payload travels base64-encoded because a dead letter is often not valid UTF-8 or JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_topic: Label = Field(
        description="Topic of the failed record.", examples=["sb.interactions.v1"]
    )
    source_partition: int = Field(ge=0, le=2**31 - 1, description="Its partition.", examples=[3])
    source_offset: int = Field(
        ge=0, le=2**63 - 1, description="Its offset in that partition.", examples=[81723]
    )
    reason: str = Field(
        max_length=4000,
        description="What was wrong, for people: 'field.path: message; ...'.",
        examples=["party: 'anonymous' is not a phone number: the caller id is withheld"],
    )
    error_type: Label = Field(
        description="Class name of the error that rejected it.", examples=["InvalidInteraction"]
    )
    payload_b64: Annotated[str, AfterValidator(_check_base64)] = Field(
        description="The record's value, base64 (RFC 4648, with padding).", examples=["e30="]
    )
    failed_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When the consumer gave up on it (UTC).",
        examples=["2025-03-14T09:26:55Z"],
    )

    @classmethod
    def for_record(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        payload: bytes,
        error: BaseException,
        reason: str | None = None,
    ) -> "DeadLetter":
        """Build the dead letter for one failed record; ``reason`` defaults to the error's own."""
        reason = reason or getattr(error, "reason", None) or str(error) or type(error).__name__
        return cls(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            reason=reason[:4000],
            error_type=type(error).__name__,
            payload_b64=base64.b64encode(payload).decode("ascii"),
        )

    @property
    def payload(self) -> bytes:
        """The original record value."""
        return base64.b64decode(self.payload_b64)
