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

from services.domain.errors import DecisionRefused, InvalidDecision

# What an agent may edit on a customer's profile, and how long each value may be.
PROFILE_FIELDS = ("name", "tier", "language", "time_zone", "tags", "preferred_channel")


@lru_cache(maxsize=100_000)
def customer_id_for(person: str, generation: int = 0) -> UUID:
    """The id of the customer first seen as ``person``: the identity key of the address
    (``contracts.identity_of``: a phone number's calls, SMS and WhatsApp are one person).

    Deterministic, so two racing first contacts make one customer.  Which customer an
    address leads to *now* (after links and merges) is the history's question:
    ``CustomerHistory.customer_for_address``.

    ``generation``: the person's next customer after an erasure (the erased customer keeps
    its id and its events' skeletons; a later contact is a new, separate customer).
    """
    suffix = f"#{generation}" if generation else ""
    return uuid5(NAMESPACE_URL, f"/switchboard/customers/{person}{suffix}")


def _no_consent_lost(mine: bool | None, theirs: bool | None) -> bool | None:
    """One key of a merged consent: an opt-out on either side is never lost by a merge."""
    if mine is None:
        return theirs
    if theirs is None:
        return mine
    return mine and theirs


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

    class AddressLinked(Event):
        """An agent said this address is this customer's.  ``shared``: a number several
        customers use (a family landline); contacts from it stay where they are recorded,
        and a lookup lists every customer sharing it."""

        TOPIC = "switchboard:Customer.AddressLinked"
        address: str
        shared: bool
        by: str
        reason: str

        def apply(self, customer: Customer) -> None:
            if self.shared:
                if self.address not in customer.shared_addresses:
                    customer.shared_addresses.append(self.address)
            elif self.address not in customer.addresses:
                customer.addresses.append(self.address)

    class MergedInto(Event):
        """This customer was found to be the same person as ``survivor_id``; from now on
        its addresses lead there.  Recorded on the absorbed customer."""

        TOPIC = "switchboard:Customer.MergedInto"
        survivor_id: UUID
        by: str
        reason: str
        evidence: dict[str, Any]

        def apply(self, customer: Customer) -> None:
            customer.merged_into = self.survivor_id

    class Absorbed(Event):
        """The survivor's side of a merge: what it took over from ``absorbed_id``."""

        TOPIC = "switchboard:Customer.Absorbed"
        absorbed_id: UUID
        addresses: list[str]
        consent: dict[str, bool]
        contact_count: int
        by: str
        reason: str
        evidence: dict[str, Any]

        def apply(self, customer: Customer) -> None:
            changed: dict[str, list[bool | None]] = {}
            for key, theirs in self.consent.items():
                before = customer.consent.get(key)
                after = _no_consent_lost(before, theirs)
                if after != before:
                    customer.consent[key] = after  # type: ignore[assignment]
                    changed[key] = [before, after]
            customer.absorbed[str(self.absorbed_id)] = {
                "addresses": list(self.addresses),
                "consent_changed": changed,
                "contact_count": self.contact_count,
                "version": self.originator_version,
            }
            customer.contact_count += self.contact_count

    class Unmerged(Event):
        """A merge undone, on the survivor: ``absorbed_id`` gets its addresses back, and the
        contacts recorded here since the merge from those addresses (``moved``: their
        ``type|channel|provider_ref`` keys) belong to it."""

        TOPIC = "switchboard:Customer.Unmerged"
        absorbed_id: UUID
        addresses: list[str]
        moved: list[str]
        by: str
        reason: str

        def apply(self, customer: Customer) -> None:
            merged = customer.absorbed.pop(str(self.absorbed_id), {})
            for key, (before, after) in merged.get("consent_changed", {}).items():
                if customer.consent.get(key) == after:  # unchanged since the merge
                    if before is None:
                        customer.consent.pop(key, None)
                    else:
                        customer.consent[key] = before
            customer.contact_count -= merged.get("contact_count", 0) + len(self.moved)

    class Restored(Event):
        """The absorbed side of an unmerge: this customer stands on its own again."""

        TOPIC = "switchboard:Customer.Restored"
        survivor_id: UUID
        moved: list[str]
        by: str
        reason: str

        def apply(self, customer: Customer) -> None:
            customer.merged_into = None
            customer.contact_count += len(self.moved)

    class ProfileChanged(Event):
        """Profile fields set (a value of None clears one), by whom."""

        TOPIC = "switchboard:Customer.ProfileChanged"
        changes: dict[str, Any]
        by: str

        def apply(self, customer: Customer) -> None:
            for key, value in self.changes.items():
                if value is None:
                    customer.profile.pop(key, None)
                else:
                    customer.profile[key] = value
            customer.profile_version += 1

    class DuplicateDismissed(Event):
        """A suggested duplicate that an agent said is someone else."""

        TOPIC = "switchboard:Customer.DuplicateDismissed"
        other_id: UUID
        reason: str
        by: str

        def apply(self, customer: Customer) -> None:
            customer.dismissed[str(self.other_id)] = self.reason

    class Erased(Event):
        """The person's personal data was erased (GDPR Art. 17): their key is deleted, so
        their events keep only what names no one.  Who, when and on what basis stay, as the
        audit trail; ``group``: every customer erased with this one (a merge's two sides)."""

        TOPIC = "switchboard:Customer.Erased"
        by: str
        basis: str
        reason: str
        group: list[UUID]

        def apply(self, customer: Customer) -> None:
            customer.erased = True

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
        self.shared_addresses: list[str] = []
        self.merged_into: UUID | None = None
        self.absorbed: dict[str, dict[str, Any]] = {}
        self.profile: dict[str, Any] = {}
        self.profile_version = 0
        self.dismissed: dict[str, str] = {}

    @staticmethod
    def create_id(address: str, channel: str) -> UUID:
        return customer_id_for(address)

    @classmethod
    def first_contact(
        cls, person: str, address: str, channel: str, *, generation: int = 0
    ) -> Customer:
        """A new customer for a person first seen at ``address`` (``person``: its identity key)."""
        return cls._create(
            cls.FirstContacted,
            id=customer_id_for(person, generation),
            address=address,
            channel=channel,
        )

    # Snapshots taken before links, merges and profiles existed still load (the library's
    # snapshot upcasting: state of class_version 1 passes through upcast_v1_v2).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.update(
            shared_addresses=[],
            merged_into=None,
            absorbed={},
            profile={},
            profile_version=0,
            dismissed={},
        )

    @property
    def all_addresses(self) -> list[str]:
        """Its own addresses and those of the customers merged into it."""
        merged = [a for m in self.absorbed.values() for a in m["addresses"]]
        return [*self.addresses, *merged]

    # -- what agents decide ----------------------------------------------------------------

    def link_address(self, address: str, *, shared: bool, by: str, reason: str) -> None:
        self._refuse_if_merged("link an address to")
        self.trigger_event(self.AddressLinked, address=address, shared=shared, by=by, reason=reason)

    def merge_into(self, survivor: Customer, *, by: str, reason: str, evidence: dict) -> None:
        """Record that this customer is ``survivor``: events on both."""
        if survivor.id == self.id:
            raise InvalidDecision("a customer cannot be merged into itself")
        self._refuse_if_merged("merge")
        survivor._refuse_if_merged("merge into")
        if self.absorbed:
            raise DecisionRefused(
                f"customer {self.id} has customers merged into it; merge {survivor.id} into it "
                "instead, or unmerge those first"
            )
        survivor.trigger_event(
            survivor.Absorbed,
            absorbed_id=self.id,
            addresses=list(self.addresses),
            consent=dict(self.consent),
            contact_count=self.contact_count,
            by=by,
            reason=reason,
            evidence=evidence,
        )
        self.trigger_event(
            self.MergedInto, survivor_id=survivor.id, by=by, reason=reason, evidence=evidence
        )

    def unmerge(self, absorbed: Customer, *, moved: list[str], by: str, reason: str) -> None:
        """Undo ``absorbed``'s merge into this customer: events on both."""
        merged = self.absorbed.get(str(absorbed.id))
        if merged is None or absorbed.merged_into != self.id:
            raise DecisionRefused(f"customer {absorbed.id} was never merged into {self.id}")
        self.trigger_event(
            self.Unmerged,
            absorbed_id=absorbed.id,
            addresses=list(merged["addresses"]),
            moved=moved,
            by=by,
            reason=reason,
        )
        absorbed.trigger_event(
            absorbed.Restored, survivor_id=self.id, moved=moved, by=by, reason=reason
        )

    def change_profile(self, changes: dict[str, Any], *, by: str, expected_version: int) -> None:
        """Set profile fields; ``expected_version`` is the profile version the editor saw
        (``profile_version``): another edit since then is a conflict, never a lost update."""
        self._refuse_if_merged("edit")
        if expected_version != self.profile_version:
            raise DecisionRefused(
                f"the profile of customer {self.id} changed meanwhile (version "
                f"{self.profile_version}, you edited version {expected_version}): reload it"
            )
        unknown = set(changes) - set(PROFILE_FIELDS)
        if unknown:
            raise InvalidDecision(f"unknown profile field {sorted(unknown)[0]!r}")
        real = {k: v for k, v in changes.items() if self.profile.get(k) != v}
        if real:
            self.trigger_event(self.ProfileChanged, changes=real, by=by)

    def dismiss_duplicate(self, other_id: UUID, *, reason: str, by: str) -> None:
        if other_id == self.id:
            raise InvalidDecision("a customer is not a duplicate of itself")
        self.trigger_event(self.DuplicateDismissed, other_id=other_id, reason=reason, by=by)

    def erase(self, *, by: str, basis: str, reason: str, group: list[UUID]) -> None:
        if getattr(self, "erased", False):
            raise DecisionRefused(f"customer {self.id} was erased already")
        self.trigger_event(self.Erased, by=by, basis=basis, reason=reason, group=group)

    def _refuse_if_merged(self, what: str) -> None:
        if self.merged_into is not None:
            raise DecisionRefused(
                f"customer {self.id} was merged into {self.merged_into}; {what} that one instead"
            )

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
