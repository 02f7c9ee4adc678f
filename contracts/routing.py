"""Inbound routing: where a contact went and why, and the agents' presence.

``contact.routed.v1`` travels on ``sb.routing.v1``, keyed like the contact's interactions (the
person, ``identity_of``), so a router instance that owns a partition is the one writer of its
contacts' decisions.  It is an interaction event like the others: the recorder files it in the
customer's history, where an auditor reads why a call went where.  Every gateway instance reads
the topic to push screen pops to the agents connected to it.

``agent.presence.v1`` travels on ``sb.presence.v1``, keyed by the agent's user name; the topic
is compacted, so the latest presence of every agent is what a starting instance reads back.
"""

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.enums import Direction
from contracts.envelope import InteractionEvent, direction_field
from contracts.text import Label, Ref, Text, UtcDatetime

__all__ = [
    "AgentPresenceChanged",
    "ContactRouted",
    "Presence",
    "RouteTarget",
    "RoutingFacts",
]

Presence = Literal["available", "busy", "away", "offline"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]


class RouteTarget(BaseModel):
    """Where the contact goes: an agent, a queue (to wait in), voicemail, or a callback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["agent", "queue", "voicemail", "callback"] = Field(
        description="agent: offered to one agent; queue: waits for the queue's agents; "
        "voicemail / callback: nobody can take it now (after hours, overflow).",
        examples=["agent"],
    )
    queue: Name | None = Field(
        default=None, description="The queue the contact belongs to.", examples=["support"]
    )
    agent: Name | None = Field(
        default=None, description="kind agent: the agent offered it.", examples=["ann"]
    )


class RoutingFacts(BaseModel):
    """What the router knew of the caller when it decided (from the customer card)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: Label | None = Field(default=None, examples=["gold"])
    language: Label | None = Field(default=None, examples=["de"])
    tags: list[Label] = Field(default_factory=list, max_length=50, examples=[["reseller"]])
    last_agent: Label | None = Field(
        default=None, description="Who last handled the caller.", examples=["ann"]
    )


class ContactRouted(InteractionEvent):
    """The router decided where an inbound contact goes, and why."""

    allowed_directions: ClassVar[frozenset[Direction]] = frozenset({Direction.inbound})

    type: Literal["contact.routed.v1"] = "contact.routed.v1"
    direction: Direction = direction_field(Direction.inbound)
    contact_ref: Ref = Field(
        description="What was routed: the call's CallSid, or the message's provider_ref.",
        examples=["CA0123456789abcdef0123456789abcdef"],
    )
    attempt: int = Field(
        default=1,
        ge=1,
        le=1_000_000,
        description="1 for the first decision; one more each time the contact is routed again "
        "(an offer not answered in time, an overflow).  A hand-over: the conversation's version.",
        examples=[1],
    )
    target: RouteTarget = Field(
        description="Where the contact goes.",
        examples=[{"kind": "agent", "queue": "support", "agent": "ann"}],
    )
    rule: Label = Field(
        description="The rule that decided, a stable code: last-agent, skills, queued, "
        "after-hours, holiday, overflow, ...",
        examples=["last-agent"],
    )
    reason: Text = Field(
        max_length=2000,
        description="The decision in one sentence, for agents and auditors.",
        examples=["VIP rule 'gold' → queue vip; ann was the last agent (2 h ago) and is free"],
    )
    customer_id: UUID | None = Field(
        default=None, description="The caller's customer, when known before the decision."
    )
    facts: RoutingFacts | None = Field(
        default=None, description="The caller's card as the router read it; none if unknown."
    )
    offer_expires_at: UtcDatetime | None = Field(
        default=None,
        description="A message offered to the agent: they accept it (offer.answered.v1) before "
        "then, or it is routed again without them. None: assigned at once (calls ring instead).",
        examples=["2026-12-01T09:01:00Z"],
    )
    from_agent: Name | None = Field(
        default=None,
        description="A hand-over at the desk: the agent who had the conversation (the contact "
        "is then the conversation's id, the attempt its version).",
        examples=["bob"],
    )


class OfferAnswered(InteractionEvent):
    """An agent accepted or declined a message offered to them (``offer_expires_at``)."""

    allowed_directions: ClassVar[frozenset[Direction]] = frozenset({Direction.inbound})

    type: Literal["offer.answered.v1"] = "offer.answered.v1"
    direction: Direction = direction_field(Direction.inbound)
    contact_ref: Ref = Field(
        description="The message offered: its provider_ref.", examples=["wamid.HBgL"]
    )
    attempt: int = Field(
        ge=1, le=1_000_000, description="The attempt of the offer answered.", examples=[1]
    )
    agent: Name = Field(description="Who answered.", examples=["ann"])
    accepted: bool = Field(
        description="True: the agent takes it; false: declined.", examples=[True]
    )


class AgentPresenceChanged(BaseModel):
    """An agent became available, busy, away or offline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["agent.presence.v1"] = "agent.presence.v1"
    agent: Name = Field(description="The agent's user name.", examples=["ann"])
    presence: Presence = Field(examples=["available"])
    occurred_at: UtcDatetime = Field(examples=["2026-12-01T09:00:00Z"])
    by: Label = Field(
        description="Who set it: the agent, a supervisor, or the system (sign-out, timeout).",
        examples=["ann"],
    )
