"""``CampaignStore``: campaigns in the event store (SQLite or PostgreSQL), like users.

Each command loads the campaign, decides (the aggregate raises what it refuses) and saves
atomically; two managers changing one campaign at once make one of them fail with
``CampaignChanged`` rather than lose an update.  The runner asks ``state()`` (it is the
``recipients.CampaignControl``) to learn of a pause or a cancellation.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from contracts.errors import Conflict, NotFound
from services.campaigns.campaign import Campaign
from services.campaigns.caps import RecentCampaign
from services.campaigns.recipients import CampaignState

__all__ = ["CampaignChanged", "CampaignNotFound", "CampaignStore"]

_PAGE = 500


class CampaignNotFound(NotFound):
    def __init__(self, campaign_id: UUID) -> None:
        super().__init__(f"no campaign {campaign_id}")
        self.campaign_id = campaign_id


class CampaignChanged(Conflict):
    def __init__(self, campaign_id: UUID) -> None:
        super().__init__(f"campaign {campaign_id} was changed meanwhile: reload it and try again")


class CampaignStore(Application[UUID]):
    name = "campaigns"

    def create(self, name: str, *, by: str, language: str = "en") -> Campaign:
        campaign = Campaign.create(name, by=by, language=language)
        self.save(campaign)
        return campaign

    def get(self, campaign_id: UUID) -> Campaign:
        try:
            return self.repository.get(campaign_id)
        except AggregateNotFoundError:
            raise CampaignNotFound(campaign_id) from None

    def save(self, *campaigns: Campaign, **kwargs: object):  # type: ignore[override]
        """Save what the campaigns decided since they were loaded, atomically."""
        try:
            return super().save(*campaigns, **kwargs)  # type: ignore[arg-type]
        except IntegrityError:
            raise CampaignChanged(campaigns[0].id) from None

    def list(self) -> list[Campaign]:
        """Every campaign, in the order they were created."""
        return [self.repository.get(cid) for cid in self._ids()]

    def state(self, campaign_id: UUID) -> CampaignState:
        return self.get(campaign_id).state

    def state_and_rates(self, campaign_id: UUID) -> tuple[CampaignState, dict[str, float]]:
        """The state and the rate limits (messages a second per channel), in one read: what a
        running campaign's runner asks every poll, so a new limit is felt within a second."""
        campaign = self.get(campaign_id)
        return campaign.state, dict(campaign.rate_limits)

    def recent_campaigns(self, since: datetime) -> list[RecentCampaign]:
        """The campaigns that may have sent since ``since``: started, and not ended before
        it (for the frequency cap, ``caps.LedgerContacts``)."""
        return [
            RecentCampaign(c.id, c.steps)
            for c in self.list()
            if c.started_at is not None and (c.ended_at is None or c.ended_at > since)
        ]

    def _ids(self) -> Iterator[UUID]:
        start = 0
        while True:
            page = self.recorder.select_notifications(
                start=start, limit=_PAGE, topics=[Campaign.Created.TOPIC], inclusive_of_start=False
            )
            for n in page:
                yield n.originator_id  # type: ignore[misc]
            if len(page) < _PAGE:
                return
            start = page[-1].id
