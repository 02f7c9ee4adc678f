"""What planning hands to dispatch: one planned send per recipient and step.

The planner (audience, consent, quiet hours, caps, channel choice, templates) yields
``PlannedSend``; the runner turns each into exactly one ``SendMessage`` on the outbound
topic.  The command id is derived from (campaign, customer, step), so planning twice, or a
runner restarted after a kill, names the same command and the dispatcher's ledger sends it
at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID, uuid5

from contracts import SendMessage

# Fixed for ever: changing it would give every planned send a new command id.
SEND_NAMESPACE = UUID("6f1c2a0e-3b7d-5c44-9a1e-0c5b8d2f4e71")

CampaignState = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]


def send_id(campaign_id: UUID, customer_id: UUID, step: int) -> str:
    """The idempotency key of one send: step 0 is the first channel, 1… the fallbacks."""
    return str(uuid5(SEND_NAMESPACE, f"{campaign_id}/{customer_id}/{step}"))


def campaign_of(requested_by: str | None) -> UUID | None:
    """The campaign a command (or the reply it caused) belongs to, from ``requested_by``."""
    if requested_by and requested_by.startswith("campaign:"):
        try:
            return UUID(requested_by.removeprefix("campaign:"))
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class FallbackRoute:
    """What a fallback needs of one recipient, kept with the plan (a restarted hub can
    follow up a failure without planning again): the channels left after the first send,
    best first, and the few parts of the customer's row that make and time a message."""

    options: tuple[tuple[str, str], ...]  # (channel, address)
    addresses: tuple[str, ...]  # the recipient's time zones are guessed from them
    profile: Mapping[str, Any]  # name, tier, language, time_zone (what templates use)
    last_inbound_at: Mapping[str, datetime] = field(default_factory=dict)  # "whatsapp" only

    def after(self, channel: str) -> tuple[tuple[str, str], ...]:
        """The options to try once ``channel`` failed for good: those after it (all of them
        after the first send's channel, which is not among them)."""
        channels = [c for c, _ in self.options]
        if channel in channels:
            return self.options[channels.index(channel) + 1 :]
        return self.options


@dataclass(frozen=True)
class PlannedSend:
    campaign_id: UUID
    customer_id: UUID
    step: int
    channel: str
    address: str
    not_before: datetime  # aware UTC: the schedule window and the recipient's quiet hours
    command: SendMessage  # command_id == send_id(...), purpose "marketing",
    #                       requested_by f"campaign:{campaign_id}"
    # The channels to fall back to, when the campaign allows it and any are left.
    route: FallbackRoute | None = field(default=None, compare=False, repr=False)


class CampaignControl(Protocol):
    """How the runner learns that a campaign was paused, resumed or cancelled."""

    def state(self, campaign_id: UUID) -> CampaignState: ...
