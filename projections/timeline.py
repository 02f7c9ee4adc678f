"""The timeline: per customer, every interaction in order across channels.

Also keeps the small directory the lookup API needs (address -> customer, with a
contact summary).  Rows and the tracking position are written in one transaction,
so each stored event is applied exactly once, and the view can be dropped and
rebuilt from the event store at any time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder

from contracts import DeliveryStatus, status_advances
from services.domain import Customer

# The stored topics this view reads; the store filters on them.
TOPICS = (Customer.FirstContacted.TOPIC, Customer.InteractionRecorded.TOPIC)


@dataclass(frozen=True)
class TimelineEntry:
    customer_id: UUID
    position: int
    occurred_at: datetime
    type: str
    channel: str
    direction: str
    party: str
    provider_ref: str
    summary: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CustomerSummary:
    customer_id: UUID
    first_address: str
    first_seen: datetime
    contact_count: int
    last_contact_at: datetime | None
    last_channel: str | None


@dataclass(frozen=True)
class DeliveryReport:
    """An outbound message's status as reported (sent when we sent it, then the provider's)."""

    message_ref: str
    customer_id: UUID
    channel: str
    status: DeliveryStatus
    occurred_at: datetime


@dataclass(frozen=True)
class SkippedEvent:
    """A stored event the view could not apply: recorded, so it is never skipped silently."""

    notification_id: int
    reason: str
    skipped_at: datetime


@dataclass
class TimelineChanges:
    """What one batch of stored events does to the view."""

    entries: list[TimelineEntry] = field(default_factory=list)
    new_customers: list[CustomerSummary] = field(default_factory=list)
    addresses: list[tuple[str, UUID]] = field(default_factory=list)
    deliveries: list[DeliveryReport] = field(default_factory=list)


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


class TimelineView(TrackingRecorder):
    """The view's interface; SQLite and PostgreSQL implement it."""

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
        raise NotImplementedError

    def summary(self, customer_id: UUID) -> CustomerSummary | None:
        raise NotImplementedError

    def delivery_status(self, message_ref: str) -> DeliveryReport | None:
        """The furthest status an outbound message has reached."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything, tracking included: the next follow rebuilds from zero."""
        raise NotImplementedError


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
    if kind == "consent.changed.v1":
        verb = "Opted in to" if payload.get("granted") else "Opted out of"
        return f"{verb} {payload.get('purpose')} on {channel} via {payload.get('source')}"
    return kind


def changes_for(events: Sequence[tuple[int, Any]]) -> TimelineChanges:
    """Map (notification id, domain event) pairs to view changes. Pure."""
    changes = TimelineChanges()
    for position, event in events:
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
                    direction=event.direction,
                    party=event.party,
                    provider_ref=event.provider_ref,
                    summary=summarize(payload),
                    payload=payload,
                )
            )
            report = _delivery_report(event)
            if report is not None:
                changes.deliveries.append(report)
    return changes


def _delivery_report(event: Customer.InteractionRecorded) -> DeliveryReport | None:
    if event.interaction_type == "message.sent.v1":
        ref, status = event.provider_ref, DeliveryStatus.sent
    elif event.interaction_type == "delivery.status.v1":
        ref, status = event.payload["message_ref"], DeliveryStatus(event.payload["status"])
    else:
        return None
    return DeliveryReport(
        message_ref=ref,
        customer_id=event.originator_id,
        channel=event.channel,
        status=status,
        occurred_at=event.occurred_at,
    )


def contact_rollup(entries: Iterable[TimelineEntry]) -> dict[UUID, tuple[int, datetime, str]]:
    """Per customer: how many new contacts, and the latest one's time and channel."""
    rollup: dict[UUID, tuple[int, datetime, str]] = {}
    for e in entries:
        count, last, channel = rollup.get(e.customer_id, (0, e.occurred_at, e.channel))
        if e.occurred_at >= last:
            last, channel = e.occurred_at, e.channel
        rollup[e.customer_id] = (count + 1, last, channel)
    return rollup


def payload_json(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000" in text:  # json.dumps always escapes NUL; PostgreSQL's jsonb refuses it
        text = json.dumps(storable(payload), separators=(",", ":"), ensure_ascii=False)
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
