"""The directory: who an address is (the customer card), search, and duplicate suggestions.

Built in the same tables and transaction as the timeline (``TimelineView``), from the customer
events: first contacts, links, merges and unmerges, profile edits, consent, and the contacts
themselves.  This module holds what both stores share: the shapes, the changes a batch of
events makes, and the pure rules (combining a merged customer's rows, ranking candidates and
duplicate suggestions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts import identity_of

# Contacts shown on the card.
RECENT = 5
# Free mail domains: two people at gmail.com are not colleagues.
FREEMAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "t-online.de",
        "proton.me",
        "protonmail.com",
        "mail.ru",
        "yandex.ru",
    }
)


# -- what a batch of events does to the directory (applied in order, after the entries) ----


@dataclass(frozen=True)
class AddressAdded:
    customer_id: UUID
    address: str
    shared: bool


@dataclass(frozen=True)
class Merged:
    survivor_id: UUID
    absorbed_id: UUID


@dataclass(frozen=True)
class Unmerged:
    survivor_id: UUID
    absorbed_id: UUID
    addresses: list[str]
    moved: list[str]  # type|channel|provider_ref of the contacts that go back


@dataclass(frozen=True)
class ProfileSet:
    customer_id: UUID
    changes: dict[str, Any]


@dataclass(frozen=True)
class ConsentSet:
    customer_id: UUID
    key: str  # channel:purpose
    granted: bool


@dataclass(frozen=True)
class AgentHandled:
    customer_id: UUID
    agent: str
    at: datetime


@dataclass(frozen=True)
class Erased:
    """A person erased: every row of these customers goes (the survivor first)."""

    customer_ids: tuple[UUID, ...]


@dataclass(frozen=True)
class DuplicateDismissed:
    customer_id: UUID
    other_id: UUID
    reason: str


@dataclass(frozen=True)
class ConversationOpened:
    customer_id: UUID
    conversation_id: UUID
    channel: str
    opened_at: datetime


@dataclass(frozen=True)
class ConversationChanged:
    conversation_id: UUID
    status: str
    assignee: str | None


DirectoryOp = (
    AddressAdded
    | Erased
    | Merged
    | Unmerged
    | ProfileSet
    | ConsentSet
    | AgentHandled
    | DuplicateDismissed
    | ConversationOpened
    | ConversationChanged
)


# -- what the directory answers -------------------------------------------------------------


@dataclass(frozen=True)
class RecentContact:
    position: int
    occurred_at: datetime
    type: str
    channel: str
    direction: str
    party: str
    summary: str


@dataclass(frozen=True)
class OpenConversation:
    """A conversation not resolved yet, as the card lists it."""

    conversation_id: UUID
    channel: str
    status: str
    assignee: str | None
    opened_at: datetime


@dataclass
class CustomerRow:
    """One customer's row as stored (its own profile, consent and contacts)."""

    customer_id: UUID
    first_address: str
    first_seen: datetime
    contact_count: int
    last_contact_at: datetime | None
    last_channel: str | None
    profile: dict[str, Any]
    profile_version: int
    consent: dict[str, bool]
    last_agent: str | None
    last_agent_at: datetime | None
    merged_into: UUID | None
    absorbed: int  # how many customers are merged into this one
    addresses: list[str]
    recent: list[RecentContact] = field(default_factory=list)
    conversations: list[OpenConversation] = field(default_factory=list)


@dataclass
class Card:
    """What an agent sees of a customer: the person, how to reach them, the last contacts."""

    customer_id: UUID
    addresses: list[str]
    first_address: str
    first_seen: datetime
    contact_count: int
    last_contact_at: datetime | None
    last_channel: str | None
    profile: dict[str, Any]
    profile_version: int
    consent: dict[str, bool]
    last_agent: str | None
    recent: list[RecentContact]
    conversations: list[OpenConversation] = field(default_factory=list)
    merged_into: UUID | None = None
    merged: list[UUID] = field(default_factory=list)
    last_agent_at: datetime | None = None  # when last_agent last handled them

    @property
    def name(self) -> str | None:
        return self.profile.get("name")


@dataclass(frozen=True)
class Candidate:
    """One of the customers a shared number may be, with why it is ranked where it is."""

    card: Card
    reason: str


@dataclass(frozen=True)
class Suggestion:
    """A customer that may be the same person, with the evidence."""

    customer_id: UUID
    score: float
    reasons: list[str]
    card: Card


