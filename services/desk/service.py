"""The desk's commands and queries for agents (the API and the CLI call these).

Synchronous, like the library; the API runs them in its thread pool.  Each command loads the
desk fresh, decides, and saves; a save that loses a race with another writer of the desk
(the follower placing a contact, another agent) is decided again on the fresh desk, so
nothing is lost — and a status change sent with the version the client saw is refused
(``ConversationChanged``) when the conversation moved on meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from channels.email.blobs import LocalBlobStore
from contracts.errors import Conflict, InputError, NotFound
from services.desk.files import checked_type, safe_filename
from services.desk.store import aggregate_of, load_desk, load_or_start_desk, save_desks
from services.domain.desk import (
    Conversation,
    ConversationIndex,
    CustomerDesk,
    InvalidTransition,
    MissingAssignee,
    NoteRefused,
    StaleConversation,
    Status,
    StoredFile,
    desk_id_for,
    stored_file_id_for,
)
from services.history.customers import CustomerHistory, CustomerNotFound

T = TypeVar("T")
CUSTOMER_TOPICS = "switchboard:Customer."
_ATTEMPTS = 5
_PAGE = 200  # a desk's events read per query, newest first, looking for a file


class UnknownConversation(NotFound):
    def __init__(self, conversation_id: UUID) -> None:
        super().__init__(f"no conversation {conversation_id}")


class UnknownFile(NotFound):
    def __init__(self, sha256: str, customer_id: UUID | None = None) -> None:
        to = f" to customer {customer_id}" if customer_id else ""
        super().__init__(f"no file {sha256} was attached{to}")


class ConversationChanged(Conflict):
    """The client's expected_version is not the conversation's version any more."""

    def __init__(self, reason: str, current: int) -> None:
        super().__init__(reason)
        self.current = current


class TransitionRefused(Conflict):
    """The conversation's status does not allow this change."""


class DeskInputError(InputError):
    """A refused field of a desk command; ``field`` names it."""

    def __init__(self, reason: str, *, field: str) -> None:
        super().__init__(reason)
        self.field = field


@dataclass(frozen=True)
class Note:
    note_id: UUID
    customer_id: UUID
    conversation_id: UUID | None
    text: str
    by: str
    added_at: datetime


@dataclass(frozen=True)
class AttachedFile:
    sha256: str
    customer_id: UUID
    conversation_id: UUID | None
    filename: str
    content_type: str
    size: int
    by: str
    attached_at: datetime

    @property
    def download_path(self) -> str:
        return download_path(self.customer_id, self.sha256)


def download_path(customer_id: UUID, sha256: str) -> str:
    """Per customer: the name a file is served under is the one it was attached under to
    this customer (``DeskService.attached_file``)."""
    return f"/v1/customers/{customer_id}/files/{sha256}"


