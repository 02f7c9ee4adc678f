"""The timeline view rebuilt from zero beside the one that serves, then swapped in.

The old view goes on answering (and its follower following) while the new one is loaded: in
bulk from the notification log, with settings only a view nobody reads yet can have (each
store's ``ViewBuild``: projections/rebuild_sqlite.py, rebuild_postgres.py).  Once loaded, the
new view is brought up to the newest event by a ``TimelineFollower`` (the live path), and the
store swaps it in at once.

The load applies the same changes through the same statements as the live follower
(``changes_for``, then the view's own rows and SQL), so the rebuilt view answers exactly what
following would; a batch it cannot apply is applied event by event, and an event that fails
on its own is recorded as skipped, as the follower does.  Reading and decoding cost more than
writing, so with ``open_source`` worker processes read, decode and prepare ranges of the log
in parallel while this process writes them, in order.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import Tracking

from contracts.errors import ConfigError
from projections.follower import NotificationSource, TimelineFollower, prefetch_keys
from projections.log_pages import read_page
from projections.timeline import TOPICS, TimelineChanges, TimelineView, changes_for

log = logging.getLogger(__name__)

# Notification ids per batch of the load.
LOAD_BATCH = 5000
# Worker processes reading and decoding (the writer is a third process) ...
WORKERS = 2
# ... from this many stored events on (below, starting them costs more than they save).
PARALLEL_FROM = 100_000

Progress = Callable[[int, int], None]
Prepare = Callable[[TimelineChanges], Any]


class ViewBuild(Protocol):
    """A new view beside the serving one, loaded in bulk, then swapped in."""

    # What ``write`` writes of a batch's changes, as plain data: pure, picklable by reference
    # (it runs in the worker processes).
    prepare: Prepare

    def write(self, prepared: Any, tracking: Tracking, events: int) -> None:
        """Apply one prepared batch, all or nothing: raises after undoing it."""

    def check(self) -> None:
        """Raises if the new view's database does not answer (then nothing is wrong with the
        events, and the rebuild fails instead of skipping them)."""

    def skip(self, notification_id: int, reason: str, tracking: Tracking) -> None:
        """Record a stored event that cannot be applied."""

    def loaded(self) -> TimelineView:
        """End the load (indexes, live settings); the new view, to catch up through."""

    def swap(self, catch_up: Callable[[], Any]) -> None:
        """Make the new view the one that serves: ``catch_up()`` brings it to the newest
        event just before (under the store's lock, where it has one)."""

    def discard(self) -> None:
        """Give up the new view; the old one stays."""


def rebuild_timeline(
    source: NotificationSource,
    view: TimelineView,
    *,
    open_source: Callable[[], NotificationSource] | None = None,
    progress: Progress | None = None,
) -> int:
    """Rebuild ``view`` from zero; the last event the rebuilt view has applied.

    ``open_source``: opens the same store in another process (picklable: a module-level
    function, or a partial of one), for the parallel load; without it the load is serial."""
    report = progress or (lambda _position, _total: None)
    build = view.build_beside()
    if build is None:  # an in-memory view: nobody else reads it
        return _rebuild_in_place(source, view, report)
    try:
        _load(source, build, report, open_source)
        follower = TimelineFollower(source, build.loaded())

        def catch_up() -> None:
            total = source.recorder.max_notification_id() or 0
            while follower.run_once():
                report(follower.position, total)

        catch_up()
        build.swap(catch_up)
    except BaseException:
        build.discard()
        raise
    return follower.position


@dataclass
class _Batch:
    """A range of the log, read and prepared."""

    start: int
    stop: int
    last: int | None  # the last of the view's events in it (None: it has none)
    events: int
    prepared: Any  # None: decoding or mapping failed (the writer goes event by event)


def _load(
    source: NotificationSource,
    build: ViewBuild,
    report: Progress,
    open_source: Callable[[], NotificationSource] | None,
) -> None:
    head = source.recorder.max_notification_id() or 0
    ranges = [(start, min(start + LOAD_BATCH, head)) for start in range(0, head, LOAD_BATCH)]
    parallel = open_source is not None and head >= PARALLEL_FROM
    with (
        _fewer_collections(),
        _prepared(source, build.prepare, ranges, open_source if parallel else None) as batches,
    ):
        for batch in batches:
            if batch.last is None:
                continue
            tracking = Tracking(source.name, batch.last)
            if batch.prepared is not None:
                try:
                    build.write(batch.prepared, tracking, batch.events)
                except Exception as e:
                    log.warning("rebuild: the batch up to %s failed (%r)", batch.last, e)
                    build.check()
                else:
                    report(batch.last, head)
                    continue
            log.warning("rebuild: applying the events %s to %s one by one", batch.start, batch.stop)
            for n in _select(source, batch.start, batch.stop):
                _write_or_skip(source, build, n)
            report(batch.last, head)


@contextmanager
def _prepared(
    source: NotificationSource,
    prepare: Prepare,
    ranges: list[tuple[int, int]],
    open_source: Callable[[], NotificationSource] | None,
) -> Iterator[Iterator[_Batch]]:
    """The ranges read and prepared, in order: here, or by worker processes."""
    if open_source is None:
        yield (_prepare_range(source, prepare, bounds) for bounds in ranges)
        return
    # spawn: a fresh interpreter, which inherits no connection, thread or lock of this one.
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS, initializer=_start_worker, initargs=(open_source, prepare)) as pool:
        yield _in_order(pool, ranges)


