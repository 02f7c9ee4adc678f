"""The conversation rules of the agent desk, pure: which conversation a contact joins, which
status changes are allowed, what a note may be.  ``services.domain.desk`` applies them.

Which conversation a contact joins (``place_contact``):

- e-mail: a thread, found by the Message-IDs a reply carries (In-Reply-To, References);
  a reply to a thread we do not know opens a new conversation;
- SMS and the messengers: a chat with one party on one channel, joined until it has been
  quiet for ``quiet_gap``; the next message after that opens a new one;
- voice: one call and its voicemail, by the provider's call id;
- outbound messages and calls join what they belong to but never open a conversation;
  automatic replies (out-of-office) join but never open or reopen one; delivery reports
  and consent changes are no contacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

MAX_THREAD_KEYS = 50  # the newest Message-IDs of a thread: enough to find any live reply
MAX_CALL_IDS = 10
MAX_NOTE_CHARS = 10_000
SYSTEM = "system"
ROUTER = "router"  # who the desk says assigned a conversation the router gave an agent

# Not contacts: they say something about a contact (or the customer), they are none.
NOT_CONTACTS = frozenset(
    {"delivery.status.v1", "consent.changed.v1", "contact.routed.v1", "offer.answered.v1"}
)


class Status(StrEnum):
    open = "open"
    assigned = "assigned"
    pending = "pending"
    resolved = "resolved"


# From -> the statuses an agent may move a conversation to.  "assigned" to "assigned" is a
# hand-over to another agent.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.open: frozenset({Status.assigned, Status.pending, Status.resolved}),
    Status.assigned: frozenset({Status.open, Status.assigned, Status.pending, Status.resolved}),
    Status.pending: frozenset({Status.open, Status.assigned, Status.resolved}),
    Status.resolved: frozenset({Status.open, Status.assigned}),
}


class DeskRuleBroken(ValueError):
    """A command the desk refuses; the message says why (the service layer translates it)."""


class InvalidTransition(DeskRuleBroken):
    pass


class MissingAssignee(DeskRuleBroken):
    pass


class UnknownConversationId(DeskRuleBroken, LookupError):
    pass


class NoteRefused(DeskRuleBroken):
    pass


class StaleConversation(DeskRuleBroken):
    """The client changed a conversation from a version it no longer has."""

    def __init__(self, conversation_id: UUID, expected: int, current: int) -> None:
        super().__init__(
            f"conversation {conversation_id} is at version {current}, not {expected}: "
            "reload it and decide again"
        )
        self.current = current


@dataclass(frozen=True)
class Contact:
    """One recorded interaction, as the desk needs to see it."""

    key: str  # type|channel|provider_ref: the recorder's dedupe key
    notification_id: int
    interaction_type: str
    channel: str
    direction: str
    party: str
    provider_ref: str
    occurred_at: datetime
    thread_keys: tuple[str, ...] = ()  # e-mail: the Message-IDs it replies to
    call_id: str | None = None
    automatic: bool = False  # an out-of-office or other machine reply

    @property
    def kind(self) -> Literal["thread", "chat", "call"] | None:
        if self.interaction_type in NOT_CONTACTS:
            return None
        if self.interaction_type.startswith(("call.", "voicemail.")):
            return "call"
        if self.interaction_type.startswith("message."):
            return "thread" if self.channel == "email" else "chat"
        return None

    @property
    def from_customer(self) -> bool:
        return self.direction == "inbound" and not self.automatic


@dataclass(frozen=True)
class Conversation:
    """A conversation as the desk holds it (read-only copy)."""

    conversation_id: UUID
    customer_id: UUID
    kind: str
    channel: str
    party: str
    status: Status
    assignee: str | None
    opened_at: datetime
    last_contact_at: datetime
    contact_count: int
    version: int  # 1 when opened, +1 per status change: what expected_version is checked on
    thread_keys: tuple[str, ...]
    call_ids: tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    action: Literal["join", "open", "ignore"]
    conversation_id: UUID | None = None
    reason: str = ""


def place_contact(
    contact: Contact, conversations: Sequence[Conversation], *, quiet_gap: timedelta
) -> Placement:
    """Which conversation ``contact`` joins, or whether it opens one (pure)."""
    kind = contact.kind
    if kind is None:
        return Placement("ignore", reason=f"{contact.interaction_type} is no contact")
    found = _belongs_to(contact, kind, conversations, quiet_gap)
    if found is not None:
        return Placement("join", found.conversation_id)
    if contact.direction != "inbound":
        return Placement("ignore", reason="outbound contacts never open a conversation")
    if contact.automatic:
        return Placement("ignore", reason="automatic replies never open a conversation")
    return Placement("open")


def _belongs_to(
    contact: Contact, kind: str, conversations: Sequence[Conversation], quiet_gap: timedelta
) -> Conversation | None:
    candidates = [c for c in conversations if c.kind == kind and c.channel == contact.channel]
    newest_first = sorted(candidates, key=lambda c: c.last_contact_at, reverse=True)
    if kind == "call":
        return next((c for c in newest_first if contact.call_id in c.call_ids), None)
    if kind == "thread":
        keys = set(contact.thread_keys)
        return next((c for c in newest_first if keys & set(c.thread_keys)), None)
    chat = next((c for c in newest_first if c.party == contact.party), None)
    if chat is None:
        return None
    if contact.direction != "inbound":  # our reply joins the chat the agent answers in
        return chat if chat.status != Status.resolved else None
    return chat if contact.occurred_at - chat.last_contact_at <= quiet_gap else None


def check_transition(
    conversation: Conversation, to: Status, assignee: str | None
) -> tuple[Status, str | None]:
    """The status and assignee after an agent's change, or ``InvalidTransition``."""
    if to not in TRANSITIONS[conversation.status]:
        allowed = ", ".join(sorted(TRANSITIONS[conversation.status]))
        raise InvalidTransition(
            f"conversation {conversation.conversation_id} is {conversation.status}: "
            f"it can become {allowed}, not {to}"
        )
    if to == Status.assigned:
        if not assignee:
            raise MissingAssignee("assigning a conversation needs an assignee")
        if conversation.status == Status.assigned and assignee == conversation.assignee:
            raise InvalidTransition(
                f"conversation {conversation.conversation_id} is assigned to {assignee} already"
            )
        return to, assignee
    if to == Status.open:
        return to, None  # back in the queue: nobody's
    return to, assignee or conversation.assignee


def check_note(text: str) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise NoteRefused("a note needs some text")
    if len(cleaned) > MAX_NOTE_CHARS:
        raise NoteRefused(f"a note has at most {MAX_NOTE_CHARS} characters, not {len(cleaned)}")
    return cleaned