def card_of(row: CustomerRow, absorbed: list[CustomerRow] = ()) -> Card:  # type: ignore[assignment]
    """The card of a customer and of the customers merged into it: one person.

    The survivor's profile wins where both have a field; an opt-out on any of them stands
    (as in the domain, a merge never loses one); contacts are already counted on the
    survivor (the timeline shows them there).
    """
    profile = {}
    consent: dict[str, bool] = {}
    for other in absorbed:
        profile.update(other.profile)
    profile.update(row.profile)
    for r in (row, *absorbed):
        for key, granted in r.consent.items():
            consent[key] = consent[key] and granted if key in consent else granted
    agents = [(r.last_agent_at, r.last_agent) for r in (row, *absorbed) if r.last_agent_at]
    return Card(
        customer_id=row.customer_id,
        addresses=sorted({a for r in (row, *absorbed) for a in r.addresses}),
        first_address=row.first_address,
        first_seen=min([row.first_seen, *(r.first_seen for r in absorbed)]),
        contact_count=row.contact_count,
        last_contact_at=row.last_contact_at,
        last_channel=row.last_channel,
        profile=profile,
        profile_version=row.profile_version,
        consent=consent,
        last_agent=max(agents)[1] if agents else None,
        last_agent_at=max(agents)[0] if agents else None,
        recent=row.recent,
        conversations=sorted(
            (c for r in (row, *absorbed) for c in r.conversations),
            key=lambda c: c.opened_at,
            reverse=True,
        ),
        merged_into=row.merged_into,
        merged=[r.customer_id for r in absorbed],
    )


def rank_candidates(
    address: str, cards: list[tuple[Card, bool, datetime | None, int]]
) -> list[Candidate]:
    """Order the customers sharing ``address``: (card, holds it, their last contact from it,
    their contacts from it).  Most recent contact from this address first, then most contacts,
    then the customer the address was first seen on."""

    def key(item: tuple[Card, bool, datetime | None, int]) -> tuple:
        _card, holder, last, count = item
        return (last is not None, last or datetime.min, count, holder)

    ranked = sorted(cards, key=key, reverse=True)
    out = []
    for card, holder, last, count in ranked:
        parts = []
        if last is not None:
            parts.append(f"last contact from {address} at {last:%Y-%m-%d %H:%M} UTC")
            parts.append(f"{count} contact{'s' if count != 1 else ''} from it")
        else:
            parts.append(f"no contact from {address} yet")
        parts.append("first seen at this address" if holder else "linked as a shared address")
        out.append(Candidate(card=card, reason="; ".join(parts)))
    return out


def email_base(address: str) -> str | None:
    """``anna+shop@example.com`` -> ``anna@example.com``; None for a non-e-mail."""
    if "@" not in address or ":" in address:
        return None
    local, _, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def company_domain(address: str) -> str | None:
    if "@" not in address or ":" in address:
        return None
    domain = address.rpartition("@")[2]
    return None if domain in FREEMAIL else domain


def phone_variants(address: str) -> list[str]:
    """The addresses one phone number has across channels."""
    key = identity_of(address)
    if key.startswith("+"):
        return [key, f"whatsapp:{key}"]
    return [address]


def with_phone_variants(addresses: list[str]) -> list[str]:
    """The addresses, and the same numbers on the other phone channels, once each."""
    return list(dict.fromkeys(v for a in addresses for v in phone_variants(a)))


def suggestion_reasons(mine: Card, theirs: Card) -> tuple[float, list[str]]:
    """Why ``theirs`` may be the same person as ``mine``: a score in [0, 1] and the reasons."""
    score = 0.0
    reasons: list[str] = []
    my_phones = {identity_of(a) for a in mine.addresses if identity_of(a).startswith("+")}
    for a in theirs.addresses:
        if identity_of(a) in my_phones:
            reasons.append(f"the same phone number {identity_of(a)} ({a})")
            score = max(score, 0.95)
    my_bases = {email_base(a): a for a in mine.addresses if email_base(a)}
    for a in theirs.addresses:
        base = email_base(a)
        if base and base in my_bases and a not in mine.addresses:
            reasons.append(f"the same e-mail address {base} ({my_bases[base]} and {a})")
            score = max(score, 0.8)
    name = (mine.name or "").strip().casefold()
    if name and name == (theirs.name or "").strip().casefold():
        mine_domains = {company_domain(a) for a in mine.addresses} - {None}
        shared = mine_domains & {company_domain(a) for a in theirs.addresses}
        if shared:
            reasons.append(f"the same name {mine.name!r} at the same company ({min(shared)})")
            score = max(score, 0.6)
        else:
            reasons.append(f"the same name {mine.name!r}")
            score = max(score, 0.3)
    return score, reasons
