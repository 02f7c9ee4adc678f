"""The customer directory over HTTP: caller lookup (the card), search, duplicates, and what
agents decide about a customer (profile edits, links, merges, unmerges, dismissals).

Reads come from the directory view (``projections``); decisions go to the customer history,
which records them as events (with the caller as ``by``) and keeps the identity table in the
same transaction.  The view follows within milliseconds, so an answer to a decision carries
what the history now holds, not a card.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts import AddressError, Channel, parse_any_address
from projections.directory import Card, Suggestion
from projections.reachability import ChannelReach
from projections.reachability_store import ReachabilityView
from projections.timeline import Lookup, TimelineView
from services.history.customers import CustomerHistory

Reason = Annotated[
    str,
    Field(min_length=1, max_length=500, description="Why (kept with the event, for audits)"),
]
_TIMEZONES = frozenset(available_timezones())


class RecentContactOut(BaseModel):
    position: int
    occurred_at: datetime
    type: str = Field(examples=["call.ringing.v1"])
    channel: str
    direction: str
    party: str
    summary: str


class OpenConversationOut(BaseModel):
    conversation_id: UUID
    channel: str
    status: str = Field(examples=["assigned"])
    assignee: str | None
    opened_at: datetime


class ChannelReachOut(BaseModel):
    """One channel of the customer, as reachable as what was learnt says."""

    channel: str = Field(examples=["whatsapp"])
    address: str | None = Field(
        description="The best address known on the channel (null: none known)",
        examples=["whatsapp:+4930123456789"],
    )
    reachable: bool = Field(
        description="False when the customer opted out, or the address was refused for good"
    )
    score: float = Field(ge=0, le=1, description="How likely a message here is answered")
    reasons: list[str] = Field(examples=[["replies within an hour (3 of 4)"]])


class CardOut(BaseModel):
    """What an agent sees of a customer before picking up."""

    customer_id: UUID
    name: str | None = Field(examples=["Anna Berg"])
    tier: str | None = Field(examples=["gold"])
    language: str | None = Field(examples=["de"])
    time_zone: str | None = Field(examples=["Europe/Berlin"])
    tags: list[str] = Field(examples=[["reseller"]])
    preferred_channel: str | None = Field(examples=["whatsapp"])
    profile_version: int = Field(
        description="Send it back as expected_version when editing the profile"
    )
    addresses: list[str] = Field(examples=[["+4930123456789", "anna@example.com"]])
    consent: dict[str, bool] = Field(
        description="Per channel:purpose, as the customer said (absent: never asked)",
        examples=[{"sms:marketing": False}],
    )
    first_address: str
    first_seen: datetime
    contact_count: int
    last_contact_at: datetime | None
    last_channel: str | None
    last_agent: str | None = Field(description="Who last handled them (answered a call)")
    recent: list[RecentContactOut] = Field(description="The last contacts, newest first")
    open_conversations: list[OpenConversationOut] = Field(
        description="Conversations not resolved yet, newest first (GET /v1/conversations/{id})"
    )
    merged_into: UUID | None = Field(
        description="Set when this customer was merged into another: look that one up"
    )
    merged: list[UUID] = Field(description="Customers merged into this one")
    reachability: list[ChannelReachOut] | None = Field(
        None,
        description="The customer's channels, best first, with the reasons (for service "
        "messages: a marketing opt-out is a reason, not a block). On GET "
        "/v1/customers/{customer_id} only; null in lookups and searches.",
    )


class CandidateOut(BaseModel):
    customer: CardOut
    reason: str = Field(examples=["last contact from +4930123456789 at 2026-11-30 09:12 UTC"])


class LookupAnswer(BaseModel):
    address: str = Field(description="The normalized address that was looked up")
    known: bool = Field(description="Whether any customer has this address")
    customer: CardOut | None = Field(
        description="The customer contacts from this address are recorded on (for a shared "
        "number: the first candidate)"
    )
    candidates: list[CandidateOut] = Field(
        description="For a number several customers share: all of them, best first, each "
        "with the reason for its place. Empty otherwise."
    )


class SearchAnswer(BaseModel):
    query: str
    items: list[CardOut]


class SuggestionOut(BaseModel):
    customer: CardOut
    score: float = Field(ge=0, le=1, description="How sure (1: the same phone number)")
    reasons: list[str] = Field(
        examples=[["the same phone number +4930123456789 (whatsapp:+4930123456789)"]]
    )


class ProfileEdit(BaseModel):
    """Fields to set; a field sent as null is cleared, one left out is kept."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"expected_version": 0, "name": "Anna Berg", "tier": "gold"}]
        },
    )
    expected_version: int = Field(
        ge=0, description="The profile_version of the card you edited (409 if it moved on)"
    )
    name: str | None = Field(None, min_length=1, max_length=200)
    tier: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$", examples=["gold"])
    language: str | None = Field(
        None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", examples=["de", "pt-BR"]
    )
    time_zone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])
    tags: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        None, max_length=20
    )
    preferred_channel: Channel | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is no IANA time zone (e.g. Europe/Berlin)") from None
        return value

    def changes(self) -> dict[str, Any]:
        values = self.model_dump(mode="json")
        return {k: values[k] for k in self.model_fields_set if k != "expected_version"}


