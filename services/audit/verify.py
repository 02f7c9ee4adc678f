"""Walk the customer history's hash chain and report where it first breaks.

The events and their chain rows are read side by side in notification order, a page at a
time, and every hash is recomputed from the stored bytes (``services/history/chain.py``):

- an event without a chain row was inserted afterwards (or its row removed);
- a chain row without its event: the event was deleted;
- a chain row naming another originator or version than the event at its notification id:
  events were renumbered or moved;
- a stream hash that differs while the row still links to the one before it: the event's
  stored bytes are not the ones chained (modified, or exchanged with another event);
- a row that does not link to the row before it: rows between them were removed, or this
  row was rewritten.

A page is first read joined — each event beside the hashes of the chain row at its
notification id, if that row names its originator and version — with the count of chain rows
in its range, and checked in one pass (``chain.links_hold``): no row tuples built, nothing
compared twice.  The first page where anything differs (a hash, a missing or extra row) is
read again apart and compared row by row from there, which tells the cases above apart.

The walk stops at the first break.  It covers the notification ids up to the last one stored
when it starts, so the hub may keep recording meanwhile.  It holds one stream head (32 bytes)
per originator in memory: about 200 bytes a customer.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol
from uuid import UUID

from services.audit.verify_ranges import PARALLEL_FROM, check_in_ranges, join_ranges
from services.history.chain import (
    GENESIS,
    ChainStart,
    global_link,
    link_events,
    links_hold,
    originator_of,
)

log = logging.getLogger(__name__)

PAGE = 20_000
_NID = itemgetter(0)


class ChainStore(Protocol):
    """What the verifier reads (``SQLiteEventChain``, ``PostgresEventChain``)."""

    def start(self) -> ChainStart | None: ...
    def extent(self) -> tuple[int, int]: ...
    def events_after(self, after: int, stop: int, limit: int) -> list[Any]: ...
    def rows_after(self, after: int, stop: int, limit: int) -> list[Any]: ...
    def linked_after(self, after: int, stop: int, limit: int) -> list[Any]: ...
    def count_rows(self, after: int, upto: int) -> int: ...


@dataclass(frozen=True)
class ChainBreak:
    """Where the recomputed chain first differs from the stored one, and how."""

    notification_id: int | None  # None: the chain's start record itself
    originator_id: UUID | str | None
    originator_version: int | None
    what: str

    def __str__(self) -> str:
        if self.notification_id is None:
            return self.what
        where = f"notification {self.notification_id}"
        if self.originator_id is not None:
            where += f" (originator {self.originator_id} version {self.originator_version})"
        return f"{where}: {self.what}"


@dataclass
class ChainReport:
    events: int = 0  # the rows verified
    last_notification_id: int = 0  # the last one verified
    head: bytes = GENESIS  # the global hash there
    stored_up_to: int = 0  # the last notification id the store held when the walk began
    start: ChainStart | None = None
    first_break: ChainBreak | None = None
    # The recomputed global hash at each notification id asked for (the checkpoints'), of
    # those verified before any break.
    heads_at: dict[int, bytes] = field(default_factory=dict)
    processes: int = 1  # that checked it (ranges side by side: verify_ranges.py)

    @property
    def intact(self) -> bool:
        return self.first_break is None


def default_workers() -> int:
    """Processes a big store's verification uses: the machine's cores, at most four."""
    return max(1, min(os.cpu_count() or 1, 4))


def verify_chain(
    chain: ChainStore,
    *,
    heads_at: Collection[int] = (),
    progress: Callable[[int, int], None] | None = None,
    page: int = PAGE,
    workers: int = 1,
    parallel_from: int = PARALLEL_FROM,
) -> ChainReport:
    """Recompute the chain from the stored events; ``progress(position, last)`` per page.
    With ``workers`` > 1 and at least ``parallel_from`` notifications, ranges of the store are
    checked side by side first (``verify_ranges.py``); if they do not show it intact, the walk
    goes from the beginning as with one worker, and names the first break."""
    report = ChainReport(start=chain.start())
    last_event, last_row = chain.extent()
    stop = report.stored_up_to = max(last_event, last_row)
    wanted = set(heads_at)
    if 0 in wanted:
        report.heads_at[0] = GENESIS
    if report.start is None and stop:
        report.first_break = ChainBreak(
            None,
            None,
            None,
            "the chain's start record is missing (deleted?): the store's chain cannot be trusted",
        )
        return report
    walk = _Walk(chain, report, wanted)
    if not stop:
        return report
    if (
        workers > 1
        and stop >= parallel_from
        and _in_ranges(chain, report, wanted, page, workers, progress)
    ):
        return report

    def read_linked(after: int) -> tuple[list[Any], int, int]:
        events = chain.linked_after(after, stop, page)
        upto = events[-1][0] if len(events) == page else stop
        return events, chain.count_rows(after, upto), upto

    # The next page is read while this one is hashed: the database works (and releases the
    # GIL) while Python links the chain.  Each page is read joined (an event beside its chain
    # row's hashes) and checked in one pass while it holds; at the first page that does not,
    # the walk goes on comparing whole rows, which names the break.
    after = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-read") as reader:
        pending = reader.submit(read_linked, after)
        while True:
            events, rows, upto = pending.result()
            more = upto < stop
            if more:
                pending = reader.submit(read_linked, upto)
            if not walk.linked_page(events, rows):
                if more:
                    pending.result()  # read, not used: the walk goes on from ``after``
                _compare_rows(chain, walk, after, stop, page, progress, reader)
                break
            if progress is not None:
                progress(upto, stop)
            if not more:
                break
            after = upto
    return report


def _compare_rows(
    chain: ChainStore,
    walk: _Walk,
    after: int,
    stop: int,
    page: int,
    progress: Callable[[int, int], None] | None,
    reader: ThreadPoolExecutor,
) -> None:
    """The walk from ``after`` on, the events and the chain rows read apart and compared row
    by row: what tells an inserted, a deleted, a moved and a modified row apart."""

    def read(after: int) -> tuple[list[Any], list[Any], int]:
        events = chain.events_after(after, stop, page)
        rows = chain.rows_after(after, stop, page)
        upto = stop
        if len(events) == page:
            upto = min(upto, events[-1][0])
        if len(rows) == page:
            upto = min(upto, rows[-1][0])
        return (
            events[: bisect_right(events, upto, key=_NID)],
            rows[: bisect_right(rows, upto, key=_NID)],
            upto,
        )

    pending = reader.submit(read, after)
    while True:
        events, rows, upto = pending.result()
        more = upto < stop
        if more:
            pending = reader.submit(read, upto)
        walk.page(events, rows)
        if progress is not None:
            progress(upto, stop)
        if not more or walk.report.first_break is not None:
            break


def _in_ranges(
    chain: ChainStore,
    report: ChainReport,
    wanted: set[int],
    page: int,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> bool:
    """Whether the ranges checked side by side show the whole store intact (then ``report``
    says so); False: the sequential walk is to be done."""
    stop = report.stored_up_to
    try:
        results = check_in_ranges(
            chain, stop, workers=workers, page=page, wanted=wanted, progress=progress
        )
    except Exception as e:  # a worker could not read: the sequential walk does it all
        log.warning("verifying in %d processes failed (%r); verifying in one", workers, e)
        return False
    if results is None or len(results) != workers or not join_ranges(results):
        return False
    report.events = sum(r.events for r in results)
    report.head = results[-1].head
    report.last_notification_id = max(
        (r.last_notification_id for r in results if r.events), default=0
    )
    for r in results:
        report.heads_at.update(r.heads_at)
    report.processes = workers
    return True


class _Walk:
    def __init__(self, chain: ChainStore, report: ChainReport, wanted: set[int]) -> None:
        self.chain = chain
        self.report = report
        self.wanted = wanted
        self.streams: dict[bytes, bytes] = {}

    def linked_page(self, events: list[Any], rows: int) -> bool:
        """Whether ``events`` (each beside its chain row's hashes, ``rows`` chain rows in their
        range) are chained as stored: then the walk is past them."""
        report = self.report
        if rows != len(events):  # a chain row without its event, or an event without one
            return False
        if not events:
            return True
        head = links_hold(report.head, self.streams, events)
        if head is None:
            return False
        report.head, report.last_notification_id = head, events[-1][0]
        report.events += len(events)
        for nid in self.wanted:
            if events[0][0] <= nid <= report.last_notification_id:
                i = bisect_left(events, nid, key=_NID)
                if events[i][0] == nid:
                    report.heads_at[nid] = events[i][6]  # the stored global hash: it held
        return True

    def page(self, events: list[Any], rows: list[Any]) -> None:
        """The chain rows of ``events`` recomputed as the writer computes them, compared with
        the stored ``rows`` (both tuples of the same shape: one comparison in C when intact)."""
        report = self.report
        computed = link_events(report.head, self.streams, events)
        good = len(computed)
        if computed != rows:
            good = next(
                (
                    i
                    for i, (mine, stored) in enumerate(zip(computed, rows, strict=False))
                    if mine != stored
                ),
                min(len(computed), len(rows)),
            )
            self._explain(computed, rows, good)
        if good:
            report.head, report.last_notification_id = computed[good - 1][4], computed[good - 1][0]
            report.events += good
            for nid in (
                self.wanted.intersection(r[0] for r in computed[:good]) if self.wanted else ()
            ):
                report.heads_at[nid] = computed[bisect_right(computed, nid, key=_NID) - 1][4]

    def _explain(self, computed: list[Any], rows: list[Any], i: int) -> None:
        """The first difference, at index ``i``: which row, and what kind of change."""
        if i >= len(rows) or (i < len(computed) and computed[i][0] < rows[i][0]):
            event = computed[i]
            self._break(
                event,
                "the event is not in the chain: it was stored past the hub "
                "(or its chain row deleted)",
            )
        elif i >= len(computed) or rows[i][0] < computed[i][0]:
            self._break(rows[i], "the event is missing: deleted from the store")
        elif computed[i][1:3] != rows[i][1:3]:
            chained = originator_of(rows[i][1])
            self._break(
                computed[i],
                f"the chain recorded originator {chained} version {rows[i][2]} here: events "
                "were renumbered or moved",
            )
        else:
            head = computed[i - 1][4] if i else self.report.head
            nid, stored_stream, stored_global = rows[i][0], rows[i][3], rows[i][4]
            if global_link(head, nid, stored_stream) == stored_global:
                # The row links to the one before it: what differs is the event's own bytes.
                what = (
                    "the event's stored bytes are not the ones chained: modified (or "
                    "exchanged with another event of its stream)"
                )
            else:
                last = computed[i - 1][0] if i else self.report.last_notification_id
                before = f"notification {last}" if last else "the chain's beginning"
                what = (
                    f"the chain does not continue from {before}: rows between them were "
                    "removed, or this row was rewritten"
                )
            self._break(computed[i], what)

    def _break(self, row: Any, what: str) -> None:
        nid, oid, version = row[0], row[1], row[2]
        self.report.first_break = ChainBreak(nid, originator_of(oid), version, what)