class DeskService:
    """``history`` and ``blobs`` may be given as functions that open them: then they are
    opened on first use (building the API opens no store)."""

    def __init__(
        self,
        history: CustomerHistory | Callable[[], CustomerHistory],
        *,
        blobs: LocalBlobStore | Callable[[], LocalBlobStore],
        max_file_bytes: int,
    ) -> None:
        self._history = history
        self._blobs = blobs
        self._opening = threading.Lock()
        self.max_file_bytes = max_file_bytes

    @property
    def history(self) -> CustomerHistory:
        if not isinstance(self._history, CustomerHistory):
            with self._opening:
                if not isinstance(self._history, CustomerHistory):
                    self._history = self._history()
        return self._history

    @property
    def blobs(self) -> LocalBlobStore:
        if not isinstance(self._blobs, LocalBlobStore):
            with self._opening:
                if not isinstance(self._blobs, LocalBlobStore):
                    self._blobs = self._blobs()
        return self._blobs

    # -- queries ------------------------------------------------------------------------

    def conversations(self, customer_id: UUID) -> list[Conversation]:
        """The customer's conversations, newest contact first (none yet: empty)."""
        desk = load_desk(self.history, customer_id)
        if desk is None:
            self._require_a_customer(customer_id)
            return []
        return desk.conversations()

    def conversation(self, conversation_id: UUID) -> Conversation:
        return self._desk_of(conversation_id).conversation(conversation_id)

    def stored_file(self, sha256: str) -> StoredFile:
        found = aggregate_of(self.history, stored_file_id_for(sha256), StoredFile)
        if found is None:
            raise UnknownFile(sha256)
        return found

    def attached_file(self, customer_id: UUID, sha256: str) -> AttachedFile:
        """The file as it was last attached to this customer (its name is theirs: the same
        bytes may be attached to others under other names).  UnknownFile if it never was, or
        the customer was erased."""
        desk_id = desk_id_for(customer_id)
        recorder, mapper = self.history.recorder, self.history.mapper
        before: int | None = None
        while True:
            page = recorder.select_events(desk_id, lte=before, desc=True, limit=_PAGE)
            for stored in page:
                if stored.topic != CustomerDesk.FileAttached.TOPIC:
                    continue  # only these are opened
                event = mapper.to_domain_event(stored)
                if getattr(event, "sha256", None) == sha256:  # an erased one has none
                    return AttachedFile(
                        sha256=sha256,
                        customer_id=event.customer_id,
                        conversation_id=event.conversation_id,
                        filename=event.filename,
                        content_type=event.content_type,
                        size=event.size,
                        by=event.by,
                        attached_at=event.timestamp,
                    )
            if len(page) < _PAGE:
                raise UnknownFile(sha256, customer_id)
            before = page[-1].originator_version - 1

    def blob_path(self, sha256: str) -> Path:
        return self.blobs.path_for(sha256)

    # -- commands -----------------------------------------------------------------------

    def change_status(
        self,
        conversation_id: UUID,
        status: Status,
        *,
        by: str,
        expected_version: int,
        assignee: str | None = None,
        reason: str = "",
    ) -> Conversation:
        return self.change_status_from(
            conversation_id,
            status,
            by=by,
            expected_version=expected_version,
            assignee=assignee,
            reason=reason,
        )[1]

    def change_status_from(
        self,
        conversation_id: UUID,
        status: Status,
        *,
        by: str,
        expected_version: int,
        assignee: str | None = None,
        reason: str = "",
    ) -> tuple[Conversation, Conversation]:
        """``change_status``, answering the conversation before the change and after it."""

        def change() -> tuple[Conversation, Conversation]:
            desk = self._desk_of(conversation_id)
            before = desk.conversation(conversation_id)
            try:
                changed = desk.change_status(
                    conversation_id,
                    status,
                    by=by,
                    assignee=assignee,
                    reason=reason,
                    expected_version=expected_version,
                )
            except StaleConversation as e:
                raise ConversationChanged(str(e), e.current) from None
            except MissingAssignee as e:
                raise DeskInputError(str(e), field="assignee") from None
            except InvalidTransition as e:
                raise TransitionRefused(str(e)) from None
            save_desks(self.history, [desk])
            return before, changed

        return self._retrying(change)

    def add_note(
        self,
        text: str,
        *,
        by: str,
        customer_id: UUID | None = None,
        conversation_id: UUID | None = None,
    ) -> Note:
        def add() -> Note:
            desk = self._target(customer_id, conversation_id)
            note_id = uuid4()
            try:
                desk.add_note(note_id, text, by=by, conversation_id=conversation_id)
            except NoteRefused as e:
                raise DeskInputError(str(e), field="text") from None
            added_at = desk.pending_events[-1].timestamp
            save_desks(self.history, [desk])
            return Note(
                note_id=note_id,
                customer_id=desk.customer_id,
                conversation_id=conversation_id,
                text=text.strip(),
                by=by,
                added_at=added_at,
            )

        return self._retrying(add)

    def attach_file(
        self,
        data: bytes,
        *,
        filename: str | None,
        content_type: str | None,
        by: str,
        customer_id: UUID | None = None,
        conversation_id: UUID | None = None,
    ) -> AttachedFile:
        media_type = checked_type(data, content_type, max_bytes=self.max_file_bytes)
        name = safe_filename(filename)
        # Before the event that references it (write once, by hash: a failed save leaves an
        # unreferenced blob at worst, never an event without its bytes).
        sha256 = self.blobs.put(data)

        def attach() -> AttachedFile:
            desk = self._target(customer_id, conversation_id)
            desk.attach_file(
                sha256=sha256,
                filename=name,
                content_type=media_type,
                size=len(data),
                by=by,
                conversation_id=conversation_id,
            )
            new = []
            if aggregate_of(self.history, stored_file_id_for(sha256), StoredFile) is None:
                # No name: the file index is shared and never erased (the name is sealed
                # in the desk's FileAttached, the customer's own).
                new.append(StoredFile(sha256=sha256, content_type=media_type, size=len(data)))
            save_desks(self.history, [desk, *new])
            return AttachedFile(
                sha256=sha256,
                customer_id=desk.customer_id,
                conversation_id=conversation_id,
                filename=name,
                content_type=media_type,
                size=len(data),
                by=by,
                attached_at=desk.modified_on,
            )

        return self._retrying(attach)

    # -- helpers ------------------------------------------------------------------------

    def _target(self, customer_id: UUID | None, conversation_id: UUID | None) -> CustomerDesk:
        if conversation_id is not None:
            return self._desk_of(conversation_id)
        assert customer_id is not None, "a customer or a conversation"
        self._require_a_customer(customer_id)
        return load_or_start_desk(self.history, customer_id)

    def _require_a_customer(self, customer_id: UUID) -> None:
        # The first stored event says what the id is (a desk's or an index's id is no
        # customer's); cheaper than loading the customer.
        first = self.history.recorder.select_events(customer_id, limit=1)
        if not first or not first[0].topic.startswith(CUSTOMER_TOPICS):
            raise CustomerNotFound(customer_id)

    def _desk_of(self, conversation_id: UUID) -> CustomerDesk:
        index = aggregate_of(self.history, conversation_id, ConversationIndex)
        desk = load_desk(self.history, index.customer_id) if index is not None else None
        if desk is None or not desk.has_conversation(conversation_id):
            raise UnknownConversation(conversation_id)
        return desk

    @staticmethod
    def _retrying(command: Callable[[], T]) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                return command()
            except IntegrityError:
                # Another writer saved this desk first: decide again on what it holds now.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
