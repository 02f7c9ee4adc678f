"""The agent desk of one customer: its conversations (the tickets agents work on), notes and files.

``CustomerDesk`` is an aggregate of its own, one per customer (id derived from the customer's),
stored beside the customer in the same store so that its events are in the same notification
log and on the same timeline.  It is kept apart from ``Customer`` because its writers differ:
the recorder writes customers, the desk follower and the agents write desks; two aggregates
never make one writer's save fail on the other's.

The rules it applies (which conversation a contact joins, the status changes allowed) are
pure functions in ``services.domain.conversation_rules``.  A new contact from the customer on
a pending or resolved conversation brings it back (``by="system"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.domain.conversation_rules import (
    MAX_CALL_IDS,
    MAX_NOTE_CHARS,
    MAX_THREAD_KEYS,
    NOT_CONTACTS,
    ROUTER,
    SYSTEM,
    TRANSITIONS,
    Contact,
    Conversation,
    DeskRuleBroken,
    InvalidTransition,
    MissingAssignee,
    NoteRefused,
    Placement,
    StaleConversation,
    Status,
    UnknownConversationId,
    check_note,
    check_transition,
    place_contact,
)

__all__ = [
    "MAX_NOTE_CHARS",
    "NOT_CONTACTS",
    "TRANSITIONS",
    "Contact",
    "Conversation",
    "ConversationIndex",
    "CustomerDesk",
    "DeskRuleBroken",
    "InvalidTransition",
    "MissingAssignee",
    "NoteRefused",
    "Placement",
    "StaleConversation",
    "Status",
    "StoredFile",
    "UnknownConversationId",
    "check_note",
    "check_transition",
    "conversation_id_for",
    "desk_id_for",
    "place_contact",
    "stored_file_id_for",
]


# The newest contact keys a conversation remembers: enough to find the contact a routing
# decision names (it comes seconds after the contact, never hundreds of contacts later).
MAX_CONTACTS = 50
MAX_AWAITED = 100


def desk_id_for(customer_id: UUID) -> UUID:
    """Deterministic: the first contact and an agent's first note racing make one desk."""
    return uuid5(NAMESPACE_URL, f"/switchboard/desks/{customer_id}")


def conversation_id_for(customer_id: UUID, opening_contact: str) -> UUID:
    """Deterministic from the contact that opened it: two followers racing make one."""
    return uuid5(NAMESPACE_URL, f"/switchboard/conversations/{customer_id}/{opening_contact}")


