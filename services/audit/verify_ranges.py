"""The verifier's walk over a big store, split into ranges checked side by side.

``verify_chain`` (``verify.py``) walks the chain from its beginning on one core, reading and
hashing; on a store of millions of events both are bound by one Python process.  Here the
notification ids are cut into as many ranges as there are workers: this process checks the
first, worker processes (forked: they start at once, and use nothing of this process but the
code) the others, each with a connection of its own (``SQLiteChainReader`` /
``PostgresChainReader``).

A range that does not start at the beginning starts from what the store says:

- the global head is the stored global hash of the last chain row before the range;
- a stream met in the range for the first time starts from the stored stream hash of its
  latest event before the range (none: the stream begins here), looked up in one statement
  per page for the streams new on it.

Each range is checked as the sequential walk checks a page (``chain.links_hold``: every
event's stream and global hash recomputed from its stored bytes and compared; the chain rows
counted), and reports, beside its result, the stream head it *started* each stream from and
the one it ended with.  Then this process joins the ranges in order: a range's global start
must be the global head the range before it ended with (``global_at`` of a range that held
is exactly that), and each stream a range started from must be that stream's head where the
ranges before it left it (``GENESIS`` if none had it).  So the ranges hold together exactly
when the sequential walk would find the store intact, with no trust in anything stored that
the walk would not have checked: a stored hash taken as a starting point is only accepted
once it is shown equal to the recomputed one.

Anything else — a range that does not hold, a start that does not join — and ``verify_chain``
walks from the beginning as it always did, which names the first break in its words.
"""

from __future__ import annotations

import multiprocessing
import time
from bisect import bisect_left
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter
from typing import Any, Protocol

from services.history.chain import GENESIS, links_hold

# Below this many notifications one process is quicker than starting others.
PARALLEL_FROM = 200_000
_NID = itemgetter(0)


class RangeChain(Protocol):
    def linked_after(self, after: int, stop: int, limit: int) -> list[Any]: ...
    def count_rows(self, after: int, upto: int) -> int: ...
    def global_at(self, notification_id: int) -> bytes: ...
    def streams_before(self, keys: list[bytes], notification_id: int) -> dict[bytes, bytes]: ...


@dataclass
class RangeResult:
    lo: int  # the range is the notification ids after lo, up to hi
    hi: int
    holds: bool = True
    events: int = 0
    last_notification_id: int = 0
    start: bytes = GENESIS  # the global head it started from
    head: bytes = GENESIS  # the global head after it
    started: dict[bytes, bytes] = field(default_factory=dict)  # stream -> head it started from
    ended: dict[bytes, bytes] = field(default_factory=dict)  # stream -> head it ended with
    heads_at: dict[int, bytes] = field(default_factory=dict)


def check_range(
    chain: RangeChain,
    lo: int,
    hi: int,
    *,
    page: int,
    wanted: Collection[int] = (),
    on_page: Callable[[int], None] | None = None,
) -> RangeResult:
    """Check the events after ``lo`` up to ``hi`` (see the module's docstring)."""
    head = chain.global_at(lo) if lo else GENESIS
    result = RangeResult(lo, hi, start=head, last_notification_id=lo)
    streams = result.ended
    started = result.started
    after = lo
    while True:
        events = chain.linked_after(after, hi, page)
        upto = events[-1][0] if len(events) == page else hi
        if chain.count_rows(after, upto) != len(events):
            result.holds = False
            return result
        if events:
            new: dict[bytes, int] = {}
            for event in events:
                key = event[1]
                if key not in streams and key not in new:
                    new[key] = event[2]
            if new:
                # Only a stream whose first event here is not its first at all has a head
                # before the range (the join checks the guess either way).
                later = [k for k, version in new.items() if version != 1]
                found = chain.streams_before(later, lo) if lo and later else {}
                for key in new:
                    started[key] = streams[key] = found.get(key, GENESIS)
            moved = links_hold(head, streams, events)
            if moved is None:
                result.holds = False
                return result
            head = moved
            result.events += len(events)
            result.last_notification_id = events[-1][0]
            for nid in wanted:
                if events[0][0] <= nid <= events[-1][0]:
                    i = bisect_left(events, nid, key=_NID)
                    if events[i][0] == nid:
                        result.heads_at[nid] = events[i][6]
        if on_page is not None:
            on_page(upto)
        if upto >= hi:
            result.head = head
            return result
        after = upto


def join_ranges(results: list[RangeResult]) -> bool:
    """Whether the ranges, in order, make one chain: each starts where the ones before it
    ended (the global head, and every stream it took up)."""
    head = GENESIS
    streams: dict[bytes, bytes] = {}
    for result in results:
        if not result.holds or result.start != head:
            return False
        for key, began in result.started.items():
            if streams.get(key, GENESIS) != began:
                return False
        streams.update(result.ended)
        head = result.head
    return True


# -- the worker processes --------------------------------------------------------------------

_POSITIONS: Any = None  # shared: each range's position, for the progress bar


def _init_worker(positions: Any) -> None:
    global _POSITIONS
    _POSITIONS = positions


def _check_in_worker(
    reader: Any, slot: int, lo: int, hi: int, page: int, wanted: list[int], last: bool
) -> RangeResult:
    chain = reader.open()
    try:

        def on_page(position: int) -> None:
            _POSITIONS[slot] = position

        result = check_range(chain, lo, hi, page=page, wanted=wanted, on_page=on_page)
    finally:
        chain.close()
    if last:
        result.ended = {}  # no range after it takes a stream up: not sent back
    return result


def check_in_ranges(
    chain: Any,
    stop: int,
    *,
    workers: int,
    page: int,
    wanted: Collection[int] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[RangeResult] | None:
    """Every range's result, checked side by side (None: this store cannot be read from
    other processes, e.g. an in-memory one)."""
    reader = chain.detached()
    if reader is None:
        return None
    bounds = [stop * i // workers for i in range(workers + 1)]
    ranges = list(pairwise(bounds))
    # fork: a worker starts in milliseconds (spawn would import the CLI again, a second or
    # more); it opens a connection of its own and touches nothing else of this process.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    positions = context.Array("q", [lo for lo, _ in ranges], lock=False)
    with ProcessPoolExecutor(
        max_workers=workers - 1,
        mp_context=context,
        initializer=_init_worker,
        initargs=(positions,),
    ) as pool:
        futures: list[Future[RangeResult]] = [
            pool.submit(
                _check_in_worker,
                reader,
                slot,
                lo,
                hi,
                page,
                [n for n in wanted if lo < n <= hi],
                slot == len(ranges) - 1,
            )
            for slot, (lo, hi) in enumerate(ranges)
            if slot > 0
        ]
        last_report = 0.0

        def on_page(position: int) -> None:
            nonlocal last_report
            positions[0] = position
            now = time.monotonic()
            if progress is not None and now - last_report >= 0.2:
                last_report = now
                done = sum(p - lo for p, (lo, _) in zip(positions, ranges, strict=True))
                progress(min(done, stop), stop)

        lo, hi = ranges[0]
        first = check_range(
            chain, lo, hi, page=page, wanted=[n for n in wanted if lo < n <= hi], on_page=on_page
        )
        if not first.holds:
            for future in futures:
                future.cancel()
            return [first]
        while True:
            done, pending = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
            on_page(positions[0])
            if not pending or any(f.exception() for f in done):
                break
        results = [first, *(f.result() for f in futures)]
    if progress is not None:
        progress(stop, stop)
    return results