class ProfileAnswer(BaseModel):
    customer_id: UUID
    profile: dict[str, Any]
    profile_version: int


class LinkAddress(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"address": "telegram:123456789", "reason": "she told me on the phone"}]
        },
    )
    address: str = Field(min_length=1, max_length=320, description="Phone, e-mail or social id")
    shared: bool = Field(
        False,
        description="A number several customers use (a family landline): contacts from it "
        "stay where they are recorded, and a lookup lists every customer sharing it",
    )
    reason: Reason


class LinkAnswer(BaseModel):
    customer_id: UUID
    address: str
    shared: bool
    addresses: list[str]


class MergeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "absorb": "5a1f0c3e-8d7b-5e55-9a51-1f6f1c1e2a3b",
                    "reason": "same person: called about the same order",
                }
            ]
        },
    )
    absorb: UUID = Field(description="The customer that is the same person as this one")
    reason: Reason


class MergeAnswer(BaseModel):
    survivor_id: UUID
    absorbed_id: UUID
    addresses: list[str] = Field(description="The addresses that now lead to the survivor")
    evidence: dict[str, Any]


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    absorbed: UUID = Field(description="The customer merged into this one, to stand alone again")
    reason: Reason


class UnmergeAnswer(BaseModel):
    survivor_id: UUID
    restored_id: UUID
    addresses: list[str] = Field(description="The addresses that lead to the restored customer")
    moved: int = Field(description="Contacts recorded since the merge that went back with them")


class Dismissal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


def card_out(card: Card, reachability: list[ChannelReach] | None = None) -> CardOut:
    p = card.profile
    return CardOut(
        customer_id=card.customer_id,
        name=p.get("name"),
        tier=p.get("tier"),
        language=p.get("language"),
        time_zone=p.get("time_zone"),
        tags=list(p.get("tags") or []),
        preferred_channel=p.get("preferred_channel"),
        profile_version=card.profile_version,
        addresses=card.addresses,
        consent=card.consent,
        first_address=card.first_address,
        first_seen=card.first_seen,
        contact_count=card.contact_count,
        last_contact_at=card.last_contact_at,
        last_channel=card.last_channel,
        last_agent=card.last_agent,
        recent=[RecentContactOut(**vars(r)) for r in card.recent],
        open_conversations=[OpenConversationOut(**vars(c)) for c in card.conversations],
        merged_into=card.merged_into,
        merged=card.merged,
        reachability=None
        if reachability is None
        else [ChannelReachOut(**vars(r)) for r in reachability],
    )


def lookup_answer(address: str, found: Lookup) -> LookupAnswer:
    """The answer to "who is this?" (the API's and ``switchboard lookup``'s)."""
    return LookupAnswer(
        address=address,
        known=found.card is not None,
        customer=card_out(found.card) if found.card is not None else None,
        candidates=[
            CandidateOut(customer=card_out(c.card), reason=c.reason) for c in found.candidates
        ],
    )


def merge_evidence(view: TimelineView, survivor: UUID, absorbed: UUID) -> dict[str, Any]:
    """What a merge records as its evidence besides who and why: the duplicate suggestion
    that proposed it, if one did (its score and reasons)."""
    suggestion = next((s for s in view.duplicates(survivor) if s.customer_id == absorbed), None)
    if suggestion is None:
        return {"suggestion": None}
    return {"suggestion": {"score": suggestion.score, "reasons": suggestion.reasons}}


