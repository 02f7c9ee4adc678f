"""Group commit of access-log entries: a request's ``record`` returns once its entries are
committed, together with those of every other request that came meanwhile.

Requests queue their entries; one writer thread takes everything queued, appends it in one
transaction (one fsync on SQLite, one round trip on PostgreSQL) and wakes the requests
(``call_soon_threadsafe``, once per event loop and batch).  No timer: while one batch commits
the next gathers, so a batch is as big as the load makes it, and the event loop never waits
for a disk or a server.  (Committing on the event loop itself was tried for SQLite: no thread
hop, but the loop stood still for every fsync, and in the same runs it answered fewer lookups.)
A failed append fails every request of its batch with ``AccessLogUnavailable``: nothing is
answered that is not committed.  The thread starts with the first read and ends after
``idle_seconds`` without one, closing its connection.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from services.audit.access_log import AccessEntry, AccessLog, AccessLogUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 5000
IDLE_SECONDS = 30.0


class GroupCommit:
    """The access log's writer for one API (see the module's docstring)."""

    def __init__(
        self,
        access_log: AccessLog,
        *,
        max_batch: int = MAX_BATCH,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.log = access_log
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[tuple[Sequence[AccessEntry], Any, asyncio.Future]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def record(self, entries: Sequence[AccessEntry]) -> None:
        """Return once ``entries`` are committed; ``AccessLogUnavailable`` if they were not."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._lock:  # the writer may be deciding to end: one of us starts the next
            self._queue.put((entries, loop, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
                self._thread.start()
        await done

    def _write(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        self.log.close()
                        return
                continue
            batch, count = [first], len(first[0])
            while count < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                count += len(item[0])
            error = self._append(
                [entry for entries, _, _ in batch for entry in entries], len(batch)
            )
            waiting: dict[Any, list[asyncio.Future]] = {}
            for _, loop, done in batch:
                waiting.setdefault(loop, []).append(done)
            for loop, futures in waiting.items():
                with suppress(RuntimeError):  # that loop has closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle, futures, error)

    def _append(self, entries: list[AccessEntry], requests: int) -> Exception | None:
        try:
            self.log.append(entries)
        except Exception as e:
            log.error("access log: %d reads refused (503): %s", requests, e)
            return e if isinstance(e, AccessLogUnavailable) else AccessLogUnavailable(str(e))
        return None


def _settle(futures: list[asyncio.Future], error: Exception | None) -> None:
    for done in futures:
        if not done.done():  # a request that was cancelled (its client left) waits no more
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
