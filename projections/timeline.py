"""The timeline: per customer, every interaction in order across channels.

Also keeps the small directory the lookup API needs (address -> customer, with a
contact summary).  Rows and the tracking position are written in one transaction,
so each stored event is applied exactly once, and the view can be dropped and
rebuilt from the event store at any time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Tracking, TrackingRecorder

from contracts import DeliveryStatus, status_advances, status_of
from contracts.errors import ConfigError
from projections.changes import (
    CustomerSummary,
    DeliveryReport,
    SkippedEvent,
    TimelineChanges,
    TimelineEntry,
)
from projections.desk_entries import DESK_TOPICS, add_desk_entry
from projections.directory import (
    AddressAdded,
    AgentHandled,
    Candidate,
    Card,
    ConsentSet,
    ConversationChanged,
    ConversationOpened,
    CustomerRow,
    DirectoryOp,
    DuplicateDismissed,
    Erased,
    Merged,
    ProfileSet,
    Suggestion,
    Unmerged,
    card_of,
    email_base,
    phone_variants,
    rank_candidates,
    suggestion_reasons,
    with_phone_variants,
)
from services.domain import Customer
from services.domain.desk import CustomerDesk

if TYPE_CHECKING:
    from projections.rebuild import ViewBuild

__all__ = [
    "TOPICS",
    "CustomerSummary",
    "DeliveryReport",
    "Lookup",
    "SkippedEvent",
    "TimelineChanges",
    "TimelineEntry",
    "TimelineView",
    "ViewFromTheFuture",
    "ViewSwapped",
    "changes_for",
]

# The stored topics this view reads; the store filters on them.
TOPICS = (
    Customer.FirstContacted.TOPIC,
    Customer.InteractionRecorded.TOPIC,
    Customer.ConsentChanged.TOPIC,
    Customer.AddressLinked.TOPIC,
    Customer.Absorbed.TOPIC,
    Customer.Unmerged.TOPIC,
    Customer.ProfileChanged.TOPIC,
    Customer.DuplicateDismissed.TOPIC,
    Customer.Erased.TOPIC,
    *DESK_TOPICS,
)


def fold_delivery_reports(
    current: dict[str, DeliveryStatus], reports: list[DeliveryReport]
) -> dict[str, DeliveryReport]:
    """The reports that move each message forward, last one wins (providers report out of
    order: a late "sent" must never overwrite "delivered")."""
    winners: dict[str, DeliveryReport] = {}
    status = dict(current)
    for report in reports:
        if status_advances(status.get(report.message_ref), report.status):
            status[report.message_ref] = report.status
            winners[report.message_ref] = report
    return winners


class ViewFromTheFuture(ConfigError):
    """The view was built by a newer release: an older process must not drop and rebuild it
    (it would undo the upgrade); upgrade this process instead."""

    def __init__(self, found: int, ours: int) -> None:
        super().__init__(
            f"the timeline view has schema {found}, this release knows {ours}: it was built by "
            "a newer Switchboard; run that release (or `switchboard projections rebuild` with it)"
        )


class ViewSwapped(Exception):
    """A rebuild swapped a new view in under this writer: nothing was written, and the
    position must be read again from the new view before the next write."""

    def __init__(self, where: str) -> None:
        super().__init__(f"the view at {where} was rebuilt and swapped in; read its position")


class TimelineView(TrackingRecorder):
    """The view's interface; SQLite and PostgreSQL implement it."""

    # A card read that is a local file read of some microseconds (SQLite): an async caller
    # may make it on its event loop; one that is a network round trip may not.
    reads_in_process = False

    def apply(self, changes: TimelineChanges, tracking: Tracking) -> None:
        raise NotImplementedError

    def skip(self, notification_id: int, reason: str, tracking: Tracking) -> None:
        """Record that a stored event cannot be applied, and move past it (one transaction)."""
        raise NotImplementedError

    def skipped(self) -> list[SkippedEvent]:
        """The stored events this view could not apply, oldest first."""
        raise NotImplementedError

    def timeline(
        self, customer_id: UUID, *, limit: int = 100, offset: int = 0
    ) -> list[TimelineEntry]:
        """Newest first."""
        raise NotImplementedError

    def customer_for_address(self, address: str) -> UUID | None:
        """Who contacts from ``address`` (normalized) are shown on: the one holding it, or
        its number on another phone channel (a WhatsApp customer calling for the first time)."""
        holders = self._holders(phone_variants(address))
        return holders.get(address) or next(iter(holders.values()), None)

    def summary(self, customer_id: UUID) -> CustomerSummary | None:
        raise NotImplementedError

    def delivery_status(self, message_ref: str) -> DeliveryReport | None:
        """The furthest status an outbound message has reached."""
        raise NotImplementedError

    def files_in_use(self, sha256s: list[str]) -> set[str]:
        """Which of these blobs a contact on some timeline still refers to (an erasure
        removes a person's files unless someone else's history has the same file)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything, tracking included: the next follow rebuilds from zero."""
        raise NotImplementedError

    def build_beside(self) -> ViewBuild | None:
        """A new, empty view beside this one, to be loaded in bulk and swapped in
        (projections/rebuild.py); None where this view can only be rebuilt in place."""
        return None

    # -- the directory (caller lookup, cards, search, duplicates) -------------------------------
    # Each store answers the primitives below; the rules are here, once.

    def lookup(self, address: str) -> Lookup:
        """Who ``address`` (normalized) is: the customer its contacts are recorded on, and,
        for a number several customers share, every one of them ranked with the reason."""
        variants = phone_variants(address)  # the person's number on every phone channel
        row, shared = self._lookup_row(variants)
        if row is None and not shared:
            return Lookup(card=None, candidates=[])
        card = self._card_from(row) if row is not None else None
        if not shared:
            return Lookup(card=card, candidates=[])
        sharers = [
            cid for cid in self._sharers(variants) if card is None or cid != card.customer_id
        ]
        people = [(card, True)] if card is not None else []
        people += [(c, False) for c in self.cards(sharers)]
        ranked = rank_candidates(
            address,
            [(c, holder, *self._contacts_from(c.customer_id, variants)) for c, holder in people],
        )
        return Lookup(card=ranked[0].card if ranked else card, candidates=ranked)

    def card(self, customer_id: UUID) -> Card | None:
        cards = self.cards([customer_id])
        return cards[0] if cards else None

    def cards(self, customer_ids: list[UUID]) -> list[Card]:
        return [self._card_from(row) for row in self._rows(customer_ids)]

    def search(self, text: str, *, limit: int = 20) -> list[Card]:
        """Customers by an address prefix (phone, e-mail, social id) or a name prefix."""
        ids = self._ids_by_prefix(text, limit)
        return self.cards(ids)[:limit]

    def duplicates(self, customer_id: UUID, *, limit: int = 20) -> list[Suggestion]:
        """Customers that may be the same person, best first, with the evidence; those an
        agent dismissed (either way round) and merged ones are left out."""
        card = self.card(customer_id)
        if card is None:
            return []
        dismissed = self._dismissed(customer_id)
        ids = self._possible_duplicates(card)
        out = []
        for other in self.cards([i for i in ids if i != customer_id]):
            if other.merged_into is not None or str(other.customer_id) in dismissed:
                continue
            if str(customer_id) in self._dismissed(other.customer_id):
                continue
            score, reasons = suggestion_reasons(card, other)
            if reasons:
                out.append(Suggestion(other.customer_id, score, reasons, other))
        out.sort(key=lambda s: (-s.score, str(s.customer_id)))
        return out[:limit]

    def _card_from(self, row: CustomerRow) -> Card:
        absorbed = self._rows(self._absorbed_by(row.customer_id)) if row.absorbed else []
        return card_of(row, absorbed)

    def _possible_duplicates(self, card: Card) -> list[UUID]:
        ids = set(self._holders(sorted(with_phone_variants(card.addresses))).values())
        for a in card.addresses:
            base = email_base(a)
            if base:
                ids.update(self._ids_by_email_base(base))
        if card.name:
            ids.update(self._ids_by_name(card.name.strip().casefold()))
        ids.discard(card.customer_id)
        return sorted(ids, key=str)

    def _lookup_row(self, variants: list[str]) -> tuple[CustomerRow | None, bool]:
        """The row of the customer holding one of these addresses, and whether any of them is
        shared with other customers: one read on the hot path."""
        raise NotImplementedError

    def _rows(self, customer_ids: list[UUID]) -> list[CustomerRow]:
        raise NotImplementedError

    def _absorbed_by(self, customer_id: UUID) -> list[UUID]:
        raise NotImplementedError

    def _sharers(self, addresses: list[str]) -> list[UUID]:
        raise NotImplementedError

    def _holders(self, addresses: list[str]) -> dict[str, UUID]:
        raise NotImplementedError

    def _contacts_from(
        self, customer_id: UUID, addresses: list[str]
    ) -> tuple[datetime | None, int]:
        raise NotImplementedError

    def _ids_by_prefix(self, text: str, limit: int) -> list[UUID]:
        raise NotImplementedError

    def _ids_by_email_base(self, base: str) -> list[UUID]:
        raise NotImplementedError

    def _ids_by_name(self, name_key: str) -> list[UUID]:
        raise NotImplementedError

    def _dismissed(self, customer_id: UUID) -> dict[str, str]:
        raise NotImplementedError

    def assigned_load(self) -> dict[str, dict[str, int]]:
        """Conversations assigned now, per agent and channel: what the router counts against
        an agent's capacity on the message channels."""
        loads: dict[str, dict[str, int]] = {}
        for agent, status, channel, count in self._worked_counts():
            if status == "assigned":
                loads.setdefault(agent, {})[channel] = count
        return loads

    def assigned_to(self, agent: str, *, limit: int = 100) -> list[AgentConversation]:
        """The conversations an agent has (assigned or pending), newest first."""
        raise NotImplementedError

    def _worked_counts(self) -> list[tuple[str, str, str, int]]:
        """(assignee, status, channel, count) of the assigned and pending conversations."""
        raise NotImplementedError


