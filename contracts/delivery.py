"""Delivery receipts for outbound messages."""

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from contracts.enums import Channel, Direction
from contracts.envelope import InteractionEvent, direction_field
from contracts.text import Label, Ref, Text

__all__ = ["DeliveryStatus", "DeliveryStatusChanged", "status_advances", "status_of"]


class DeliveryStatus(StrEnum):
    """Where an outbound message is on its way to the customer.

    Forward order: queued < sent < delivered < read. failed and undelivered are terminal.
    """

    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"
    undelivered = "undelivered"

    @property
    def rank(self) -> int:
        """Position in the forward order; both terminal failures rank above read."""
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        """True for failed and undelivered: no later report changes the outcome."""
        return self in _TERMINAL


_RANK = {
    DeliveryStatus.queued: 0,
    DeliveryStatus.sent: 1,
    DeliveryStatus.delivered: 2,
    DeliveryStatus.read: 3,
    DeliveryStatus.failed: 4,
    DeliveryStatus.undelivered: 4,
}


# Members looked up once: reading one off the class, or calling the class, runs Python code on
# 3.11 (about half a microsecond), and every delivery report in every view takes several.
_TERMINAL = frozenset({DeliveryStatus.failed, DeliveryStatus.undelivered})
_READ = DeliveryStatus.read
_BY_VALUE = {status.value: status for status in DeliveryStatus}


def status_of(value: str) -> DeliveryStatus:
    """``DeliveryStatus(value)``, the known ones without the call (an unknown one raises
    ``ValueError`` as the call does)."""
    return _BY_VALUE.get(value) or DeliveryStatus(value)


def status_advances(current: DeliveryStatus | None, new: DeliveryStatus) -> bool:
    """Whether a report of ``new`` moves a message that is at ``current`` forward.

    Providers deliver receipts out of order (delivered before sent is common), so a view keeps
    the highest status seen. Nothing follows a terminal failure or read; a failure reported after
    delivered is kept rather than hidden, so that an agent sees it.
    """
    if current is None:
        return True
    if current in _TERMINAL or current is _READ:
        return False
    return new.rank > current.rank


class DeliveryStatusChanged(InteractionEvent):
    """The provider reported a new delivery status for one of our outbound messages.

    The provider sends several reports for one message, so provider_ref must name the report,
    not the message: ``<MessageSid>:<status>`` unless the provider has a per-report id.
    """

    allowed_channels: ClassVar[frozenset[Channel]] = frozenset(Channel) - {Channel.voice}
    allowed_directions: ClassVar[frozenset[Direction]] = frozenset({Direction.outbound})

    type: Literal["delivery.status.v1"] = "delivery.status.v1"
    direction: Direction = direction_field(Direction.outbound)
    status: DeliveryStatus = Field(description="The reported status.", examples=["delivered"])
    message_ref: Ref = Field(
        description="provider_ref of the outbound message (its MessageSent) this report is about.",
        examples=["SM0123456789abcdef0123456789abcdef"],
    )
    error_code: Label | None = Field(
        default=None,
        description="The provider's error code for failed or undelivered.",
        examples=["30003"],
    )
    error_message: Text | None = Field(
        default=None,
        max_length=2000,
        description="The provider's explanation, as given.",
        examples=["Unreachable destination handset"],
    )
