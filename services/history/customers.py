"""``CustomerHistory``: the event-sourced application that records every contact.

It is synchronous, like the library; async callers go through one thread boundary
(``asyncio.to_thread``) in the recorder service.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    LRUCache,
    ProcessingEvent,
)
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking
from eventsourcing.utils import get_topic

from contracts import ConsentChanged, InteractionEvent, identity_of
from contracts.errors import Conflict, InputError, NotFound, Unavailable
from services.domain import Customer, customer_id_for
from services.domain.desk import CustomerDesk
from services.domain.errors import DecisionRefused, InvalidDecision
from services.history.keys import Keyring, PostgresKeyring, SQLiteKeyring, keyring_path
from services.history.sealing import CustomerErased, SealingMapper
from services.history.sql import PostgresHistoryRecorder, SQLiteHistoryRecorder
from services.history.transcoder import OrjsonTranscoder

log = logging.getLogger(__name__)

_RECORDERS = {
    "eventsourcing.sqlite": SQLiteHistoryRecorder,
    "eventsourcing.postgres": PostgresHistoryRecorder,
}

SNAPSHOT_INTERVAL = 100
# Identity keys a recorder remembers (about 100 bytes each).
OWNER_CACHE_SIZE = 200_000


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


@dataclass(frozen=True)
class Erasure:
    asked: UUID  # the customer named
    group: list[UUID]  # every customer erased: the survivor first, then those merged into it
    files: list[str]  # sha256 of the blobs their events referred to
    notification_ids: list[int]  # the Erased events (the views purge when they reach them)


class AlreadyErased(Conflict):
    def __init__(self, customer_id: UUID) -> None:
        super().__init__(f"customer {customer_id} was erased already")
        self.customer_id = customer_id


def _collect_hashes(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "sha256" and isinstance(v, str) and len(v) == 64:
                found.add(v)
            else:
                _collect_hashes(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_hashes(v, found)


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
    # What was recorded, by (channel, event type): the recorder's metrics.
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)


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

    # Called after each commit of this instance (the hub wakes its followers with it).
    on_saved: Callable[[], None] | None = None

    def _notify(self, recordings: list) -> None:
        super()._notify(recordings)
        if recordings and self.on_saved is not None:
            self.on_saved()

    def __init__(self, env: Any = None, *, seal: bool = True) -> None:
        # Not a setting: the library merges the process environment into ``env``, and
        # personal data must not go unsealed because of a stray variable.  Only the
        # benchmark that measures what sealing costs passes ``seal=False``.
        self._seal = seal
        super().__init__(env)
        if isinstance(self.mapper, SealingMapper):
            self.mapper.keyring = self._open_keyring()
            self.mapper.recorder = self.recorder

    @property
    def sealing(self) -> bool:
        """Whether personal data is sealed with per-customer keys (the default)."""
        return isinstance(self.mapper, SealingMapper)

    def construct_transcoder(self) -> Any:
        transcoder = OrjsonTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_mapper(self) -> Any:
        if not self._seal:
            return super().construct_mapper()
        return SealingMapper(self.construct_transcoder(), keyring=None)  # type: ignore[arg-type]

    def _open_keyring(self) -> Keyring:
        recorder = self.recorder
        if isinstance(recorder, PostgresHistoryRecorder):
            prefix = recorder.events_table_name.removesuffix("_events")
            return PostgresKeyring(recorder.datastore, prefix, owner=self)
        dbname = self.env.get("SQLITE_DBNAME") or ""
        if isinstance(recorder, SQLiteHistoryRecorder) and ":memory:" not in dbname:
            return SQLiteKeyring(keyring_path(Path(dbname)))
        return SQLiteKeyring(":memory:")  # the in-memory store (unit tests)

    @property
    def keyring(self) -> Keyring:
        if not isinstance(self.mapper, SealingMapper):
            raise RuntimeError("this history does not seal personal data")
        return self.mapper.keyring

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list:
        if isinstance(self.mapper, SealingMapper):
            # One query for the keys of every customer in the save (made for new ones).
            self.mapper.prepare_events(processing_event.events)
        return super()._record(processing_event)

    def construct_recorder(self) -> ProcessRecorder:
        # Our recorders commit Kafka offsets and provider refs with the events.
        recorder_class = _RECORDERS.get(type(self.factory).__module__)
        if recorder_class is not None:
            self.factory.env["PROCESS_RECORDER_TOPIC"] = get_topic(recorder_class)
        return self.factory.process_recorder()

    # -- reading ------------------------------------------------------------------------

    def get_customer(self, customer_id: UUID) -> Customer:
        """The customer; ``CustomerNotFound``, or ``CustomerErased`` (its events keep only
        their skeletons)."""
        try:
            customer = self.repository.get(customer_id)
        except AggregateNotFoundError:
            raise CustomerNotFound(customer_id) from None
        if getattr(customer, "erased", False):
            raise CustomerErased(customer_id)
        return customer

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
        batch = list(interactions)
        try:
            return self._record_batch(batch, trackings)
        except CustomerErased:
            # A person this instance remembered was erased elsewhere: their contacts now
            # start a new customer; look everyone up afresh.
            self.forget_cached_customers()
            return self._record_batch(batch, trackings)

    def _record_batch(
        self, batch: list[InteractionEvent], trackings: Sequence[Tracking]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        known = self.known_refs([dedupe_key(e) for e in batch]) if batch else set()
        customers: dict[UUID, Customer] = {}
        refs: list[tuple[str, Any]] = []
        new_identities: list[tuple[str, UUID]] = []
        # The identity decision, made here only: each party's person, once per record.
        keys = [identity_of(e.party) for e in batch]
        owners = self._owners(set(keys))
        generations = self._generations({k for k in keys if k not in owners})
        for interaction, key in zip(batch, keys, strict=True):
            dedupe = dedupe_key(interaction)
            if dedupe in known:
                outcome.duplicates += 1
                continue
            known.add(dedupe)
            customer_id = owners.get(key)
            if customer_id is None:
                # Record first, clean up later: an unknown person is a new customer at once.
                customer = Customer.first_contact(
                    key,
                    address=interaction.party,
                    channel=str(interaction.channel),
                    generation=generations.get(key, 0),
                )
                new_identities.append((key, customer.id))
                outcome.customers_created += 1
            else:
                customer = customers.get(customer_id) or self._current(customer_id)
            owners[key] = customer.id
            customers[customer.id] = customer
            refs.append((dedupe, self._id_param(customer.id)))
            customer.record_interaction(**interaction_fields(interaction))
            if isinstance(interaction, ConsentChanged):
                customer.change_consent(
                    channel=str(interaction.channel),
                    purpose=interaction.purpose,
                    granted=interaction.granted,
                    source=interaction.source,
                )
            outcome.recorded += 1
            outcome.kinds[(str(interaction.channel), interaction.type)] += 1
        try:
            recordings = self._save_customers(
                customers.values(),
                trackings=trackings,
                provider_refs=refs,
                new_identities=new_identities,
            )
        except Exception:
            # Our in-memory copies now hold events that were never stored (and a merge
            # elsewhere may have moved an identity we remembered).
            self.forget_cached_customers()
            raise
        self._remember_owners(owners)
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
        self._owner_cache.clear()

    # -- identity ------------------------------------------------------------------------

    @property
    def _owner_cache(self) -> dict[str, UUID]:
        """Identity keys this instance resolved.  Safe to keep: whatever moves a key (a merge,
        an unmerge) writes an event on the customer it led to, so recording on that stale
        customer fails its save, and the retry starts with this cache cleared."""
        cache = self.__dict__.get("_owners_seen")
        if cache is None:
            cache = self.__dict__["_owners_seen"] = {}
        return cache

    def _remember_owners(self, owners: dict[str, UUID]) -> None:
        cache = self._owner_cache
        if len(cache) + len(owners) > OWNER_CACHE_SIZE:
            cache.clear()
        cache.update(owners)

    def _owners(self, keys: set[str]) -> dict[str, UUID]:
        """The customer each identity key leads to now; unknown keys are left out."""
        cache = self._owner_cache
        found = {k: cache[k] for k in keys if k in cache}
        unknown = [k for k in keys if k not in found]
        if unknown:
            found.update(self._identity_table().identities(unknown))
        return found

    def _generations(self, new_keys: set[str]) -> dict[str, int]:
        """For people seen as new whose first customer was erased: which customer they are
        now (one query for the batch; a person erased twice costs one more)."""
        if not new_keys or not isinstance(self.mapper, SealingMapper):
            return {}
        generations: dict[str, int] = {}
        pending = {k: 0 for k in new_keys}
        while pending:
            ids = {customer_id_for(k, g): k for k, g in pending.items()}
            erased = self.keyring.erasures(ids)
            pending = {ids[i]: pending[ids[i]] + 1 for i in erased}
            generations.update(pending)
        return generations

    def _identity_table(self) -> Any:
        recorder = self.recorder
        if not hasattr(recorder, "identities"):
            raise RuntimeError("the customer history needs the SQLite or PostgreSQL store")
        return recorder

    def _current(self, customer_id: UUID) -> Customer:
        """The customer an identity leads to, following merges (the table is never behind
        the events; a remembered owner can be, and then the save fails and is retried)."""
        customer = self.repository.get(customer_id)
        for _ in range(10):
            if customer.merged_into is None:
                return customer
            customer = self.repository.get(customer.merged_into)
        raise AssertionError(f"customer {customer_id}: merges form a cycle")

    def customer_for_address(self, address: str) -> UUID | None:
        """Which customer a contact from ``address`` (normalized) is recorded on now."""
        key = identity_of(address)
        return self._identity_table().identities([key]).get(key)

    def migrate_identities(self) -> int:
        """A store written before identities were kept: fill the table once from the
        customers' first addresses, in the order they were first seen (when two customers
        share a person's key, the first keeps it and the other shows as a duplicate).
        Returns how many customers it filled in."""
        recorder = self.recorder
        if not hasattr(recorder, "has_identities") or recorder.has_identities():
            return 0
        rows: list[tuple[str, UUID]] = []
        position = 0
        while page := recorder.select_notifications(
            start=position,
            limit=10_000,
            topics=[Customer.FirstContacted.TOPIC],
            inclusive_of_start=False,
        ):
            for n in page:
                first = self.mapper.to_domain_event(n)
                rows.append((identity_of(first.address), first.originator_id))
            position = page[-1].id
        if rows:
            log.info("identities: filled in from %s customers stored before them", len(rows))
            recorder.backfill_identities(rows)
        return len(rows)

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
            # Aggregates with a long life of many events; every save in this store comes here
            # (Application.save calls it too), so this is the one place snapshots are taken.
            if not isinstance(aggregate, Customer | CustomerDesk):
                continue
            new = new_events[aggregate.id]
            if (
                aggregate.version // SNAPSHOT_INTERVAL
                > (aggregate.version - new) // SNAPSHOT_INTERVAL
            ):
                snapshots.append(type(aggregate).Snapshot.take(aggregate))
        if snapshots:
            self.snapshots.put(snapshots)

    # -- what agents decide (the API and the CLI) ---------------------------------------------

    def link_address(
        self, customer_id: UUID, address: str, *, by: str, reason: str, shared: bool = False
    ) -> Customer:
        """Link ``address`` (normalized) to a customer: later contacts from it are recorded
        there.  An address that already leads to another customer is refused (merge them,
        or link it as ``shared``: a number several customers use)."""
        key = identity_of(address)

        def link() -> tuple[list[Customer], dict[str, Any]]:
            customer = self.get_customer(customer_id)
            owner = self.customer_for_address(address)
            if owner == customer.id:
                raise Conflict(f"{address} already leads to customer {customer.id}")
            if owner is not None and not shared:
                raise Conflict(
                    f"{address} leads to customer {owner}: merge the two customers, or link "
                    "it as shared (a number several customers use)"
                )
            if shared and address in customer.shared_addresses:
                raise Conflict(f"{address} is already shared with customer {customer.id}")
            customer.link_address(address, shared=shared, by=by, reason=reason)
            claims = [(key, customer.id)] if owner is None else []
            return [customer], {"new_identities": claims}

        (customer,) = self._decide(link)
        return customer

    def merge(
        self,
        survivor_id: UUID,
        absorbed_id: UUID,
        *,
        by: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
    ) -> tuple[Customer, Customer]:
        """``absorbed_id`` is the same person as ``survivor_id``: one event on each, and every
        address of the absorbed customer leads to the survivor, in one transaction."""
        if survivor_id == absorbed_id:
            raise InputError("a customer cannot be merged into itself")

        def merge() -> tuple[list[Customer], dict[str, Any]]:
            survivor = self.get_customer(survivor_id)
            absorbed = self.get_customer(absorbed_id)
            absorbed.merge_into(survivor, by=by, reason=reason, evidence=evidence or {})
            moved = [(identity_of(a), survivor.id) for a in absorbed.addresses]
            return [survivor, absorbed], {"moved_identities": moved}

        survivor, absorbed = self._decide(merge)
        return survivor, absorbed

    def unmerge(
        self, survivor_id: UUID, absorbed_id: UUID, *, by: str, reason: str
    ) -> tuple[Customer, Customer, list[str]]:
        """Undo a merge: the absorbed customer's addresses lead to it again, and the contacts
        recorded on the survivor since the merge from those addresses go back with them
        (their ``type|channel|provider_ref`` keys are the third value returned)."""
        moved: list[str] = []

        def unmerge() -> tuple[list[Customer], dict[str, Any]]:
            survivor = self.get_customer(survivor_id)
            absorbed = self.get_customer(absorbed_id)
            merged = survivor.absorbed.get(str(absorbed_id))
            if merged is None or absorbed.merged_into != survivor.id:
                raise Conflict(f"customer {absorbed_id} was never merged into {survivor_id}")
            keys = {identity_of(a) for a in merged["addresses"]}
            moved[:] = [
                f"{e.interaction_type}|{e.channel}|{e.provider_ref}"
                for e in self.events.get(survivor.id, gt=merged["version"])
                if isinstance(e, Customer.InteractionRecorded) and identity_of(e.party) in keys
            ]
            survivor.unmerge(absorbed, moved=moved, by=by, reason=reason)
            return [survivor, absorbed], {"moved_identities": [(k, absorbed.id) for k in keys]}

        survivor, absorbed = self._decide(unmerge)
        return survivor, absorbed, moved

    def edit_profile(
        self, customer_id: UUID, changes: dict[str, Any], *, by: str, expected_version: int
    ) -> Customer:
        def edit() -> tuple[list[Customer], dict[str, Any]]:
            customer = self.get_customer(customer_id)
            customer.change_profile(changes, by=by, expected_version=expected_version)
            return [customer], {}

        (customer,) = self._decide(edit)
        return customer

    def dismiss_duplicate(
        self, customer_id: UUID, other_id: UUID, *, by: str, reason: str
    ) -> Customer:
        def dismiss() -> tuple[list[Customer], dict[str, Any]]:
            customer = self.get_customer(customer_id)
            self.get_customer(other_id)
            customer.dismiss_duplicate(other_id, reason=reason, by=by)
            return [customer], {}

        (customer,) = self._decide(dismiss)
        return customer

    # -- erasure (GDPR Art. 17) ------------------------------------------------------------

    def erase(self, customer_id: UUID, *, by: str, basis: str, reason: str) -> Erasure:
        """Erase a person: an ``Erased`` event on each customer of their merge group (the
        survivor and every customer merged into it), their addresses removed from the
        identities table in the same transaction, then their keys deleted.  What their events
        said can no longer be read; the events, their order and their hash chain remain.
        Files their events refer to are named in the result (the caller removes the blobs).
        An erasure interrupted after the events is completed by erasing again."""
        if not isinstance(self.mapper, SealingMapper):
            raise InputError("this store does not seal personal data: it cannot erase")
        keyring = self.keyring
        survivor = self._survivor_for_erasure(customer_id)
        group = self._merge_group(survivor)
        files = self._files_of(group)
        pending = [c for c in group if not getattr(c, "erased", False)]
        for c in pending:
            c.erase(by=by, basis=basis, reason=reason, group=[m.id for m in group])
        ids = [c.id for c in group]
        recordings = self._save_customers(pending, erased_identities=ids) if pending else []
        keyring.erase(ids, by=by, basis=basis)
        self.mapper.forget(ids)
        self.forget_cached_customers()
        return Erasure(
            asked=customer_id,
            group=ids,
            files=sorted(files),
            notification_ids=[r.notification.id for r in recordings],
        )

    def reapply_erasures(self) -> int:
        """Delete the keys of every customer the history says was erased (after keys were
        restored from a key backup older than an erasure); how many erasures it found."""
        found: list[Any] = []
        position = 0
        while page := self.recorder.select_notifications(
            start=position, limit=10_000, topics=[Customer.Erased.TOPIC], inclusive_of_start=False
        ):
            found += [self.mapper.to_domain_event(n) for n in page]
            position = page[-1].id
        for e in found:
            self.keyring.erase([e.originator_id], by=e.by, basis=e.basis)
        if found and isinstance(self.mapper, SealingMapper):
            self.mapper.forget(e.originator_id for e in found)
        return len(found)

    def _survivor_for_erasure(self, customer_id: UUID) -> Customer:
        if self.keyring.erasures([customer_id]):
            raise AlreadyErased(customer_id)
        try:
            customer = self.repository.get(customer_id)
        except AggregateNotFoundError:
            raise CustomerNotFound(customer_id) from None
        if not isinstance(customer, Customer):
            raise CustomerNotFound(customer_id)
        for _ in range(10):
            if customer.merged_into is None:
                return customer
            customer = self.repository.get(customer.merged_into)
        raise AssertionError(f"customer {customer_id}: merges form a cycle")

    def _merge_group(self, survivor: Customer) -> list[Customer]:
        group = [survivor]
        seen = {survivor.id}
        for member in group:
            for absorbed in member.absorbed:
                absorbed_id = UUID(absorbed)
                if absorbed_id not in seen:
                    seen.add(absorbed_id)
                    group.append(self.repository.get(absorbed_id))
        return group

    def _files_of(self, group: list[Customer]) -> set[str]:
        """The blobs (sha256) the group's contacts and desks refer to, read before the keys
        are gone: mail attachments and files agents attached."""
        from services.domain.desk import desk_id_for

        found: set[str] = set()
        for member in group:
            for stream in (member.id, desk_id_for(member.id)):
                for e in self.events.get(stream):
                    _collect_hashes(vars(e), found)
        return found

    def _decide(self, decide: Any) -> list[Customer]:
        """Run a decision on fresh customers and save what it changed, with the identity
        changes, in one transaction.  A contact recorded on one of them meanwhile makes the
        save fail (the versions moved): decide again on the new state, a few times."""
        for attempt in range(5):
            try:
                customers, identity_changes = decide()
            except DecisionRefused as e:
                raise Conflict(str(e)) from None
            except InvalidDecision as e:
                raise InputError(str(e)) from None
            try:
                self._save_customers(customers, **identity_changes)
            except IntegrityError:
                self.forget_cached_customers()
                if attempt == 4:
                    raise Unavailable(
                        "the customer kept changing while this was being saved; try again"
                    ) from None
                continue
            return customers
        raise AssertionError("unreachable")