@dataclass(frozen=True)
class AgentConversation:
    """A conversation an agent has, as their list shows it."""

    conversation_id: UUID
    customer_id: UUID
    channel: str
    status: str
    opened_at: datetime


@dataclass(frozen=True)
class Lookup:
    """The answer to "who is this?": ``card`` None when nobody has the address."""

    card: Card | None
    candidates: list[Candidate]


def summarize(payload: dict[str, Any]) -> str:
    """One line an agent reads on the timeline."""
    kind = payload.get("type", "")
    channel = payload.get("channel", "")
    if kind.startswith("message."):
        text = " ".join(str(payload.get("body") or "").split())
        subject = payload.get("subject")
        line = f"{subject} — {text}" if subject else text
        return line[:160]
    if kind == "call.ringing.v1":
        return f"Incoming call from {payload.get('party')}"
    if kind == "call.answered.v1":
        agent = payload.get("agent")
        return f"Call answered by {agent}" if agent else "Call answered"
    if kind == "call.ended.v1":
        secs = int(float(payload.get("duration_s") or 0))
        return f"Call ended after {secs // 60}m{secs % 60:02d}s"
    if kind == "call.missed.v1":
        return f"Missed call ({payload.get('reason')})"
    if kind == "voicemail.recorded.v1":
        return f"Voicemail, {int(float(payload.get('duration_s') or 0))}s"
    if kind == "delivery.status.v1":
        line = f"{channel} message {payload.get('message_ref')} {payload.get('status')}"
        reason = payload.get("error_message")
        return f"{line}: {reason}"[:160] if reason else line
    if kind == "contact.routed.v1":
        verb = "Offered to" if payload.get("offer_expires_at") else "Routed to"
        return f"{verb} {_target(payload.get('target') or {})}: {payload.get('reason')}"[:160]
    if kind == "offer.answered.v1":
        verb = "accepted" if payload.get("accepted") else "declined"
        return f"{payload.get('agent')} {verb} the offer of this message"
    if kind == "consent.changed.v1":
        verb = "Opted in to" if payload.get("granted") else "Opted out of"
        return f"{verb} {payload.get('purpose')} on {channel} via {payload.get('source')}"
    return kind