def stored_file_id_for(sha256: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/switchboard/files/{sha256.lower()}")


# -- the aggregates -------------------------------------------------------------------------


class CustomerDesk(Aggregate):
    TOPIC = "switchboard:CustomerDesk"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:CustomerDesk.Event"

    class Started(Aggregate.Created):
        TOPIC = "switchboard:CustomerDesk.Started"
        customer_id: UUID

    class ConversationOpened(Event):
        TOPIC = "switchboard:CustomerDesk.ConversationOpened"
        customer_id: UUID
        conversation_id: UUID
        kind: str
        channel: str
        party: str
        opened_at: datetime

    class ContactJoined(Event):
        """Which interaction joined which conversation (its dedupe key and log position)."""

        TOPIC = "switchboard:CustomerDesk.ContactJoined"
        conversation_id: UUID
        contact_key: str
        notification_id: int
        direction: str
        occurred_at: datetime
        thread_keys: list[str]
        call_id: str | None

    class AssignmentAwaited(Event):
        """The router gave a contact to an agent before the contact was placed (its decision
        was recorded first): its conversation goes to the agent when the contact joins it."""

        TOPIC = "switchboard:CustomerDesk.AssignmentAwaited"
        contact_key: str
        agent: str
        by: str
        reason: str

    class ConversationStatusChanged(Event):
        TOPIC = "switchboard:CustomerDesk.ConversationStatusChanged"
        customer_id: UUID
        conversation_id: UUID
        channel: str
        from_status: str
        to_status: str
        assignee: str | None
        by: str
        reason: str

    class NoteAdded(Event):
        TOPIC = "switchboard:CustomerDesk.NoteAdded"
        customer_id: UUID
        note_id: UUID
        text: str
        conversation_id: UUID | None
        by: str

    class FileAttached(Event):
        TOPIC = "switchboard:CustomerDesk.FileAttached"
        customer_id: UUID
        sha256: str
        filename: str
        content_type: str
        size: int
        conversation_id: UUID | None
        by: str

    class Snapshot(Aggregate.Snapshot):
        TOPIC = "switchboard:CustomerDesk.Snapshot"

    @staticmethod
    def create_id(customer_id: UUID) -> UUID:
        return desk_id_for(customer_id)

    @event(Started)
    def __init__(self, customer_id: UUID) -> None:
        self.customer_id = customer_id
        # Plain JSON-able dicts (snapshots store the state as it is), keyed by str(id).
        self._conversations: dict[str, dict[str, Any]] = {}
        self.note_count = 0
        self.file_count = 0

    # -- queries ----------------------------------------------------------------------------

    def conversations(self) -> list[Conversation]:
        """Newest contact first."""
        found = [self._view(state) for state in self._conversations.values()]
        return sorted(found, key=lambda c: c.last_contact_at, reverse=True)

    def conversation(self, conversation_id: UUID) -> Conversation:
        state = self._conversations.get(str(conversation_id))
        if state is None:
            raise UnknownConversationId(f"no conversation {conversation_id}")
        return self._view(state)

    def has_conversation(self, conversation_id: UUID) -> bool:
        return str(conversation_id) in self._conversations

    def _view(self, state: dict[str, Any]) -> Conversation:
        return Conversation(
            conversation_id=UUID(state["id"]),
            customer_id=self.customer_id,
            kind=state["kind"],
            channel=state["channel"],
            party=state["party"],
            status=Status(state["status"]),
            assignee=state["assignee"],
            opened_at=state["opened_at"],
            last_contact_at=state["last_contact_at"],
            contact_count=state["contact_count"],
            version=state["version"],
            thread_keys=tuple(state["thread_keys"]),
            call_ids=tuple(state["call_ids"]),
        )

    # -- commands ---------------------------------------------------------------------------

    def record_contact(self, contact: Contact, *, quiet_gap: timedelta) -> UUID | None:
        """Open or join a conversation with ``contact``; None when it is no contact of one."""
        placement = place_contact(contact, self.conversations(), quiet_gap=quiet_gap)
        if placement.action == "ignore":
            return None
        if placement.action == "open":
            conversation_id = conversation_id_for(self.customer_id, contact.key)
            self._open(
                customer_id=self.customer_id,
                conversation_id=conversation_id,
                kind=contact.kind or "",
                channel=contact.channel,
                party=contact.party,
                opened_at=contact.occurred_at,
            )
        else:
            assert placement.conversation_id is not None
            conversation_id = placement.conversation_id
        keys = [*contact.thread_keys, contact.provider_ref] if contact.kind == "thread" else []
        awaited = self._awaiting().get(contact.key)  # the join takes it (its effect)
        self._join(
            conversation_id=conversation_id,
            contact_key=contact.key,
            notification_id=contact.notification_id,
            direction=contact.direction,
            occurred_at=contact.occurred_at,
            thread_keys=keys,
            call_id=contact.call_id,
        )
        current = self.conversation(conversation_id)
        if contact.from_customer and current.status in (Status.pending, Status.resolved):
            back = Status.assigned if current.assignee else Status.open
            reopened = current.status == Status.resolved
            self._change_status(
                customer_id=self.customer_id,
                conversation_id=conversation_id,
                channel=current.channel,
                from_status=str(current.status),
                to_status=str(back),
                assignee=current.assignee,
                by=SYSTEM,
                reason="reopened by a new contact" if reopened else "the customer replied",
            )
        if awaited is not None:
            current = self.conversation(conversation_id)
            self._assign_routed(current, awaited["agent"], awaited["by"], awaited["reason"])
        return conversation_id

    def assign_routed(self, contact_key: str, agent: str, *, by: str, reason: str) -> UUID | None:
        """The router gave the contact ``contact_key`` (type|channel|provider_ref) to ``agent``:
        its conversation is assigned to them, with the router's reason.  A contact not placed
        yet waits for it (``AssignmentAwaited``).  The conversation it belongs to, if known."""
        found = self._with_contact(contact_key)
        if found is None:
            self._await(contact_key=contact_key, agent=agent, by=by, reason=reason)
            return None
        self._assign_routed(found, agent, by, reason)
        return found.conversation_id

    def _assign_routed(self, current: Conversation, agent: str, by: str, reason: str) -> None:
        if current.status == Status.resolved:
            return  # decided on a contact of a conversation that is over: nothing to take
        if current.status == Status.assigned and current.assignee == agent:
            return  # the agent has it already (a follow-up in their conversation)
        if by == ROUTER and current.assignee and current.assignee != agent:
            changed_by = self._conversations[str(current.conversation_id)].get("changed_by")
            if changed_by not in (ROUTER, SYSTEM):
                # A person gave it to someone (a hand-over, an accepted offer): the router's
                # decision, maybe recorded after that, does not take it back.
                return
        self._change_status(
            customer_id=self.customer_id,
            conversation_id=current.conversation_id,
            channel=current.channel,
            from_status=str(current.status),
            to_status=str(Status.assigned),
            assignee=agent,
            by=by,
            reason=reason,
        )

    def _with_contact(self, contact_key: str) -> Conversation | None:
        for state in self._conversations.values():
            if contact_key in state.get("contact_keys", ()):
                return self._view(state)
        return None

    def _awaiting(self) -> dict[str, dict[str, str]]:
        # Not in snapshots taken before assignments could wait: start empty then.
        return self.__dict__.setdefault("awaited", {})

    def change_status(
        self,
        conversation_id: UUID,
        to: Status,
        *,
        by: str,
        assignee: str | None = None,
        reason: str = "",
        expected_version: int | None = None,
    ) -> Conversation:
        current = self.conversation(conversation_id)
        if expected_version is not None and expected_version != current.version:
            raise StaleConversation(conversation_id, expected_version, current.version)
        status, new_assignee = check_transition(current, to, assignee)
        self._change_status(
            customer_id=self.customer_id,
            conversation_id=conversation_id,
            channel=current.channel,
            from_status=str(current.status),
            to_status=str(status),
            assignee=new_assignee,
            by=by,
            reason=reason,
        )
        return self.conversation(conversation_id)

    def add_note(
        self, note_id: UUID, text: str, *, by: str, conversation_id: UUID | None = None
    ) -> None:
        if conversation_id is not None:
            self.conversation(conversation_id)  # raises when unknown
        self._note(
            customer_id=self.customer_id,
            note_id=note_id,
            text=check_note(text),
            conversation_id=conversation_id,
            by=by,
        )

    def attach_file(
        self,
        *,
        sha256: str,
        filename: str,
        content_type: str,
        size: int,
        by: str,
        conversation_id: UUID | None = None,
    ) -> None:
        if conversation_id is not None:
            self.conversation(conversation_id)
        self._file(
            customer_id=self.customer_id,
            sha256=sha256,
            filename=filename,
            content_type=content_type,
            size=size,
            conversation_id=conversation_id,
            by=by,
        )

    # -- the events' effects (they run on trigger and on replay) ----------------------------

    @event(ConversationOpened)
    def _open(
        self,
        customer_id: UUID,
        conversation_id: UUID,
        kind: str,
        channel: str,
        party: str,
        opened_at: datetime,
    ) -> None:
        self._conversations[str(conversation_id)] = {
            "id": str(conversation_id),
            "kind": kind,
            "channel": channel,
            "party": party,
            "status": str(Status.open),
            "assignee": None,
            "opened_at": opened_at,
            "last_contact_at": opened_at,
            "contact_count": 0,
            "version": 1,
            "thread_keys": [],
            "call_ids": [],
            "contact_keys": [],
        }

    @event(ContactJoined)
    def _join(
        self,
        conversation_id: UUID,
        contact_key: str,
        notification_id: int,
        direction: str,
        occurred_at: datetime,
        thread_keys: list[str],
        call_id: str | None,
    ) -> None:
        state = self._conversations[str(conversation_id)]
        state["contact_count"] += 1
        if occurred_at > state["last_contact_at"]:
            state["last_contact_at"] = occurred_at
        state["thread_keys"] = _newest(state["thread_keys"], thread_keys, MAX_THREAD_KEYS)
        state["contact_keys"] = _newest(state.get("contact_keys", ()), [contact_key], MAX_CONTACTS)
        self._awaiting().pop(contact_key, None)
        if call_id:
            state["call_ids"] = _newest(state["call_ids"], [call_id], MAX_CALL_IDS)

    @event(ConversationStatusChanged)
    def _change_status(
        self,
        customer_id: UUID,
        conversation_id: UUID,
        channel: str,
        from_status: str,
        to_status: str,
        assignee: str | None,
        by: str,
        reason: str,
    ) -> None:
        state = self._conversations[str(conversation_id)]
        state["status"] = to_status
        state["assignee"] = assignee
        state["changed_by"] = by
        state["version"] += 1

    @event(AssignmentAwaited)
    def _await(self, contact_key: str, agent: str, by: str, reason: str) -> None:
        awaited = self._awaiting()
        awaited[contact_key] = {"agent": agent, "by": by, "reason": reason}
        while len(awaited) > MAX_AWAITED:  # a decision whose contact never came: forgotten
            del awaited[next(iter(awaited))]

    @event(NoteAdded)
    def _note(
        self,
        customer_id: UUID,
        note_id: UUID,
        text: str,
        conversation_id: UUID | None,
        by: str,
    ) -> None:
        self.note_count += 1

    @event(FileAttached)
    def _file(
        self,
        customer_id: UUID,
        sha256: str,
        filename: str,
        content_type: str,
        size: int,
        conversation_id: UUID | None,
        by: str,
    ) -> None:
        self.file_count += 1


def _newest(old: Iterable[str], new: Iterable[str], limit: int) -> list[str]:
    keys = [k for k in old if k not in set(new)]
    keys.extend(dict.fromkeys(new))
    return keys[-limit:]


class ConversationIndex(Aggregate):
    """Conversation id -> its customer, so a conversation is found by its id alone (the
    contentmanagement example's index aggregate); created in the same save as the opening."""

    TOPIC = "switchboard:ConversationIndex"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:ConversationIndex.Event"

    class Indexed(Aggregate.Created):
        TOPIC = "switchboard:ConversationIndex.Indexed"
        conversation_id: UUID
        customer_id: UUID

    @staticmethod
    def create_id(conversation_id: UUID, customer_id: UUID) -> UUID:
        return conversation_id

    @event(Indexed)
    def __init__(self, conversation_id: UUID, customer_id: UUID) -> None:
        self.conversation_id = conversation_id
        self.customer_id = customer_id


class StoredFile(Aggregate):
    """A file an agent attached: what its bytes are, so downloads serve the checked type and
    only files attached through the desk are served (not every blob in the store).

    It names no one: it is shared by everyone who attached the same bytes, and it is no
    customer's stream, so nothing in it is sealed or erased.  The name a file was attached
    under is personal data and each person's own: it is in their desk's ``FileAttached``."""

    TOPIC = "switchboard:StoredFile"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:StoredFile.Event"

    class Stored(Aggregate.Created):
        TOPIC = "switchboard:StoredFile.Stored"
        class_version = 2
        sha256: str
        content_type: str
        size: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Version 1 held the name of the first attachment in clear (still in the stores
            # written then: the log is append-only); it is not read any more.
            state.pop("filename", None)

    @staticmethod
    def create_id(sha256: str, content_type: str, size: int) -> UUID:
        return stored_file_id_for(sha256)

    @event(Stored)
    def __init__(self, sha256: str, content_type: str, size: int) -> None:
        self.sha256 = sha256
        self.content_type = content_type
        self.size = size
