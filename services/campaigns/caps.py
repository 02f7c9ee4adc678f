"""The frequency cap: at most N marketing contacts per customer in a rolling period (default
2 in 7 days), counted across every campaign.

Where past marketing contacts come from: the outbound ledger (``services.history.ledger``),
not the timeline view.  The view's outbound rows are ``message.sent.v1`` events, which say
neither the purpose nor who asked, so an agent's answer would count as marketing.  The
ledger holds one record per command, and a campaign's command ids are derived from (campaign,
customer, step) (``recipients.send_id``): from the recent campaigns, the ledger says exactly
which customers they reached and when (the ``Sent`` event's time).  Failed sends are no
contact; a command claimed and not yet sent is one (it may be on its way).

The planner takes the contacts as a plain mapping (customer -> times), so it stays pure;
``LedgerContacts`` is the source the composition root gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from contracts.errors import InputError
from services.campaigns.recipients import send_id
from services.history.ledger import OutboundLedger

__all__ = [
    "DEFAULT_CAP",
    "FrequencyCap",
    "LedgerContacts",
    "MarketingContacts",
    "RecentCampaign",
    "cap_refusal",
]


class InvalidCap(InputError):
    pass


@dataclass(frozen=True)
class FrequencyCap:
    max_contacts: int = 2
    period: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.max_contacts < 1:
            raise InvalidCap(
                f"a frequency cap of {self.max_contacts} contacts would let nobody be "
                "contacted: give at least 1"
            )
        if self.period <= timedelta(0):
            raise InvalidCap("the frequency cap's period must be longer than zero")


DEFAULT_CAP = FrequencyCap()


def cap_refusal(contacts: Sequence[datetime], at: datetime, cap: FrequencyCap) -> str | None:
    """Why one more marketing contact at ``at`` would break the cap, or None."""
    since = at - cap.period
    recent = sum(1 for t in contacts if since < t <= at)
    if recent >= cap.max_contacts:
        days = cap.period / timedelta(days=1)
        return (
            f"frequency cap: {recent} marketing contact(s) in the last {days:g} days "
            f"(at most {cap.max_contacts})"
        )
    return None


class MarketingContacts(Protocol):
    """The marketing contacts of each customer since ``since`` (only customers with any)."""

    def __call__(
        self, customer_ids: Sequence[UUID], since: datetime
    ) -> Mapping[UUID, list[datetime]]: ...


@dataclass(frozen=True)
class RecentCampaign:
    campaign_id: UUID
    steps: int  # how many channels it may try per customer (1 + fallbacks)


class LedgerContacts:
    """``MarketingContacts`` from the outbound ledger and the campaigns that ran lately.

    ``campaigns()`` names the campaigns that may have sent since ``since`` (the campaign store
    knows: those started, not finished before ``since``).  The ledger is asked for every
    (customer, campaign, step) command of a batch at once (``OutboundLedger.outcomes``); a
    ledger index by customer would make it one query (a follow-up, see the report of issue 15).
    """

    def __init__(
        self, ledger: OutboundLedger, campaigns: Callable[[datetime], Iterable[RecentCampaign]]
    ):
        self._ledger = ledger
        self._campaigns = campaigns

    def __call__(
        self, customer_ids: Sequence[UUID], since: datetime
    ) -> Mapping[UUID, list[datetime]]:
        found: dict[UUID, list[datetime]] = {}
        campaigns = list(self._campaigns(since))
        ids = {
            send_id(campaign.campaign_id, customer_id, step): customer_id
            for customer_id in customer_ids
            for campaign in campaigns
            for step in range(campaign.steps)
        }
        # One batched read of the ledger (a few statements per 500 commands).
        for command_id, outcome in self._ledger.outcomes(ids).items():
            if outcome.state != "failed" and outcome.at > since:
                found.setdefault(ids[command_id], []).append(outcome.at)
        return found
