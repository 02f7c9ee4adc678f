"""Follows the customer history's notification log into a view, in batches.

The library's ProjectionRunner applies one event per transaction and needs a push
subscription, which its SQLite store lacks.  This follower polls the log (cheap:
one indexed range query), applies a batch of events and its tracking position in
one transaction, and so works the same on SQLite and PostgreSQL.

A view never stops on one event: a batch that fails while the view answers is applied
again one event at a time, and an event that fails on its own is recorded as skipped (with
its reason, in the same transaction as the tracking position) and logged.  While the view
does not answer at all, the batch is retried: then nothing is wrong with the events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from eventsourcing.persistence import Tracking

from contracts.errors import ConfigError
from projections.log_pages import read_page
from projections.timeline import TOPICS, TimelineView, ViewSwapped, changes_for

log = logging.getLogger(__name__)


def prefetch_keys(source: Any, notifications: list[Any]) -> None:
    """The keys that open a batch of sealed events, in one query (a store whose mapper seals
    personal data per customer: services/history/sealing.py)."""
    prepare = getattr(source.mapper, "prepare_stored", None)
    if prepare is not None:
        prepare(notifications)


class SharedDecodes:
    """Stored events decoded once for every follower of the log in this process.

    The timeline and the reachability followers read the same events within moments of each
    other (both woken by the same commit); each opening every sealed event itself was a
    quarter of the timeline service's CPU (profiled in bench/ingest.py's pipeline).  A page is
    decoded under one lock: the follower that comes second waits and then takes what the first
    made (decoding holds the GIL, so two threads decoding side by side gained nothing), handed
    over as it is (events are never changed once made).  Bounded: only the latest ``window``
    notification ids are kept.
    """

    def __init__(self, window: int = 20_000) -> None:
        self.window = window
        self._events: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._newest = 0

    def decode_page(
        self,
        notifications: Sequence[Any],
        to_domain: Callable[[Any], Any],
        prefetch: Callable[[list[Any]], None],
    ) -> list[Any]:
        """Each notification's event, in order: decoded lately by a follower, else now by
        ``to_domain`` after ``prefetch`` of those not decoded yet (their keys, one query).
        An event that does not open is the exception ``to_domain`` raised, in its place (and
        is not kept: the next follower tries it itself)."""
        with self._lock:
            events = self._events
            missing = [n for n in notifications if n.id not in events]
            if missing:
                prefetch(missing)
            found: list[Any] = []
            for n in notifications:
                event = events.get(n.id)
                if event is None:
                    try:
                        event = events[n.id] = to_domain(n)
                    except Exception as e:
                        found.append(e)
                        continue
                    self._newest = max(self._newest, n.id)
                found.append(event)
            if len(events) > self.window * 2:
                oldest = self._newest - self.window
                self._events = {i: e for i, e in events.items() if i > oldest}
        return found


class NewEvents:
    """Wakes the followers in this process when the store got new events, so a view is
    current within milliseconds of a commit here; writes by other processes are still seen
    by polling (at most half a second when idle)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Until there is news after generation ``seen`` (True), or ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generation != seen, timeout)


class NotificationSource(Protocol):
    """What the follower needs of an eventsourcing Application."""

    name: str
    recorder: Any
    mapper: Any


