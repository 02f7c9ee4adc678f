"""The reachability view: the facts of ``projections.reachability`` kept per original
customer id in tables of their own, with their own tracking position, and the rankings read
from them.  SQLite (``reachability_sqlite``, a database file of its own) and PostgreSQL
(``reachability_postgres``, tables ``reachability_*``) implement the few primitives below;
what to do with them is here, once.

Each batch of events and its tracking position are written in one transaction, so every
stored event counts exactly once.  A batch that fails is applied again event by event (each
in a savepoint of the same transaction); an event that fails on its own is recorded as skipped,
with its reason, and the view goes on.  A rebuild from zero (``rebuild_reachability``) is one
transaction too: readers see the old rankings until it commits.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder

from contracts.errors import ConfigError
from projections.follower import NotificationSource, SharedDecodes, ViewFollower, prefetch_keys
from projections.log_pages import read_page
from projections.reachability import (
    TOPICS,
    AddressFacts,
    ChannelReach,
    CustomerFacts,
    MessageState,
    ReachState,
    fold,
    rank,
    wanted,
)
from services.domain import Customer

log = logging.getLogger(__name__)

# Ids per IN query: well inside both stores' parameter limits.
CHUNK = 900
Positioned = tuple[int, Any]  # (notification id, domain event)
# AddressFacts as stored, after (customer_id, channel, address); times are epoch seconds.
FACT_COLUMNS = (
    "attempts",
    "delivered",
    "soft_failures",
    "hard_failures",
    "failure",
    "failed_at",
    "hard_failed_at",
    "failure_streak",
    "succeeded_at",
    "inbound",
    "replied",
    "awaiting",
    "awaiting_at",
    "reply_delays",  # last, as in AddressFacts
)


def fact_values(f: AddressFacts) -> tuple:
    """The stored columns of ``f`` after its key (reply delays as "12,340": whole seconds)."""
    delays = ",".join(f"{d:.0f}" for d in f.reply_delays)
    return (*(getattr(f, name) for name in FACT_COLUMNS[:-1]), delays)


def facts_of(customer_id: UUID, channel: str, address: str, values: Sequence[Any]) -> AddressFacts:
    """``AddressFacts`` from the stored columns after the key (``FACT_COLUMNS``)."""
    delays = values[-1]
    if not delays:
        return AddressFacts(customer_id, channel, address, *values[:-1])
    return AddressFacts(
        customer_id, channel, address, *values[:-1], tuple(map(float, delays.split(",")))
    )


class ViewFromTheFuture(ConfigError):
    """The view was built by a newer release: an older process must not drop and rebuild it."""

    def __init__(self, found: int, ours: int) -> None:
        super().__init__(
            f"the reachability view has schema {found}, this release knows {ours}: it was "
            "built by a newer Switchboard; run that release"
        )


class ReachabilityView(TrackingRecorder):
    """The view's interface; SQLite and PostgreSQL implement its primitives."""

    # -- what the campaign planner and the card read ----------------------------------------

    def ranking(self, customer_id: UUID, *, purpose: str = "marketing") -> list[ChannelReach]:
        """The customer's channels, best first (a customer merged into another: the
        survivor's, which includes what was learnt on every customer merged into it)."""
        return self.rankings([customer_id], purpose=purpose).get(customer_id, [])

    def rankings(
        self, customer_ids: Iterable[UUID], *, purpose: str = "marketing"
    ) -> dict[UUID, list[ChannelReach]]:
        """``ranking`` of many customers at once (chunked IN queries): every id asked for is
        answered, with an empty list when nothing is known about it."""
        asked = list(dict.fromkeys(customer_ids))
        answers: dict[UUID, list[ChannelReach]] = {}
        with self._reading() as c, _no_cycle_collection():
            for start in range(0, len(asked), CHUNK):
                chunk = asked[start : start + CHUNK]
                answers.update(self._rank_chunk(c, chunk, purpose))
        return answers

    def _rank_chunk(
        self, c: Any, asked: list[UUID], purpose: str
    ) -> dict[UUID, list[ChannelReach]]:
        keys = {self._key(cid): cid for cid in asked}
        own: dict[UUID, CustomerFacts] = {}  # the rows of the asked (most have none)
        merged: dict[UUID, list[CustomerFacts]] = {}  # survivor -> those merged into it
        rows = self._people(c, list(keys))
        wanted_ids = set(asked) if rows else set()
        for x in rows:
            if x.customer_id in wanted_ids:
                own[x.customer_id] = x
            if x.survivor_id is not None:
                merged.setdefault(x.survivor_id, []).append(x)
        # An asked id merged into another answers as that survivor.
        moved = {cid: x.survivor_id for cid, x in own.items() if x.survivor_id is not None}
        extra = {
            self._key(x.customer_id): x.customer_id for group in merged.values() for x in group
        }
        facts = self._facts(c, {**keys, **extra})
        answers: dict[UUID, list[ChannelReach]] = {}
        for key, cid in keys.items():
            if moved and cid in moved:
                continue
            found = facts.get(key, [])
            person = own.get(cid) if own else None
            people = [person] if person is not None else []
            group = merged.get(cid) if merged else None
            if group:
                people = [person or CustomerFacts(cid), *group]
                found = found + [f for x in group for f in facts.get(self._key(x.customer_id), [])]
            answers[cid] = rank(people, found, purpose=purpose)
        if moved:
            survivors = self._rank_chunk(c, list(set(moved.values())), purpose)
            answers.update({cid: survivors[s] for cid, s in moved.items()})
        return answers

    # -- following ---------------------------------------------------------------------------

    def apply(
        self, events: Sequence[Positioned], tracking: Tracking, *, skipped: Sequence = ()
    ) -> list[tuple[int, str]]:
        """Apply a batch and move to ``tracking`` in one transaction; ``skipped``: (id,
        reason) of events that could not even be read.  Returns every event skipped."""
        with self._writing() as c:
            self._insert_tracking(c, tracking)  # first: SQLite's write lock before any read
            return self._apply_in(c, events, list(skipped))

    def _apply_in(
        self, c: Any, events: Sequence[Positioned], skipped: list[tuple[int, str]]
    ) -> list[tuple[int, str]]:
        try:
            with self._savepoint(c):
                self._fold_into(c, [e for _, e in events])
        except ConfigError:
            raise
        except Exception as e:
            if not self._answers(c):
                raise
            log.warning("reachability: a batch failed (%r); applying it event by event", e)
            for position, event in events:
                try:
                    with self._savepoint(c):
                        self._fold_into(c, [event])
                except Exception as e:
                    if not self._answers(c):
                        raise
                    skipped.append((position, f"{type(e).__name__}: {e}"[:1000]))
        for position, reason in skipped:
            log.error("reachability skips stored event %s: %s", position, reason)
        if skipped:
            self._write_skipped(c, skipped)
        return skipped

    def _fold_into(self, c: Any, events: list[Any]) -> None:
        for i, event in enumerate(events):
            if isinstance(event, Customer.Erased):
                # A person erased: what came before, then every row of theirs goes.
                if i:
                    self._fold_into(c, events[:i])
                erased = [event.originator_id, *(UUID(str(m)) for m in event.group)]
                self._erase(c, [self._key(i) for i in dict.fromkeys(erased)])
                if events[i + 1 :]:
                    self._fold_into(c, events[i + 1 :])
                return
        want = wanted(events)
        state = ReachState()
        state.messages = self._messages(c, list(want.message_refs))
        owners = want.addresses | {
            (m.customer_id, m.channel, m.address) for m in state.messages.values()
        }
        owner_keys = {self._key(key[0]): key[0] for key in owners}
        state.addresses = {f.key: f for rows in self._facts(c, owner_keys).values() for f in rows}
        state.customers = self._customers(c, list(want.customers))
        fold(state, events)
        self._write(
            c,
            [state.addresses[k] for k in state.changed_addresses],
            [state.messages[r] for r in state.changed_messages],
            [state.customers[i] for i in state.changed_customers],
        )

    def rebuild(
        self, batches: Iterable[tuple[Sequence[Positioned], Sequence, int]], source_name: str
    ) -> int:
        """Forget everything and apply ``batches`` ((events, unreadable, last id) each) of the
        application ``source_name`` in one transaction; the position reached."""
        position = 0
        with self._writing() as c:
            self._clear(c)
            for events, unreadable, last in batches:
                self._apply_in(c, events, list(unreadable))
                position = last
            if position:
                self._insert_tracking(c, Tracking(source_name, position))
        return position

    def reset(self) -> None:
        """Forget everything, tracking included: the next follow rebuilds from zero."""
        with self._writing() as c:
            self._clear(c)

    # -- the primitives each store answers ---------------------------------------------------

    def skipped(self) -> list[tuple[int, str]]:
        """The stored events this view could not apply: (notification id, reason)."""
        raise NotImplementedError

    def _reading(self) -> Any:
        """A context manager: a cursor for reads."""
        raise NotImplementedError

    def _writing(self) -> Any:
        """A context manager: a cursor in a transaction that commits."""
        raise NotImplementedError

    @contextmanager
    def _savepoint(self, c: Any) -> Iterator[None]:
        """What runs inside is undone on an error, the rest of the transaction kept."""
        c.execute("SAVEPOINT reach")
        try:
            yield
        except BaseException:
            c.execute("ROLLBACK TO SAVEPOINT reach")
            c.execute("RELEASE SAVEPOINT reach")
            raise
        c.execute("RELEASE SAVEPOINT reach")

    def _answers(self, c: Any) -> bool:
        """Whether the store still answers on ``c`` (else a failure is not the events')."""
        try:
            c.execute("SELECT 1")
            c.fetchall()
        except Exception:
            return False
        return True

    def _key(self, customer_id: UUID) -> Any:
        """A customer id as this store's queries take and its rows give it."""
        raise NotImplementedError

    def _customers(self, c: Any, ids: list[UUID]) -> dict[UUID, CustomerFacts]:
        raise NotImplementedError

    def _people(self, c: Any, keys: list[Any]) -> list[CustomerFacts]:
        """The rows of these customers, and of the customers merged into them."""
        raise NotImplementedError

    def _facts(self, c: Any, keys: dict[Any, UUID]) -> dict[Any, list[AddressFacts]]:
        """The addresses' facts of these customers (key -> its id), by key."""
        raise NotImplementedError

    def _messages(self, c: Any, refs: list[str]) -> dict[str, MessageState]:
        raise NotImplementedError

    def _write(
        self,
        c: Any,
        addresses: list[AddressFacts],
        messages: list[MessageState],
        customers: list[CustomerFacts],
    ) -> None:
        raise NotImplementedError

    def _erase(self, c: Any, keys: list[Any]) -> None:
        """Remove every row of these customers (an erasure)."""
        raise NotImplementedError

    def _write_skipped(self, c: Any, skipped: list[tuple[int, str]]) -> None:
        raise NotImplementedError

    def _clear(self, c: Any) -> None:
        """Delete every row and the tracking position (in ``c``'s transaction)."""
        raise NotImplementedError


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic GC off while a bulk answer is built: it makes no cycles, but its millions of
    new objects set off full collections over everything alive, a third of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def chunks(values: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def read_batches(
    source: NotificationSource,
    start: int,
    batch_size: int,
    decodes: SharedDecodes | None = None,
) -> Iterator[tuple[list[Positioned], list[tuple[int, str]], int]]:
    """The stored events this view reads after ``start``, decoded (or taken from ``decodes``:
    what another follower in this process decoded), in batches: (events, those that could not
    be decoded with the reason, the batch's last id)."""
    to_domain = source.mapper.to_domain_event
    while notifications := read_page(source.recorder, start=start, limit=batch_size, topics=TOPICS):
        events, unreadable = [], []
        if decodes is None:
            prefetch_keys(source, notifications)
            decoded = []
            for n in notifications:
                try:
                    decoded.append(to_domain(n))
                except Exception as e:
                    decoded.append(e)
        else:
            decoded = decodes.decode_page(notifications, to_domain, partial(prefetch_keys, source))
        for n, event in zip(notifications, decoded, strict=True):
            if isinstance(event, ConfigError):
                raise event  # a keyring without the keys: not the event's fault
            if isinstance(event, Exception):
                unreadable.append((n.id, f"{type(event).__name__}: {event}"[:1000]))
            else:
                events.append((n.id, event))
        start = notifications[-1].id
        yield events, unreadable, start


class ReachabilityFollower(ViewFollower):
    """Follows the customer history into the reachability view (``ViewFollower``: woken by
    this process's commits, else polling)."""

    name = "reachability"
    view: ReachabilityView

    def run_once(self) -> int:
        batch = next(read_batches(self.source, self._position, self.batch_size, self.decodes), None)
        if batch is None:
            return 0
        events, unreadable, last = batch
        try:
            self.view.apply(events, Tracking(self.source.name, last), skipped=unreadable)
        except Exception:
            stored = self._stored()  # raises while the store does not answer: retried
            if stored < last:
                raise
            # Another follower (a second hub process, a rebuild) holds these events.
            log.info("reachability: applied elsewhere up to %s; continuing there", stored)
            last = stored
        self._move_to(last)
        return len(events) + len(unreadable)


def rebuild_reachability(
    source: NotificationSource,
    view: ReachabilityView,
    *,
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """The view rebuilt from zero from ``source`` in one transaction; the position reached.
    ``progress(position, last event)``."""
    total = source.recorder.max_notification_id() or 0

    def batches() -> Iterator[tuple[list[Positioned], list[tuple[int, str]], int]]:
        for batch in read_batches(source, 0, batch_size):
            if progress is not None:
                progress(batch[2], total)
            yield batch

    return view.rebuild(batches(), source.name)
