"""``CustomerHistory``: the event-sourced application that records every contact.

It is synchronous, like the library; async callers go through one thread boundary
(``asyncio.to_thread``) in the recorder service.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    LRUCache,
    ProcessingEvent,
)
from eventsourcing.persistence import ProcessRecorder, Tracking
from eventsourcing.utils import get_topic

from contracts import ConsentChanged, InteractionEvent
from contracts.errors import NotFound
from services.domain import Customer, customer_id_for
from services.history.sql import PostgresHistoryRecorder, SQLiteHistoryRecorder

log = logging.getLogger(__name__)

_RECORDERS = {
    "eventsourcing.sqlite": SQLiteHistoryRecorder,
    "eventsourcing.postgres": PostgresHistoryRecorder,
}

SNAPSHOT_INTERVAL = 100


def dedupe_key(event: InteractionEvent) -> str:
    """One contact delivered twice has the same key; ringing and answered of one call do not."""
    return f"{event.type}|{event.channel}|{event.provider_ref}"


_ENVELOPE = set(Customer.InteractionRecorded.ENVELOPE)


def interaction_fields(event: InteractionEvent) -> dict[str, Any]:
    """The contract event as ``Customer.record_interaction`` arguments (the edge of the domain).

    The payload leaves out the envelope the event carries as attributes
    (``Customer.InteractionRecorded.as_reported`` joins them again) and the fields that are None.
    """
    return {
        "interaction_type": event.type,
        "channel": str(event.channel),
        "direction": str(event.direction),
        "party": event.party,
        "provider_ref": event.provider_ref,
        "occurred_at": event.occurred_at,
        "payload": event.model_dump(mode="json", exclude=_ENVELOPE, exclude_none=True),
    }


def tracking_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class CustomerNotFound(NotFound):
    """No customer has this id (the library's AggregateNotFoundError, translated here)."""

    def __init__(self, customer_id: UUID) -> None:
        super().__init__(f"no customer {customer_id}")
        self.customer_id = customer_id


@dataclass
class BatchOutcome:
    recorded: int = 0
    duplicates: int = 0
    customers_created: int = 0
    notification_ids: list[int] = field(default_factory=list)


class CustomerHistory(Application[UUID]):
    name = "switchboard"
    env = {
        # Partition ownership makes each consumer the only writer of its customers, so a
        # cached aggregate is current; a stale one fails the save with IntegrityError,
        # and the caller clears the cache and retries from the committed offsets.
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        "IS_SNAPSHOTTING_ENABLED": "y",
    }

    def construct_recorder(self) -> ProcessRecorder:
        # Our recorders commit Kafka offsets and provider refs with the events.
        recorder_class = _RECORDERS.get(type(self.factory).__module__)
        if recorder_class is not None:
            self.factory.env["PROCESS_RECORDER_TOPIC"] = get_topic(recorder_class)
        return self.factory.process_recorder()

    # -- reading ------------------------------------------------------------------------

    def get_customer(self, customer_id: UUID) -> Customer:
        try:
            return self.repository.get(customer_id)
        except AggregateNotFoundError:
            raise CustomerNotFound(customer_id) from None

    def tracked_offset(self, topic: str, partition: int) -> int | None:
        """The next Kafka offset to consume for this partition, as committed with the events."""
        return self.recorder.max_tracking_id(tracking_name(topic, partition))  # type: ignore[attr-defined]

    def known_refs(self, keys: Sequence[str]) -> set[str]:
        known = getattr(self.recorder, "known_provider_refs", None)
        if known is None:  # the in-memory store (unit tests): scan the events
            return self._known_refs_by_scan(set(keys))
        return known(keys)

    def _known_refs_by_scan(self, keys: set[str]) -> set[str]:
        found: set[str] = set()
        for n in self.recorder.select_notifications(start=1, limit=10**9):
            e = self.mapper.to_domain_event(n)
            if isinstance(e, Customer.InteractionRecorded):
                key = f"{e.interaction_type}|{e.channel}|{e.provider_ref}"
                if key in keys:
                    found.add(key)
        return found

    def as_of(self, customer_id: UUID, moment: datetime) -> Customer:
        """The customer as recorded at ``moment`` (aware): the auditor's view."""
        version = None
        for e in self.events.get(customer_id):
            if e.timestamp > moment:
                break
            version = e.originator_version
        if version is None:
            raise CustomerNotFound(customer_id)
        return self.repository.get(customer_id, version=version)

    # -- writing ------------------------------------------------------------------------

    def record_interactions(
        self,
        interactions: Iterable[InteractionEvent],
        *,
        trackings: Sequence[Tracking] = (),
    ) -> BatchOutcome:
        """Append each interaction to its customer's history, all in one transaction.

        A provider delivery already recorded (or repeated within the batch) is skipped.
        The Kafka positions in ``trackings`` commit atomically with the events, so a
        batch is recorded exactly once whatever crashes around it.
        """
        outcome = BatchOutcome()
        batch = list(interactions)
        known = self.known_refs([dedupe_key(e) for e in batch]) if batch else set()
        customers: dict[UUID, Customer] = {}
        refs: list[tuple[str, Any]] = []
        # Each party's customer id once per record (the identity decision, made here only).
        customer_ids = [customer_id_for(e.party) for e in batch]
        existing = self._existing_among(set(customer_ids))
        for interaction, customer_id in zip(batch, customer_ids, strict=True):
            key = dedupe_key(interaction)
            if key in known:
                outcome.duplicates += 1
                continue
            known.add(key)
            customer = customers.get(customer_id)
            if customer is None:
                customer = self._load_or_create(interaction, customer_id, existing, outcome)
                customers[customer_id] = customer
            refs.append((key, self._id_param(customer.id)))
            customer.record_interaction(**interaction_fields(interaction))
            if isinstance(interaction, ConsentChanged):
                customer.change_consent(
                    channel=str(interaction.channel),
                    purpose=interaction.purpose,
                    granted=interaction.granted,
                    source=interaction.source,
                )
            outcome.recorded += 1
        try:
            recordings = self._save_customers(
                customers.values(), trackings=trackings, provider_refs=refs
            )
        except Exception:
            # Our in-memory copies now hold events that were never stored.
            self.forget_cached_customers()
            raise
        outcome.notification_ids = [r.notification.id for r in recordings]
        return outcome

    def _save_customers(self, customers: Iterable[Customer], **kwargs: Any) -> list:
        """``Application.save`` for aggregates we know are Customers.

        ``save`` checks each object against the library's runtime-checkable protocols,
        which costs more than the rest of collecting a big batch; the steps are the same, and
        tests/unit/test_library_pins.py fails if the library changes them.
        """
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for customer in customers:
            processing_event.events.extend(customer.collect_events())
            processing_event.aggregates[customer.id] = customer
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def forget_cached_customers(self) -> None:
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            self.repository.cache = LRUCache(maxsize=cache.maxsize)

    def _load_or_create(
        self,
        interaction: InteractionEvent,
        customer_id: UUID,
        existing: set[UUID],
        outcome: BatchOutcome,
    ) -> Customer:
        if customer_id in existing:
            return self.repository.get(customer_id)
        outcome.customers_created += 1
        # Record first, clean up later: an unknown address is a new customer at once.
        return Customer(address=interaction.party, channel=str(interaction.channel))

    def _existing_among(self, ids: set[UUID]) -> set[UUID]:
        """Customers of this batch already stored: cached ones, then one query for the rest."""
        cache = self.repository.cache
        cached = {i for i in ids if cache is not None and i in cache.cache}  # type: ignore[attr-defined]
        unknown = list(ids - cached)
        lookup = getattr(self.recorder, "existing_originators", None)
        if lookup is None:  # the in-memory store (unit tests)
            return cached | {i for i in unknown if self.recorder.select_events(i, limit=1)}
        return cached | (lookup(unknown) if unknown else set())

    def _id_param(self, customer_id: UUID) -> Any:
        return customer_id.hex if isinstance(self.recorder, SQLiteHistoryRecorder) else customer_id

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # The library re-reads the aggregate from the store for each snapshot; we hold the
        # current state already, so snapshot it directly when it crosses an interval.
        if self.snapshots is None:
            return
        new_events = Counter(e.originator_id for e in processing_event.events)
        snapshots = []
        for aggregate in processing_event.aggregates.values():
            new = new_events[aggregate.id]
            if (
                aggregate.version // SNAPSHOT_INTERVAL
                > (aggregate.version - new) // SNAPSHOT_INTERVAL
            ):
                snapshots.append(Customer.Snapshot.take(aggregate))
        if snapshots:
            self.snapshots.put(snapshots)