def _target(target: dict[str, Any]) -> str:
    kind = target.get("kind")
    if kind == "agent":
        return f"agent {target.get('agent')}"
    if kind == "queue":
        return f"queue {target.get('queue')}"
    return str(kind)


# The hub's own doings about a contact, filed on the timeline but no contact themselves.
_HUB_DOINGS = frozenset({"contact.routed.v1", "offer.answered.v1"})


def changes_for(events: Sequence[tuple[int, Any]]) -> TimelineChanges:
    """Map (notification id, domain event) pairs to view changes. Pure."""
    changes = TimelineChanges()
    for position, event in events:
        add_desk_entry(changes, position, event)  # conversations, notes, files
        if isinstance(event, Customer.FirstContacted):
            changes.new_customers.append(
                CustomerSummary(
                    customer_id=event.originator_id,
                    first_address=event.address,
                    first_seen=event.timestamp,
                    contact_count=0,
                    last_contact_at=None,
                    last_channel=None,
                )
            )
            changes.addresses.append((event.address, event.originator_id))
        elif isinstance(event, Customer.InteractionRecorded):
            payload = event.as_reported()
            changes.entries.append(
                TimelineEntry(
                    customer_id=event.originator_id,
                    position=position,
                    occurred_at=event.occurred_at,
                    type=event.interaction_type,
                    channel=event.channel,
                    direction=(
                        "internal" if event.interaction_type in _HUB_DOINGS else event.direction
                    ),
                    party=event.party,
                    provider_ref=event.provider_ref,
                    summary=summarize(payload),
                    payload=payload,
                )
            )
            report = _delivery_report(event)
            if report is not None:
                changes.deliveries.append(report)
            agent = event.payload.get("agent") if event.interaction_type in _HANDLED else None
            if agent:
                changes.ops.append(AgentHandled(event.originator_id, agent, event.occurred_at))
        else:
            op = _directory_op(event)
            if op is not None:
                changes.ops.append(op)
    return changes


