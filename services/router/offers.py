"""Messages offered to agents and not answered yet, as every instance reads them from Kafka.

An offer is a ``contact.routed.v1`` with ``offer_expires_at``; ``offer.answered.v1`` answers
it; a later decision of the same contact (the next attempt) replaces it.  Fed by the
``RoutingFeed`` (every decision and answer on ``sb.routing.v1``), so whichever router instance
owns the contact's partition now — also one that took the partition over from another — finds
the offers that ran out or were declined and routes them again (``MessageRouter``).

Only the event loop touches it: no locks.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from contracts import ContactRouted, OfferAnswered

# Offers remembered: far more than can be open at once; the oldest are forgotten first.
_KEPT = 20_000
# A gateway takes an answer until the offer expires; the router routes it again only this much
# later, so an answer given in the last moment reaches every instance's book first (an offer
# is never taken by one agent while it goes on to the next).
GRACE_S = 2.0


@dataclass
class Offer:
    decision: ContactRouted  # the latest decision of the contact: an offer
    first_at: datetime  # when the contact was first routed: how long it has waited
    declined: set[str] = field(default_factory=set)  # agents who declined or let it run out
    answer: bool | None = None  # True accepted, False declined, None not yet

    @property
    def agent(self) -> str:
        return self.decision.target.agent or ""

    @property
    def attempt(self) -> int:
        return self.decision.attempt

    @property
    def expires_at(self) -> datetime:
        assert self.decision.offer_expires_at is not None
        return self.decision.offer_expires_at

    def open_at(self, now: datetime) -> bool:
        return self.answer is None and now < self.expires_at


class OfferBook:
    def __init__(self) -> None:
        self._offers: OrderedDict[str, Offer] = OrderedDict()  # contact_ref -> its offer

    def routed(self, event: ContactRouted) -> None:
        """A decision: an offer opens (or the next attempt replaces the last); any other
        decision of an offered contact closes its offer (it was queued, say)."""
        known = self._offers.get(event.contact_ref)
        if known is not None and known.attempt >= event.attempt:
            return  # read again, or a second decision of the same attempt: the first stands
        if event.offer_expires_at is None or event.target.agent is None:
            self._offers.pop(event.contact_ref, None)
            return
        first_at = known.first_at if known is not None else event.occurred_at
        declined = set(known.declined) if known is not None else set()
        if known is not None and known.answer is not True:
            declined.add(known.agent)  # the last offer was declined or ran out
        self._offers[event.contact_ref] = Offer(event, first_at, declined)
        self._offers.move_to_end(event.contact_ref)
        while len(self._offers) > _KEPT:
            self._offers.popitem(last=False)

    def answered(self, event: OfferAnswered) -> None:
        offer = self._offers.get(event.contact_ref)
        if offer is None or offer.attempt != event.attempt or offer.agent != event.agent:
            return  # an answer to an offer that is over, or not this agent's
        if offer.answer is None:  # the first answer stands
            offer.answer = event.accepted
        if event.accepted:
            self._offers.pop(event.contact_ref, None)  # taken: nothing left to do

    def get(self, contact_ref: str) -> Offer | None:
        return self._offers.get(contact_ref)

    def open_for(self, agent: str, now: datetime) -> list[Offer]:
        """The offers ``agent`` can still accept."""
        return [o for o in self._offers.values() if o.agent == agent and o.open_at(now)]

    def offered_chat(self, channel: str, party: str, now: datetime) -> Offer | None:
        """An open offer of a message from ``party`` on ``channel``: a follow-up waits for it."""
        for offer in reversed(self._offers.values()):
            d = offer.decision
            if d.party == party and d.channel == channel and offer.open_at(now):
                return offer
        return None

    def due(self, now: datetime) -> list[Offer]:
        """The offers to route again: declined, or run out without an answer."""
        grace = timedelta(seconds=GRACE_S)
        return [
            o for o in self._offers.values() if o.answer is False or now >= o.expires_at + grace
        ]
