"""Replay as of any moment: a customer's state, card and timeline exactly as the hub showed
them then, merges and unmerges in force at that moment included.

The event store is the record; the views are projections of it.  So the past view is
rebuilt, not remembered: every stored event recorded up to the moment (its timestamp, the
time the hub recorded it) is projected, in the store's order, by the same code the live
timeline uses (``projections.timeline.changes_for``) into a throwaway SQLite view, and the
customer is read from there.  The customer's own state (addresses, consent, profile) comes
from its stream at that moment (``CustomerHistory.as_of``).

Cost: one pass over the notification log up to the moment (the rebuild's speed; README,
Benchmarks); the throwaway view lives in a temp dir and is removed after.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.utils import Environment

from projections.directory import Card
from projections.timeline import TOPICS, TimelineEntry, changes_for
from projections.timeline_sqlite import SQLiteTimelineView
from services.audit.export import jsonable
from services.domain import Customer
from services.history.customers import CustomerHistory, CustomerNotFound

BATCH = 2000


class NotYetACustomer(CustomerNotFound):
    """The customer did not exist at the moment asked about (or never did)."""

    def __init__(self, customer_id: UUID, moment: datetime) -> None:
        super().__init__(customer_id)
        self.args = (f"customer {customer_id} did not exist at {moment.isoformat()}",)
        self.moment = moment


class UnknownVersion(ValueError):
    """A version the customer's stream never reached."""


@dataclass
class Replayed:
    customer_id: UUID
    as_of: datetime
    version: int  # the customer's stream version in force then
    state: dict[str, Any]  # the aggregate's state then (addresses, consent, profile)
    card: Card | None  # the card an agent saw then (None: merged away, see merged_into)
    timeline: list[TimelineEntry]  # newest first, as the timeline showed it
    events_replayed: int  # stored events projected to build it


def moment_of_version(history: CustomerHistory, customer_id: UUID, version: int) -> datetime:
    """When the customer's stream reached ``version`` (recorded time of that event)."""
    last = 0
    for event in history.events.get(customer_id):
        if event.originator_version == version:
            return event.timestamp
        last = event.originator_version
    if last == 0:
        raise CustomerNotFound(customer_id)
    raise UnknownVersion(f"customer {customer_id} has versions 1 to {last}, not {version}")


def replay(
    history: CustomerHistory,
    customer_id: UUID,
    moment: datetime,
    *,
    limit: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> Replayed:
    """The customer as of ``moment`` (aware).  ``progress(position, last)`` while replaying."""
    if moment.tzinfo is None:
        raise ValueError("the moment needs a time zone (e.g. 2026-12-01T10:00:00+00:00)")
    try:
        customer = history.as_of(customer_id, moment)
    except CustomerNotFound:
        raise NotYetACustomer(customer_id, moment) from None
    folder = Path(tempfile.mkdtemp(prefix="sb-replay-"))
    try:
        view = _throwaway_view(folder)
        replayed = _project_until(history, view, moment, progress)
        card = view.card(customer_id)
        entries = view.timeline(customer_id, limit=limit)
        view.datastore.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Replayed(
        customer_id=customer_id,
        as_of=moment,
        version=customer.version,
        state=_state_of(customer),
        card=card,
        timeline=entries,
        events_replayed=replayed,
    )


def _throwaway_view(folder: Path) -> SQLiteTimelineView:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(folder / "views.db"),
        "SQLITE_LOCK_TIMEOUT": "10",
    }
    factory = InfrastructureFactory.construct(Environment("timeline", env))
    return factory.tracking_recorder(SQLiteTimelineView)  # type: ignore[return-value]


def _project_until(
    history: CustomerHistory,
    view: SQLiteTimelineView,
    moment: datetime,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Project every stored event recorded by ``moment`` into ``view``; how many."""
    last = history.recorder.max_notification_id() or 0
    to_domain = history.mapper.to_domain_event
    position, replayed = 0, 0
    while True:
        notifications = history.recorder.select_notifications(
            start=position, limit=BATCH, topics=TOPICS, inclusive_of_start=False
        )
        if not notifications:
            break
        events = [(n.id, to_domain(n)) for n in notifications]
        due = [(i, e) for i, e in events if e.timestamp <= moment]
        position = notifications[-1].id
        if due:
            view.apply(changes_for(due), Tracking("replay", position))
            replayed += len(due)
        if progress is not None:
            progress(position, last)
    return replayed


def _state_of(customer: Customer) -> dict[str, Any]:
    state: dict[str, Any] = {
        "version": customer.version,
        "created_on": customer.created_on.isoformat(),
        "modified_on": customer.modified_on.isoformat(),
    }
    for name in ("addresses", "consent", "profile", "merged_into", "absorbed"):
        if hasattr(customer, name):
            state[name] = jsonable(getattr(customer, name))
    return state