# Contacts that name the agent who handled them.
_HANDLED = frozenset({"call.answered.v1", "call.ended.v1"})


def _directory_op(event: Any) -> DirectoryOp | None:
    cid = event.originator_id
    if isinstance(event, Customer.ConsentChanged):
        return ConsentSet(cid, f"{event.channel}:{event.purpose}", event.granted)
    if isinstance(event, Customer.AddressLinked):
        return AddressAdded(cid, event.address, event.shared)
    if isinstance(event, Customer.Absorbed):
        return Merged(cid, event.absorbed_id)
    if isinstance(event, Customer.Unmerged):
        return Unmerged(cid, event.absorbed_id, list(event.addresses), list(event.moved))
    if isinstance(event, Customer.ProfileChanged):
        return ProfileSet(cid, dict(event.changes))
    if isinstance(event, Customer.DuplicateDismissed):
        return DuplicateDismissed(cid, event.other_id, event.reason)
    if isinstance(event, Customer.Erased):
        return Erased((cid, *(UUID(str(m)) for m in event.group if UUID(str(m)) != cid)))
    if isinstance(event, CustomerDesk.ConversationOpened):
        return ConversationOpened(
            event.customer_id, event.conversation_id, event.channel, event.opened_at
        )
    if isinstance(event, CustomerDesk.ConversationStatusChanged):
        return ConversationChanged(event.conversation_id, event.to_status, event.assignee)
    return None


