"""A rebuild of the SQLite timeline view in a file beside the one that serves, swapped in.

``views.db`` is a symbolic link to the generation in use (``views.1.db``, ``views.2.db``, ...;
before the first rebuild it is the file itself).  A rebuild loads the next generation as only
a file nobody reads yet can be loaded: its journal in memory, no fsync, transactions of 200 000
events, and the secondary indexes made after the load, one sort each (the first batch with a
merge makes the ones a merge reads).  Then the file gets the live settings (WAL), a follower
brings it up to the newest event through the live path, and the link is replaced in one
``rename``: a process opening the view from then on opens the new file.  SQLite names its WAL
and shared-memory files after the file the link points to, so a process still holding the old
generation never mixes its WAL with the new one's; the old view goes on answering until each
process notices the swap (``projections/sqlite_swap.py``: reads look twice a second, writes
every time) and reopens.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteDatastore

from contracts.errors import ConfigError
from projections.directory import Erased, Merged, Unmerged
from projections.timeline import TimelineChanges
from projections.timeline_sqlite import INDEXES, BatchRows, SQLiteTimelineView

log = logging.getLogger(__name__)

# What a batch of events may read through a secondary index while it is applied: a merge
# moves rows by owner and by customer.  The first such batch of a load makes them.
_NEEDED_BY_MERGES = ("timeline_by_owner", "addresses_by_customer", "conversations_by_owner")
# Events per load transaction.
_COMMIT_EVERY = 200_000
# A file nobody reads yet: its journal in memory (a failed batch still rolls back), no fsync,
# held by the load's connection alone.  A page cache of 1 GiB and sorting the indexes in
# memory measured no faster than SQLite's defaults (the writer's work at 1 M customers;
# measured again with the rows in key order: the inserts got cheaper, the commits dearer by
# as much, the writer as a whole no faster).
_LOAD_PRAGMAS = ("journal_mode=MEMORY", "synchronous=OFF", "locking_mode=EXCLUSIVE")
# How long the old generation is kept after the swap, for a process that opened it just then.
_GRACE_S = 2.0


class RebuildRunning(ConfigError):
    def __init__(self, lock: Path) -> None:
        super().__init__(
            f"another rebuild of the view is running (it holds {lock}); wait for it to finish"
        )


class SQLiteViewBuild:
    """The next generation of the view, loaded in bulk and swapped in (see the module)."""

    def __init__(self, view: SQLiteTimelineView) -> None:
        self.view = view
        old = view.datastore
        self.link = Path(old.pool.db_name)
        self._lock = _take_lock(self.link)
        self.target = _next_generation(self.link)
        self._options = {
            "lock_timeout": old.pool.lock_timeout,
            "single_row_tracking": old.single_row_tracking,
            "originator_id_type": old.originator_id_type,
        }
        self._swapped = False
        try:
            self._start()
        except BaseException:
            self.discard()
            raise

    def _start(self) -> None:
        _remove_database(self.target)  # left by an interrupted rebuild
        self.fresh = self._open(self.target)  # its tables, made as the live view makes them
        self.fresh.datastore.close()
        self.conn = sqlite3.connect(self.target, isolation_level=None, check_same_thread=False)
        for pragma in _LOAD_PRAGMAS:
            self.conn.execute(f"PRAGMA {pragma}")
        self.cursor = self.conn.cursor()
        self.deferred = [
            name
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            if name in INDEXES
        ]
        for name in self.deferred:
            self.conn.execute(f"DROP INDEX {name}")
        self.cursor.execute("BEGIN")
        self._since_commit = 0

    def _open(self, path: Path) -> SQLiteTimelineView:
        view = type(self.view)(SQLiteDatastore(str(path), **self._options))
        view.create_table()
        return view

    # -- the load ------------------------------------------------------------------------------

    @staticmethod
    def prepare(changes: TimelineChanges) -> BatchRows:
        return BatchRows.of(changes)

    def write(self, rows: BatchRows, tracking: Tracking, events: int) -> None:
        """Apply a batch, all or nothing (raises after undoing it)."""
        if self.deferred and any(isinstance(op, Merged | Unmerged | Erased) for op in rows.ops):
            self._make_indexes(_NEEDED_BY_MERGES)
        c = self.cursor
        c.execute("SAVEPOINT batch")
        try:
            self.fresh._insert_tracking(c, tracking)
            self.fresh.write_rows(c, rows)
        except BaseException:
            c.execute("ROLLBACK TO batch")
            c.execute("RELEASE batch")
            raise
        c.execute("RELEASE batch")
        self._since_commit += events
        if self._since_commit >= _COMMIT_EVERY:
            c.execute("COMMIT")
            c.execute("BEGIN")
            self._since_commit = 0

    def check(self) -> None:
        """Raises if the new view's database does not answer."""
        self.cursor.execute("SELECT 1")
        self.cursor.fetchall()

    def skip(self, notification_id: int, reason: str, tracking: Tracking) -> None:
        self.fresh._insert_tracking(self.cursor, tracking)
        self.fresh.write_skip(self.cursor, notification_id, reason)

    def _make_indexes(self, names: tuple[str, ...] | list[str]) -> None:
        for name in [n for n in names if n in self.deferred]:
            self.cursor.execute(INDEXES[name])
            self.deferred.remove(name)

    def loaded(self) -> SQLiteTimelineView:
        """The load is complete: the indexes made, the file given the live settings; the view
        on it (for the follower that brings it up to the newest event)."""
        self._make_indexes(list(self.deferred))
        self.cursor.execute("COMMIT")
        self.conn.execute("PRAGMA locking_mode=NORMAL")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()
        self.fresh = self._open(self.target)
        return self.fresh

    # -- the swap ------------------------------------------------------------------------------

    def swap(self, catch_up: Callable[[], Any]) -> None:
        """Bring the new generation up to the newest event, point the link at it (one
        rename), and let the old one go."""
        catch_up()
        self.fresh.datastore.close()
        old = self.link.resolve() if self.link.is_symlink() else None
        staged = self.link.with_name(f".{self.link.name}.{os.getpid()}.link")
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        os.symlink(self.target.name, staged)
        os.replace(staged, self.link)
        self._swapped = True
        log.info("timeline view: %s now points to %s", self.link, self.target.name)
        self.view.reopen()  # the caller's view object answers from the new file at once
        # A process that resolved the link just before the rename may be opening the old file
        # now: it goes a moment later, so that it does not create an empty one in its place.
        gone = (old,) if old is not None else ()
        leftovers = [Path(f"{p}{s}") for p in (*gone, self.link) for s in ("-wal", "-shm")]
        timer = threading.Timer(_GRACE_S, _remove_files, args=([*gone, *leftovers],))
        timer.daemon = False  # the process waits for it before it exits
        timer.start()
        self.close()

    def discard(self) -> None:
        """Give up the new generation (a failed rebuild): the old one stays in use."""
        if self._swapped:  # failed after the swap: the new generation is the one in use
            self.close()
            return
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.fresh.datastore.close()
        _remove_database(self.target)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._lock.close()


def _take_lock(link: Path) -> Any:
    path = link.with_name(f".{link.name}.rebuild-lock")
    handle = open(path, "a+b")  # held until the rebuild ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RebuildRunning(path) from None
    return handle


def _next_generation(link: Path) -> Path:
    """``views.<n+1>.db`` beside ``views.db`` (n: the generation the link points to, else 0)."""
    stem, suffix = link.stem, link.suffix
    current = 0
    if link.is_symlink():
        found = re.fullmatch(rf"{re.escape(stem)}\.(\d+){re.escape(suffix)}", os.readlink(link))
        current = int(found.group(1)) if found else 0
    return link.with_name(f"{stem}.{current + 1}{suffix}")


def _remove_database(path: Path) -> None:
    _remove_files([Path(f"{path}{s}") for s in ("", "-journal", "-wal", "-shm")])


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