def _in_order(pool: Any, ranges: list[tuple[int, int]]) -> Iterator[_Batch]:
    """The workers' batches in order, a few ahead of the writer (bounded memory)."""
    window: deque[Any] = deque()
    todo = iter(ranges)
    for bounds in todo:
        window.append(pool.apply_async(_worker_range, (bounds,)))
        if len(window) >= 3 * WORKERS:
            break
    while window:
        batch = window.popleft().get()
        for bounds in todo:
            window.append(pool.apply_async(_worker_range, (bounds,)))
            break
        yield batch


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A batch's changes and rows outlive many young collections, and each one that promotes
    them makes the old generations fill and be scanned: a fifth of the load's CPU time with
    the default threshold of 700 allocations (measured: 14.9 s, and 11.2 s with this one, for
    200 000 events loaded in one process)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], _YOUNG_COLLECTION_EVERY), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


_YOUNG_COLLECTION_EVERY = 50_000
_worker: tuple[NotificationSource, Prepare] | None = None


def _start_worker(open_source: Callable[[], NotificationSource], prepare: Prepare) -> None:
    global _worker
    gc.set_threshold(_YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    _worker = (open_source(), prepare)


def _worker_range(bounds: tuple[int, int]) -> _Batch:
    assert _worker is not None
    return _prepare_range(*_worker, bounds)


def _prepare_range(source: NotificationSource, prepare: Prepare, bounds: tuple[int, int]) -> _Batch:
    start, stop = bounds
    notifications = _select(source, start, stop)
    if not notifications:
        return _Batch(start, stop, None, 0, None)
    last = notifications[-1].id
    try:
        prefetch_keys(source, notifications)
        to_domain = source.mapper.to_domain_event
        prepared = prepare(changes_for([(n.id, to_domain(n)) for n in notifications]))
    except ConfigError:
        raise  # a keyring without the keys: not the events' fault
    except Exception as e:
        log.warning("rebuild: the events %s to %s do not map as a batch (%r)", start, stop, e)
        prepared = None
    return _Batch(start, stop, last, len(notifications), prepared)


def _select(source: NotificationSource, start: int, stop: int) -> list[Any]:
    return list(
        read_page(source.recorder, start=start, stop=stop, limit=stop - start, topics=TOPICS)
    )


def _write_or_skip(source: NotificationSource, build: ViewBuild, notification: Any) -> None:
    tracking = Tracking(source.name, notification.id)
    try:
        event = source.mapper.to_domain_event(notification)
        build.write(build.prepare(changes_for([(notification.id, event)])), tracking, 1)
    except ConfigError:
        raise
    except Exception as e:
        build.check()
        reason = f"{type(e).__name__}: {e}"[:1000]
        log.error(
            "rebuild skips stored event %s, which it cannot apply: %s", notification.id, reason
        )
        build.skip(notification.id, reason, tracking)


def _rebuild_in_place(source: NotificationSource, view: TimelineView, report: Progress) -> int:
    view.reset()
    follower = TimelineFollower(source, view)
    total = source.recorder.max_notification_id() or 0
    while follower.run_once():
        report(follower.position, total)
    return follower.position
