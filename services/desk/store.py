"""Loading and saving desks in the customer history's store (the same notification log).

Desks are saved through ``CustomerHistory.save``: the history's process recorder commits the
``trackings`` given with them in the same transaction (``services/history/sql.py``), which
is what makes the desk follower exactly-once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking

from services.domain.desk import CustomerDesk, desk_id_for
from services.history.customers import CustomerHistory
from services.history.sql import SkippedEvent


def load_desk(history: CustomerHistory, customer_id: UUID) -> CustomerDesk | None:
    try:
        desk = history.repository.get(desk_id_for(customer_id))
    except AggregateNotFoundError:
        return None
    assert isinstance(desk, CustomerDesk)
    return desk


def load_or_start_desk(history: CustomerHistory, customer_id: UUID) -> CustomerDesk:
    return load_desk(history, customer_id) or CustomerDesk(customer_id=customer_id)


def aggregate_of(history: CustomerHistory, aggregate_id: UUID, kind: type[Any]) -> Any | None:
    """The aggregate with this id if it is a ``kind`` (ids from clients may name anything)."""
    try:
        found = history.repository.get(aggregate_id)
    except AggregateNotFoundError:
        return None
    return found if isinstance(found, kind) else None


def save_desks(
    history: CustomerHistory,
    aggregates: Sequence[Aggregate],
    *,
    trackings: Sequence[Tracking] = (),
    skipped: Sequence[SkippedEvent] = (),
) -> list[int]:
    """Save in one transaction (with ``trackings``, and the records of events ``skipped``);
    the new notification ids."""
    # Snapshots of busy desks are taken by the history's save, as for customers.
    recordings = history.save(*aggregates, trackings=list(trackings), skipped=list(skipped))
    return [r.notification.id for r in recordings]
