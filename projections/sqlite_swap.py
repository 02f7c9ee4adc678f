"""Following a rebuild's swap of the SQLite view file (projections/rebuild_sqlite.py).

A rebuild replaces the link ``views.db`` with one to a new file.  A process that has the view
open goes on reading the old file until it notices: reads look at the link at most twice a
second and reopen; a write (the follower's batch) looks every time, and if the file changed
since the writer last heard of it (reopened by the write itself or by a read), it raises
``ViewSwapped`` instead of writing, so the follower takes its position from the new file
before it writes there (its own position may be ahead of the new file's, or behind it).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.sqlite import SQLiteDatastore

from projections.timeline import ViewSwapped

# How often a read looks whether the view was swapped.
CHECK_EVERY_S = 0.5
# How long the old file's pooled connections stay open for the reads that hold one now.
_CLOSE_OLD_AFTER_S = 5.0


def file_of(path: str) -> tuple[int, int] | None:
    """The file ``path`` names now (following links), or None."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


class FollowsSwaps:
    """For a recorder on an SQLiteDatastore: reopen when its file is swapped."""

    datastore: SQLiteDatastore

    def _start_following(self) -> None:
        self._memory = self.datastore.pool.is_sqlite_memory_mode
        self._file = None if self._memory else file_of(self.datastore.pool.db_name)
        self._checked_at = time.monotonic()
        self._swap_lock = threading.RLock()
        self._readers = threading.local()
        self.generation = 0  # how many swaps this object has followed
        self._writer_told = 0  # the generation the last ViewSwapped told the writer of

    def _follow_swap(self) -> None:
        """Reopen if the file was swapped (looked at every CHECK_EVERY_S)."""
        if self._memory or time.monotonic() - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = time.monotonic()
        if self._swapped():
            self.reopen()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a write: no reopening meanwhile; and if the file was swapped since the
        writer last heard of it (a read here may have reopened it), reopen and raise
        ViewSwapped instead of writing, once."""
        with self._swap_lock:
            if not self._memory and self._swapped():
                self.reopen()
            if self.generation != self._writer_told:
                self._writer_told = self.generation
                raise ViewSwapped(self.datastore.pool.db_name)
            yield

    def _swapped(self) -> bool:
        now = file_of(self.datastore.pool.db_name)
        if self._file is None:  # opened before the file existed: this is its file
            self._file = now
        return now not in (self._file, None)

    def reopen(self) -> None:
        """Open the file the path names now; the old connections close a little later."""
        with self._swap_lock:
            now = file_of(self.datastore.pool.db_name)
            if now is None or now == self._file:
                return
            old = self.datastore
            self.datastore = SQLiteDatastore(
                old.pool.db_name,
                lock_timeout=old.pool.lock_timeout,
                single_row_tracking=old.single_row_tracking,
                originator_id_type=old.originator_id_type,
            )
            self._file = now
            self.generation += 1
        closer = threading.Timer(_CLOSE_OLD_AFTER_S, old.close)
        closer.daemon = True
        closer.start()

    def _reader(self) -> sqlite3.Connection | None:
        """A read-only connection of this thread's own, for the caller-lookup hot path.

        The library's pooled transaction costs ~20 µs a query, a plain prepared read ~3 µs;
        a screen pop looks a caller up on every ring.  WAL lets it read while the follower
        writes.  None for in-memory databases, which only the pool can share.
        """
        if self._memory:
            return None
        self._follow_swap()
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is not None and self._readers.generation != self.generation:
            conn.close()
            conn = None
        if conn is None:
            conn = sqlite3.connect(
                f"file:{self.datastore.pool.db_name}?mode=ro",
                uri=True,
                check_same_thread=False,
                timeout=5,
            )
            self._readers.conn, self._readers.generation = conn, self.generation
        return conn

    def max_tracking_id(self, application_name: str) -> Any:
        self._follow_swap()
        return super().max_tracking_id(application_name)  # type: ignore[misc]