_SENT = DeliveryStatus.sent  # read once: an enum member off its class is Python code (3.11)


def _delivery_report(event: Customer.InteractionRecorded) -> DeliveryReport | None:
    if event.interaction_type == "message.sent.v1":
        ref, status = event.provider_ref, _SENT
    elif event.interaction_type == "delivery.status.v1":
        ref, status = event.payload["message_ref"], status_of(event.payload["status"])
    else:
        return None
    return DeliveryReport(
        message_ref=ref,
        customer_id=event.originator_id,
        channel=event.channel,
        status=status,
        occurred_at=event.occurred_at,
    )


def contact_addresses(entries: Iterable[TimelineEntry]) -> list[tuple[str, UUID]]:
    """The addresses a customer was in contact at (a WhatsApp number beside the phone it
    first called from), once each: the card lists them."""
    return list(
        dict.fromkeys((e.party, e.customer_id) for e in entries if e.direction != "internal")
    )


def contact_rollup(entries: Iterable[TimelineEntry]) -> dict[UUID, tuple[int, datetime, str]]:
    """Per customer: how many new contacts, and the latest one's time and channel."""
    rollup: dict[UUID, tuple[int, datetime, str]] = {}
    for e in entries:
        if e.direction == "internal":  # the desk's own doings (notes, status) are no contact
            continue
        count, last, channel = rollup.get(e.customer_id, (0, e.occurred_at, e.channel))
        if e.occurred_at >= last:
            last, channel = e.occurred_at, e.channel
        rollup[e.customer_id] = (count + 1, last, channel)
    return rollup


# json.dumps with these options would build this encoder on every call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


# A timeline row's own columns that an interaction's payload (``as_reported``) repeats.  The
# row keeps the payload without them (a third of its bytes: bench/footprint.py) and
# ``full_payload`` puts them back when it is read; rows written before still hold them.
ENVELOPE = ("type", "channel", "direction", "party", "provider_ref")


def stored_payload(entry: TimelineEntry) -> dict[str, Any]:
    """The entry's payload as the view keeps it: without what its columns say already (a
    value that differs from its column, e.g. a hub doing's direction, stays)."""
    payload = entry.payload
    kept = None
    for key, column in (
        ("type", entry.type),
        ("channel", entry.channel),
        ("direction", entry.direction),
        ("party", entry.party),
        ("provider_ref", entry.provider_ref),
    ):
        if key in payload and payload[key] == column:
            if kept is None:
                kept = dict(payload)  # in its order, copied in C
            del kept[key]
    return payload if kept is None else kept


def full_payload(payload: dict[str, Any], row: Any) -> dict[str, Any]:
    """A stored payload with the envelope its row's columns hold put back first, in the
    order ``as_reported`` gives it (a desk entry's payload never had it, and gets none)."""
    if "occurred_at" not in payload or "type" in payload:
        return payload  # not an interaction's, or stored whole
    full = {k: payload.get(k, row[k]) for k in ENVELOPE}
    full.update(payload)
    return full


def payload_json(payload: dict[str, Any]) -> str:
    """The payload as compact JSON text: what ``json`` writes (``ensure_ascii=False``).

    orjson writes the same values in the same order ten times faster (a float's exponent may
    read 1e-9 for 1e-09: tests/unit/test_timeline_payload.py); what it refuses (an integer
    beyond 64 bits, a lone surrogate) goes to ``json``.  NaN and the infinities it writes as
    null, where ``json`` writes tokens that are not JSON (and PostgreSQL's jsonb refuses)."""
    try:
        text = orjson.dumps(payload).decode()
    except TypeError:
        text = _JSON.encode(payload)
    if "\\u0000" in text:  # json.dumps always escapes NUL; PostgreSQL's jsonb refuses it
        text = _JSON.encode(storable(payload))
    return text


def storable(value: Any) -> Any:
    """``value`` with NUL in every string replaced by U+FFFD: what PostgreSQL's text holds.

    The contracts replace NUL since they were tightened; events stored before still have it.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value