class Follower:
    """What every follower of the notification log does besides its batch: catch up, and
    follow until stopped — woken by this process's commits, else polling, backing off to half
    a second when idle; a failing batch is logged, the position taken from the store again,
    and the batch retried."""

    name = "follower"
    idle_wait = 0.05
    new_events: NewEvents

    @property
    def position(self) -> int:
        raise NotImplementedError

    def run_once(self) -> int:
        """Apply the next batch; returns how many stored events were read."""
        raise NotImplementedError

    def resync(self) -> None:
        """Take the position from the store again (after a failed batch)."""
        raise NotImplementedError

    def catch_up(self) -> int:
        """Apply everything stored so far (a rebuild from zero after a reset)."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    def run(self, stop: threading.Event) -> None:
        """Follow until ``stop`` is set."""
        wait = self.idle_wait
        while not stop.is_set():
            seen = self.new_events.generation
            try:
                read = self.run_once()
            except Exception:
                log.exception(
                    "%s batch failed; retrying from position %s", self.name, self.position
                )
                stop.wait(1.0)
                try:
                    self.resync()
                except Exception:
                    log.exception("%s: the store does not answer", self.name)
                continue
            if read:
                wait = self.idle_wait
            else:
                self.new_events.wait(seen, wait)
                wait = min(wait * 2, 0.5)


class ViewFollower(Follower):
    """A follower of one tracked view: its position (the view's tracking of ``source``),
    moved as batches are applied, and a wait for it (read-your-writes)."""

    def __init__(
        self,
        source: NotificationSource,
        view: Any,
        *,
        batch_size: int = 2000,
        idle_wait: float = 0.05,
        new_events: NewEvents | None = None,
        decodes: SharedDecodes | None = None,
    ) -> None:
        self.source = source
        self.view = view
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.new_events = new_events or NewEvents()
        self.decodes = decodes
        self._position = self._stored()
        self._progress = threading.Condition()

    @property
    def position(self) -> int:
        return self._position

    def _stored(self) -> int:
        """The view's own position.  Raises while the view does not answer at all."""
        return self.view.max_tracking_id(self.source.name) or 0

    def resync(self) -> None:
        self._move_to(self._stored())

    def _move_to(self, position: int) -> None:
        with self._progress:
            self._position = position
            self._progress.notify_all()

    def wait_for(self, notification_id: int, timeout: float) -> bool:
        """Block until the view includes ``notification_id`` (read-your-writes)."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while self._position < notification_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(left)
        return True


class TimelineFollower(ViewFollower):
    name = "timeline"
    view: TimelineView

    def run_once(self) -> int:
        """Apply the next batch; returns how many stored events were read."""
        notifications = read_page(
            self.source.recorder, start=self._position, limit=self.batch_size, topics=TOPICS
        )
        if not notifications:
            return 0
        try:
            self._apply_batch(notifications)
        except ViewSwapped:
            # A rebuild swapped a new view in: go on from its position (ahead of ours or not).
            self.resync()
            log.info(
                "timeline: the view was rebuilt and swapped in; following from %s", self.position
            )
        return len(notifications)

    def _apply_batch(self, notifications: list[Any]) -> None:
        """Apply the batch, else event by event; then move past it."""
        try:
            self._apply(notifications)
        except (ViewSwapped, ConfigError):
            raise  # a swap, or a setting (a keyring without the keys): not the event's fault
        except Exception as e:
            applied = self._applied_elsewhere()
            if applied >= notifications[0].id:
                # Another follower of the same view (a second hub process, a rebuild) got
                # there first: its transaction holds these events; continue after them.
                log.info("timeline: another follower applied up to %s; continuing there", applied)
                self._move_to(applied)
                return
            log.warning(
                "timeline batch after %s failed (%r); applying it event by event", self._position, e
            )
            for notification in notifications:
                self._apply_or_skip(notification)
        self._move_to(notifications[-1].id)

    def _apply(self, notifications: list[Any]) -> None:
        to_domain = self.source.mapper.to_domain_event
        if self.decodes is None:
            prefetch_keys(self.source, notifications)
            events = [(n.id, to_domain(n)) for n in notifications]
        else:
            decoded = self.decodes.decode_page(
                notifications, to_domain, partial(prefetch_keys, self.source)
            )
            for event in decoded:
                if isinstance(event, Exception):
                    raise event  # as decoding here would: the batch goes event by event
            events = [(n.id, e) for n, e in zip(notifications, decoded, strict=True)]
        changes = changes_for(events)
        self.view.apply(changes, Tracking(self.source.name, notifications[-1].id))

    def _apply_or_skip(self, notification: Any) -> None:
        try:
            self._apply([notification])
        except (ViewSwapped, ConfigError):
            raise  # a swap, or a setting (a keyring without the keys): not the event's fault
        except Exception as e:
            if self._applied_elsewhere() >= notification.id:
                return
            reason = f"{type(e).__name__}: {e}"[:1000]
            log.error(
                "timeline skips stored event %s, which it cannot apply: %s", notification.id, reason
            )
            self.view.skip(notification.id, reason, Tracking(self.source.name, notification.id))

    def _applied_elsewhere(self) -> int:
        """The view's own position after a failed apply.  Raises while the view does not
        answer at all (then nothing is wrong with the events: the caller retries)."""
        return self._stored()
