"""A rebuild of the PostgreSQL timeline view in a schema of its own, swapped in by renames.

The new tables (the view's own statements, in the schema ``<schema>_timeline_rebuild``) are
loaded on one connection in transactions of a hundred thousand events with asynchronous
commit, their secondary indexes made after the load and the planner's statistics taken.  A
follower then brings them up to the newest event through the live path.  The swap is one
transaction: it locks the serving view's tracking table (its follower waits), catches the new
tables up to the newest event once more, drops the old tables and moves the new ones into the
view's schema.  Readers see the old view until the commit and the new one after it; the
waiting follower's batch then fails, and it continues from the new view's position, which is
at least its own (projections/follower.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from contracts.errors import ConfigError
from projections.directory import Erased, Merged, Unmerged
from projections.timeline_postgres import INDEXES, TABLES, BatchRows, PostgresTimelineView

log = logging.getLogger(__name__)

_COMMIT_EVERY = 100_000  # events per load transaction
_LOCK_KEY = 727275  # pg_advisory_lock: one rebuild of the view at a time
# What a batch of events may read through a secondary index while it is applied: a merge
# moves rows by owner and by customer.  The first such batch of a load makes them.
_NEEDED_BY_MERGES = (
    "timeline_entries_by_owner",
    "timeline_addresses_by_customer",
    "timeline_conversations_by_owner",
)


class RebuildRunning(ConfigError):
    def __init__(self) -> None:
        super().__init__("another rebuild of the view is running; wait for it to finish")


class PostgresViewBuild:
    """The view's tables built anew beside the serving ones (see the module)."""

    prepare = staticmethod(BatchRows.of)

    def __init__(self, view: PostgresTimelineView) -> None:
        self.view = view
        self.schema = f"{view.datastore.schema}_timeline_rebuild"
        datastore = copy.copy(view.datastore)  # the same pool, another schema
        datastore.__class__ = _SharedPool
        datastore.schema = self.schema
        self._hold = view.datastore.get_connection()
        self.conn = self._hold.__enter__()
        self.cursor = self.conn.cursor()
        self.cursor.execute("SELECT pg_try_advisory_lock(%s) AS locked", (_LOCK_KEY,))
        if not self.cursor.fetchone()["locked"]:
            self._release()
            raise RebuildRunning
        self._swapped = False
        try:
            self._start(datastore)
        except BaseException:
            self.discard()
            raise

    def _start(self, datastore: PostgresDatastore) -> None:
        self.cursor.execute(
            SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(self.schema))
        )
        self.cursor.execute(SQL("CREATE SCHEMA {0}").format(Identifier(self.schema)))
        self.fresh = type(self.view)(datastore, tracking_table_name=self.view.tracking_table_name)
        self.fresh.create_table()
        self.deferred = list(INDEXES)
        for name in self.deferred:
            self.cursor.execute(
                SQL("DROP INDEX {0}.{1}").format(Identifier(self.schema), Identifier(name))
            )
        self.cursor.execute("SET synchronous_commit = off")
        # The load's transaction waits while the next batch is read and decoded.
        self.cursor.execute("SET idle_in_transaction_session_timeout = 0")
        self.cursor.execute("BEGIN")
        self._since_commit = 0

    # -- the load ------------------------------------------------------------------------------

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
            c.execute("ROLLBACK TO SAVEPOINT batch")
            c.execute("RELEASE SAVEPOINT batch")
            raise
        c.execute("RELEASE SAVEPOINT batch")
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
        statements = self.fresh.index_statements()
        for name in [n for n in names if n in self.deferred]:
            self.cursor.execute(statements[name])
            self.deferred.remove(name)

    def loaded(self) -> PostgresTimelineView:
        """The load is complete: the indexes made, the statistics taken; the new view."""
        self._make_indexes(list(self.deferred))
        self.cursor.execute("COMMIT")
        self.cursor.execute("SET synchronous_commit = on")
        for table in self._tables(self.schema):
            self.cursor.execute(SQL("ANALYZE {0}.{1}").format(Identifier(self.schema), table))
        return self.fresh

    # -- the swap ------------------------------------------------------------------------------

    def swap(self, catch_up: Callable[[], Any]) -> None:
        """One transaction: the serving view's follower held, the new tables caught up and
        moved in place of the old ones."""
        old = self.view.datastore.schema
        tracking = Identifier(self.view.tracking_table_name)
        c = self.cursor
        c.execute("BEGIN")
        try:
            c.execute("SET LOCAL lock_timeout = '30s'")
            c.execute(
                SQL("LOCK TABLE {0}.{1} IN SHARE ROW EXCLUSIVE MODE").format(
                    Identifier(old), tracking
                )
            )
            catch_up()  # on the new view's own connection, into the new schema
            for table in self._tables(old):
                c.execute(SQL("DROP TABLE {0}.{1}").format(Identifier(old), table))
            for table in self._tables(self.schema):
                c.execute(
                    SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}").format(
                        Identifier(self.schema), table, Identifier(old)
                    )
                )
            c.execute(SQL("DROP SCHEMA {0}").format(Identifier(self.schema)))
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        self._swapped = True
        log.info("timeline view: the rebuilt tables are in place")
        self._release()

    def _tables(self, schema: str) -> list[Identifier]:
        """The view's tables (and its tracking) in ``schema``, as they exist there."""
        names = [
            *(f"timeline_{n}" for n in TABLES),
            "timeline_view_schema",
            self.view.tracking_table_name,
        ]
        self.cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = ANY(%s)",
            (schema, names),
        )
        found = {row["table_name"] for row in self.cursor.fetchall()}
        return [Identifier(n) for n in names if n in found]

    def discard(self) -> None:
        """Give up the new tables (a failed rebuild): the old ones stay in use."""
        if self._swapped:  # failed after the swap: the new tables are the ones in use
            self._release()
            return
        with contextlib.suppress(Exception):
            if not self.conn.closed:
                self.cursor.execute("ROLLBACK")
                self.cursor.execute(
                    SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(self.schema))
                )
        self._release()

    def _release(self) -> None:
        """Unlock, and close the load's connection (its session settings are the load's):
        the pool opens another."""
        with contextlib.suppress(Exception):
            self.cursor.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self._hold.__exit__(None, None, None)


class _SharedPool(PostgresDatastore):
    """A copy of the serving view's datastore in another schema: its pool is the view's, so
    it must not close it (the library's datastore closes its pool when collected)."""

    def close(self) -> None:
        pass