def suggestion_out(s: Suggestion) -> SuggestionOut:
    return SuggestionOut(customer=card_out(s.card), score=s.score, reasons=s.reasons)


def _address_or_422(raw: str, where: tuple[str, str], default_region: str | None) -> str:
    try:
        return parse_any_address(raw, default_region=default_region)
    except AddressError as e:
        # The same answer as any other refused field: 422 naming it.
        raise RequestValidationError([{"type": "address", "loc": where, "msg": str(e)}]) from None


_UNKNOWN = {404: {"description": "No such customer."}}


def add_directory_routes(
    router: APIRouter,
    view: TimelineView,
    *,
    default_region: str | None,
    reachability: ReachabilityView | None = None,
) -> None:
    """The reads: lookup, search, card (with the channels ranked, given ``reachability``),
    duplicates."""

    @router.get(
        "/lookup",
        response_model=LookupAnswer,
        responses={422: {"description": "The address is missing or is no address we can read."}},
        tags=["customers"],
    )
    async def lookup(
        address: Annotated[
            str,
            Query(
                min_length=1,
                max_length=320,
                description="Phone number, e-mail or social id",
                examples=["+4930123456789"],
            ),
        ],
    ) -> Response:
        """Who is calling (or writing): the customer card, or ``known: false``.

        Async on purpose: on SQLite the card is one indexed read on a connection this thread
        owns, cheaper than the hop to FastAPI's thread pool (bench/lookup.py); a PostgreSQL
        round trip goes to the pool.  The answer is serialized once, here (it is the
        documented model; FastAPI would validate it a second time)."""
        normalized = _address_or_422(address, ("query", "address"), default_region)
        if view.reads_in_process:
            found = view.lookup(normalized)
        else:
            found = await run_in_threadpool(view.lookup, normalized)
        answer = lookup_answer(normalized, found)
        return Response(answer.model_dump_json(), media_type="application/json")

    @router.get("/customers", response_model=SearchAnswer, tags=["customers"])
    def search(
        q: Annotated[
            str,
            Query(
                min_length=2,
                max_length=320,
                description="A phone number, e-mail or social id (or its beginning), or the "
                "beginning of a name",
                examples=["+49301", "anna@", "Anna B"],
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> SearchAnswer:
        """Find customers by address or name prefix (a complete address: that customer)."""
        try:
            exact = parse_any_address(q, default_region=default_region)
        except AddressError:
            exact = None
        if exact is not None:
            found = view.lookup(exact)
            cards = [c.card for c in found.candidates] or ([found.card] if found.card else [])
            if cards:
                return SearchAnswer(query=q, items=[card_out(c) for c in cards[:limit]])
        return SearchAnswer(query=q, items=[card_out(c) for c in view.search(q, limit=limit)])

    @router.get(
        "/customers/{customer_id}", response_model=CardOut, responses=_UNKNOWN, tags=["customers"]
    )
    def customer_card(customer_id: UUID) -> CardOut:
        card = view.card(customer_id)
        if card is None:
            raise HTTPException(404, f"no customer {customer_id}")
        if reachability is None:
            return card_out(card)
        return card_out(card, reachability.ranking(customer_id, purpose="service"))

    @router.get(
        "/customers/{customer_id}/duplicates",
        response_model=list[SuggestionOut],
        responses=_UNKNOWN,
        tags=["customers"],
    )
    def duplicates(customer_id: UUID) -> list[SuggestionOut]:
        """Customers that may be the same person, best first, with the evidence: the same
        phone number on another channel, the same e-mail without its +tag, the same name at
        the same company.  Dismissed ones are left out."""
        if view.card(customer_id) is None:
            raise HTTPException(404, f"no customer {customer_id}")
        return [suggestion_out(s) for s in view.duplicates(customer_id)]


def customer_commands_router(
    history: CustomerHistory, view: TimelineView, *, default_region: str | None = None
) -> APIRouter:
    """What agents decide about a customer; each an event with the caller as ``by``."""
    router = APIRouter(prefix="/customers", tags=["customers"])

    def caller(request: Request) -> str:
        return request.state.caller.username

    @router.patch(
        "/{customer_id}",
        response_model=ProfileAnswer,
        responses={
            **_UNKNOWN,
            409: {
                "description": "The profile changed since you read it (reload), or the "
                "customer was merged into another."
            },
        },
    )
    def edit_profile(customer_id: UUID, edit: ProfileEdit, request: Request) -> ProfileAnswer:
        """Edit the profile (name, tier, language, time zone, tags, preferred channel)."""
        customer = history.edit_profile(
            customer_id, edit.changes(), by=caller(request), expected_version=edit.expected_version
        )
        return ProfileAnswer(
            customer_id=customer.id,
            profile=customer.profile,
            profile_version=customer.profile_version,
        )

    @router.post(
        "/{customer_id}/addresses",
        status_code=201,
        response_model=LinkAnswer,
        responses={
            **_UNKNOWN,
            409: {
                "description": "The address leads to another customer (merge them, or link "
                "it as shared), or is this customer's already."
            },
            422: {"description": "No address we can read."},
        },
    )
    def link_address(customer_id: UUID, link: LinkAddress, request: Request) -> LinkAnswer:
        """Link an address (an anonymous caller's, a second e-mail, a Telegram chat): later
        contacts from it are recorded on this customer."""
        address = _address_or_422(link.address, ("body", "address"), default_region)
        customer = history.link_address(
            customer_id, address, by=caller(request), reason=link.reason, shared=link.shared
        )
        return LinkAnswer(
            customer_id=customer.id,
            address=address,
            shared=link.shared,
            addresses=[*customer.addresses, *customer.shared_addresses],
        )

    @router.post(
        "/{customer_id}/merge",
        response_model=MergeAnswer,
        responses={
            **_UNKNOWN,
            409: {
                "description": "One of them was merged already, or the absorbed one has "
                "customers merged into it."
            },
            422: {"description": "A customer cannot absorb itself."},
        },
    )
    def merge(customer_id: UUID, merge: MergeRequest, request: Request) -> MergeAnswer:
        """Merge ``absorb`` into this customer: one person from now on.  Lookups by any of its
        addresses find this customer; its history shows here; undo with ``unmerge``."""
        if merge.absorb == customer_id:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("body", "absorb"),
                        "msg": "a customer cannot absorb itself",
                    }
                ]
            )
        evidence = merge_evidence(view, customer_id, merge.absorb)
        survivor, absorbed = history.merge(
            customer_id, merge.absorb, by=caller(request), reason=merge.reason, evidence=evidence
        )
        return MergeAnswer(
            survivor_id=survivor.id,
            absorbed_id=absorbed.id,
            addresses=list(absorbed.addresses),
            evidence=evidence,
        )

    @router.post(
        "/{customer_id}/unmerge",
        response_model=UnmergeAnswer,
        responses={
            **_UNKNOWN,
            409: {"description": "That customer was never merged into this one."},
        },
    )
    def unmerge(customer_id: UUID, unmerge: UnmergeRequest, request: Request) -> UnmergeAnswer:
        """Undo a merge: both customers stand alone again with their own addresses and
        histories; contacts recorded since the merge go to the one whose address they came
        from."""
        survivor, restored, moved = history.unmerge(
            customer_id, unmerge.absorbed, by=caller(request), reason=unmerge.reason
        )
        return UnmergeAnswer(
            survivor_id=survivor.id,
            restored_id=restored.id,
            addresses=list(restored.addresses),
            moved=len(moved),
        )

    @router.post(
        "/{customer_id}/duplicates/{other_id}/dismiss",
        status_code=204,
        responses={**_UNKNOWN, 422: {"description": "A customer is no duplicate of itself."}},
    )
    def dismiss(customer_id: UUID, other_id: UUID, dismissal: Dismissal, request: Request) -> None:
        """Say a suggested duplicate is someone else: it is no longer suggested (either way)."""
        if other_id == customer_id:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("path", "other_id"),
                        "msg": "a customer is no duplicate of itself",
                    }
                ]
            )
        history.dismiss_duplicate(
            customer_id, other_id, by=caller(request), reason=dismissal.reason
        )

    return router
