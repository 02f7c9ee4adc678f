"""A campaign's funnel: queued → produced → sent → delivered → replied, and failed, opted out.

Computed when asked, from the stores (nothing is kept up to date for it): the plan says what
was queued (one send per recipient; ``send_id`` is the command id), the campaign runner's
progress record how many commands are on the outbound topic, the outbound ledger which
commands were sent or failed and the provider's message id of each sent one, the timeline
view how far each message got (``delivery.status.v1`` reports match ``message_ref`` = that
provider id) and what the recipients did afterwards.  A few batched statements per 500
recipients (``OutboundLedger.outcomes``, ``projections.campaign_tracking``): a 10 000-
recipient campaign is a few dozen statements.  A store of figures kept by a projection is a
follow-up if campaigns grow to millions.

The rules, per recipient (each counted once, however often it happened):

- **sent** / **failed**: by the recipient's furthest step (``send_id``'s step: 0 the first
  channel, 1… the fallbacks after a hard failure): a recipient reached by a fallback
  counts as sent, not failed; one counts as failed while its latest step failed (until a
  fallback is on its way, or for good).  So sent + failed never exceed the recipients.

- **delivered**: the furthest status of its message is ``delivered`` or ``read``.
- **replied**: an inbound message from the recipient on the channel of its send, after the
  send and within ``ATTRIBUTION`` (7 days), that is *attributed* to this campaign: a reply
  belongs to the most recent campaign send to that person on that channel before it (of
  any campaign), so two campaigns a day apart do not both claim one answer.  An SMS
  keyword (STOP, START, HELP) is no reply: STOP counts as an opt-out.
- **opted out**: a marketing consent on the send's channel withdrawn after the send, within
  ``ATTRIBUTION``, attributed the same way.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from projections.campaign_tracking import Delivery, InboundRow

__all__ = [
    "ATTRIBUTION",
    "CampaignSend",
    "CampaignTracking",
    "FunnelMoments",
    "SentMessage",
    "funnel_moments",
]

ATTRIBUTION = timedelta(days=7)
_DELIVERED = frozenset({"delivered", "read"})


@dataclass(frozen=True, slots=True)
class CampaignSend:
    """One planned send of the campaign being tracked."""

    customer_id: UUID
    channel: str
    command_id: str
    step: int = 0  # 1, 2 …: a fallback after the step before failed for good


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A campaign message that went out (this campaign's or another's): for attribution."""

    campaign_id: UUID
    customer_id: UUID
    channel: str
    at: datetime


@dataclass
class CampaignTracking:
    queued: int = 0  # planned sends
    produced: int | None = None  # on the outbound topic (None: the progress was not read)
    sent: int = 0
    failed: int = 0
    delivered: int = 0
    replied: int = 0
    opted_out: int = 0

    @property
    def in_flight(self) -> int:
        """Produced, not yet sent or failed (the dispatcher has them, or they wait)."""
        return max((self.produced or 0) - self.sent - self.failed, 0)

    def as_dict(self) -> dict[str, int | None]:
        return {
            "queued": self.queued,
            "produced": self.produced,
            "sent": self.sent,
            "failed": self.failed,
            "delivered": self.delivered,
            "replied": self.replied,
            "opted_out": self.opted_out,
        }


@dataclass
class FunnelMoments:
    """When each stage was reached: one moment per send (sent, failed, delivered) or per
    recipient (replied, opted out, the first time), in no particular order.  The figures
    are their counts; the funnel over time (``services.campaigns.funnel``) buckets them."""

    queued: int = 0
    sent: list[datetime] = field(default_factory=list)
    failed: list[datetime] = field(default_factory=list)
    delivered: list[datetime] = field(default_factory=list)
    replied: list[datetime] = field(default_factory=list)
    opted_out: list[datetime] = field(default_factory=list)

    def figures(self, *, produced: int | None) -> CampaignTracking:
        return CampaignTracking(
            queued=self.queued,
            produced=produced,
            sent=len(self.sent),
            failed=len(self.failed),
            delivered=len(self.delivered),
            replied=len(self.replied),
            opted_out=len(self.opted_out),
        )


def funnel_moments(
    campaign_id: UUID,
    sends: list[CampaignSend],
    *,
    outcomes: Mapping[str, tuple[str, datetime, str | None]],
    statuses: Mapping[str, Delivery],
    inbound: Iterable[InboundRow],
    campaign_messages: Iterable[SentMessage],
) -> FunnelMoments:
    """When the campaign's sends and recipients reached each stage.  Pure.

    ``outcomes``: command id -> (state, when, provider message id) from the ledger;
    ``statuses``: provider message id -> furthest delivery status and its time; ``inbound``:
    the recipients' inbound messages and consent changes since the first send, oldest
    first; ``campaign_messages``: every campaign send to these recipients (this campaign's
    included), for attribution."""
    moments = FunnelMoments(queued=sum(1 for s in sends if s.step == 0))
    sent_to: dict[tuple[UUID, str], datetime] = {}
    latest: dict[UUID, tuple[int, str, datetime]] = {}  # recipient -> step, state, when
    for send in sends:
        outcome = outcomes.get(send.command_id)
        if outcome is None:
            continue
        state, at, provider_ref = outcome
        before = latest.get(send.customer_id)
        if state == "sent" or before is None or (before[1] != "sent" and send.step > before[0]):
            latest[send.customer_id] = (send.step, state, at)
        if state == "sent":
            sent_to[(send.customer_id, send.channel)] = at
            delivery = statuses.get(provider_ref) if provider_ref is not None else None
            if delivery is not None and delivery.status in _DELIVERED:
                moments.delivered.append(delivery.at)
    for _, state, at in latest.values():
        if state == "sent":
            moments.sent.append(at)
        elif state == "failed":
            moments.failed.append(at)

    # Each recipient's campaign messages per channel, in time order: who an answer belongs to.
    timeline: dict[tuple[UUID, str], list[tuple[datetime, UUID]]] = {}
    for message in campaign_messages:
        timeline.setdefault((message.customer_id, message.channel), []).append(
            (message.at, message.campaign_id)
        )
    for messages in timeline.values():
        messages.sort()

    def ours(row: InboundRow) -> bool:
        key = (row.customer_id, row.channel)
        if key not in sent_to:
            return False
        messages = timeline.get(key, [])
        i = bisect_right([at for at, _ in messages], row.occurred_at)
        if i == 0:
            return False
        at, owner = messages[i - 1]
        return owner == campaign_id and row.occurred_at - at <= ATTRIBUTION

    rows = sorted(inbound, key=lambda r: r.occurred_at)
    keywords = {
        r.provider_ref.split(":consent:")[0] for r in rows if r.type == "consent.changed.v1"
    }
    replied: dict[UUID, datetime] = {}  # each recipient's first attributed answer
    opted_out: dict[UUID, datetime] = {}
    for row in rows:
        if row.type == "message.received.v1":
            if row.provider_ref not in keywords and ours(row):
                replied.setdefault(row.customer_id, row.occurred_at)
        elif row.purpose == "marketing" and row.granted is False and ours(row):
            opted_out.setdefault(row.customer_id, row.occurred_at)
    moments.replied, moments.opted_out = list(replied.values()), list(opted_out.values())
    return moments
