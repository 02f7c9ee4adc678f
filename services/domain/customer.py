"""The Customer aggregate: one person's addresses, consent and contact history.

The aggregate state holds only what decisions need (addresses, consent, a contact
count and the last contact).  The history itself *is* the event stream: projections
render it, so a customer with 100 000 contacts loads as fast as one with ten
(helped by snapshots, see ``services.history.customers``).

Topics are spelled out explicitly (``TOPIC``) so that stored events keep resolving
when a module is moved or renamed.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


@lru_cache(maxsize=100_000)
def customer_id_for(address: str) -> UUID:
    """The id of the customer first seen at ``address`` (already normalized).

    Deterministic, so two racing first contacts from one address make one customer.
    """
    return uuid5(NAMESPACE_URL, f"/switchboard/customers/{address}")


class Customer(Aggregate):
    TOPIC = "switchboard:Customer"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:Customer.Event"

    class FirstContacted(Aggregate.Created):
        """A contact came from an address no customer had: record first, clean up later."""

        TOPIC = "switchboard:Customer.FirstContacted"
        address: str
        channel: str

    class InteractionRecorded(Event):
        """One contact in any channel, as the channel adapter reported it.

        The envelope every contact has is stored as the event's own attributes; ``payload``
        holds the rest of what was reported (a third less to store than repeating it), and
        ``as_reported`` joins them back.
        """

        TOPIC = "switchboard:Customer.InteractionRecorded"
        ENVELOPE = ("type", "channel", "direction", "party", "provider_ref", "occurred_at")
        interaction_type: str
        channel: str
        direction: str
        party: str
        provider_ref: str
        occurred_at: datetime
        payload: dict[str, Any]

        def as_reported(self) -> dict[str, Any]:
            """The interaction as the channel reported it: the envelope and the payload."""
            return {
                "type": self.interaction_type,
                "channel": self.channel,
                "direction": self.direction,
                "party": self.party,
                "provider_ref": self.provider_ref,
                "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
                **self.payload,
            }

        def apply(self, customer: Customer) -> None:
            customer.contact_count += 1
            if self.direction == "inbound":
                # WhatsApp's 24-hour customer-service window runs from the last inbound message.
                last = customer.last_inbound_at.get(self.channel)
                if last is None or self.occurred_at > last:
                    customer.last_inbound_at[self.channel] = self.occurred_at
            if customer.last_contact_at is None or self.occurred_at >= customer.last_contact_at:
                customer.last_contact_at = self.occurred_at
                customer.last_channel = self.channel

    class ConsentChanged(Event):
        TOPIC = "switchboard:Customer.ConsentChanged"
        channel: str
        purpose: str
        granted: bool
        source: str

    class Snapshot(Aggregate.Snapshot):
        TOPIC = "switchboard:Customer.Snapshot"

    @event(FirstContacted)
    def __init__(self, address: str, channel: str) -> None:
        self.addresses: list[str] = [address]
        self.consent: dict[str, bool] = {}
        self.contact_count = 0
        self.last_contact_at: datetime | None = None
        self.last_channel: str | None = None
        self.last_inbound_at: dict[str, datetime] = {}

    @staticmethod
    def create_id(address: str, channel: str) -> UUID:
        return customer_id_for(address)

    def record_interaction(
        self,
        interaction_type: str,
        channel: str,
        direction: str,
        party: str,
        provider_ref: str,
        occurred_at: datetime,
        payload: dict[str, Any],
    ) -> None:
        # trigger_event and the event's own apply(): the @event decorator binds and filters
        # arguments on the way in and out, ~5 µs a call, and the recorder makes ~10 000 a second.
        self.trigger_event(
            self.InteractionRecorded,
            interaction_type=interaction_type,
            channel=channel,
            direction=direction,
            party=party,
            provider_ref=provider_ref,
            occurred_at=occurred_at,
            payload=payload,
        )

    @event(ConsentChanged)
    def change_consent(self, channel: str, purpose: str, granted: bool, source: str) -> None:
        self.consent[f"{channel}:{purpose}"] = granted

    def has_consent(self, channel: str, purpose: str) -> bool | None:
        """True/False when the customer said so on this channel, None when never asked."""
        return self.consent.get(f"{channel}:{purpose}")
