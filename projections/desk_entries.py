"""The desk's events on the customer timeline: conversations, notes and files.

Called from ``projections.timeline.changes_for`` for the desk topics in ``DESK_TOPICS``.
Entries have direction ``internal`` (the desk's own doings, no contact with the customer),
the acting user as ``party`` and, for files, the download path in the payload.
"""

from __future__ import annotations

from typing import Any

from projections.changes import TimelineChanges, TimelineEntry
from services.domain.desk import CustomerDesk

DESK_TOPICS = (
    CustomerDesk.ConversationOpened.TOPIC,
    CustomerDesk.ConversationStatusChanged.TOPIC,
    CustomerDesk.NoteAdded.TOPIC,
    CustomerDesk.FileAttached.TOPIC,
)
DIRECTION = "internal"
DESK_CHANNEL = "desk"
_SUMMARY_CHARS = 160


def add_desk_entry(changes: TimelineChanges, position: int, event: Any) -> None:
    """Append the timeline entry of a desk event to ``changes`` (other events: nothing)."""
    if not isinstance(event, CustomerDesk.Event):
        return
    entry = _entry(position, event)
    if entry is not None:
        changes.entries.append(entry)


def _entry(position: int, event: Any) -> TimelineEntry | None:
    if isinstance(event, CustomerDesk.ConversationOpened):
        return _make(
            event,
            position,
            type="conversation.opened",
            channel=event.channel,
            party=event.party,
            ref=str(event.conversation_id),
            summary=f"Conversation opened ({event.channel}, {event.party})",
            payload={"conversation_id": str(event.conversation_id), "kind": event.kind},
        )
    if isinstance(event, CustomerDesk.ConversationStatusChanged):
        who = f" to {event.assignee}" if event.to_status == "assigned" and event.assignee else ""
        why = f": {event.reason}" if event.reason else ""
        return _make(
            event,
            position,
            type="conversation.status_changed",
            channel=event.channel,
            party=event.by,
            ref=str(event.conversation_id),
            summary=f"Conversation {event.from_status} → {event.to_status}{who} by {event.by}{why}",
            payload={
                "conversation_id": str(event.conversation_id),
                "from": event.from_status,
                "to": event.to_status,
                "assignee": event.assignee,
                "by": event.by,
                "reason": event.reason,
            },
        )
    if isinstance(event, CustomerDesk.NoteAdded):
        text = " ".join(event.text.split())
        return _make(
            event,
            position,
            type="note.added",
            channel=DESK_CHANNEL,
            party=event.by,
            ref=str(event.note_id),
            summary=f"Note by {event.by}: {text}",
            payload={
                "note_id": str(event.note_id),
                "text": event.text,
                "conversation_id": _optional(event.conversation_id),
                "by": event.by,
            },
        )
    if isinstance(event, CustomerDesk.FileAttached):
        return _make(
            event,
            position,
            type="file.attached",
            channel=DESK_CHANNEL,
            party=event.by,
            ref=event.sha256,
            summary=f"File {event.filename} ({event.content_type}, {event.size} bytes) "
            f"attached by {event.by}",
            payload={
                "sha256": event.sha256,
                "filename": event.filename,
                "content_type": event.content_type,
                "size": event.size,
                "conversation_id": _optional(event.conversation_id),
                "by": event.by,
                # Per customer: the download is named as the file was attached to them.
                "download_path": f"/v1/customers/{event.customer_id}/files/{event.sha256}",
            },
        )
    return None


def _make(
    event: Any,
    position: int,
    *,
    type: str,
    channel: str,
    party: str,
    ref: str,
    summary: str,
    payload: dict[str, Any],
) -> TimelineEntry:
    return TimelineEntry(
        customer_id=event.customer_id,
        position=position,
        # A conversation opens with the contact that opened it (not when the desk got to
        # it): on the timeline it stands right beside that contact.
        occurred_at=getattr(event, "opened_at", None) or event.timestamp,
        type=type,
        channel=channel,
        direction=DIRECTION,
        party=party,
        provider_ref=ref,
        summary=summary[:_SUMMARY_CHARS],
        payload=payload,
    )


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)
