"""What planning hands to dispatch: one planned send per recipient and step.

The planner (audience, consent, quiet hours, caps, channel choice, templates) yields
``PlannedSend``; the runner turns each into exactly one ``SendMessage`` on the outbound
topic.  The command id is derived from (campaign, customer, step), so planning twice, or a
runner restarted after a kill, names the same command and the dispatcher's ledger sends it
at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
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
class PlannedSend:
    campaign_id: UUID
    customer_id: UUID
    step: int
    channel: str
    address: str
    not_before: datetime  # aware UTC: the schedule window and the recipient's quiet hours
    command: SendMessage  # command_id == send_id(...), purpose "marketing",
    #                       requested_by f"campaign:{campaign_id}"


class CampaignControl(Protocol):
    """How the runner learns that a campaign was paused, resumed or cancelled."""

    def state(self, campaign_id: UUID) -> CampaignState: ...
