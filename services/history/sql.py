"""Process recorders that commit, in ONE transaction: new events, Kafka offsets and provider refs.

The library's process recorders take one ``tracking`` per insert.  A Kafka batch
spans several partitions, and dedupe needs the provider reference index written
atomically with the events, so these subclasses accept two more keyword arguments
(passed through ``Application.save(**kwargs)``):

- ``trackings``: ``Tracking(f"kafka:{topic}:{partition}", next_offset)`` per partition.
  The tracking table is monotonic, so replaying an offset already committed raises
  ``IntegrityError`` and the whole batch is rolled back.
- ``provider_refs``: ``(dedupe_key, customer_id)`` pairs.  The key is unique, so a
  provider delivery recorded twice (two racing consumers, say) also rolls back.
- ``new_identities``: ``(identity key, customer_id)`` for people seen for the first time (or
  an address linked for the first time).  The key is unique: two racing first contacts of
  one person roll one batch back, which is then recorded on the other's customer.
- ``moved_identities``: ``(identity key, customer_id)`` that now lead elsewhere (a merge, an
  unmerge).
- ``skipped``: ``SkippedEvent`` records of stored events a follower of the log (the desk)
  could not apply and moved past, written with its tracking position: a skip is never silent.

The identities table (identity key -> the customer its contacts are recorded on) is what
``CustomerHistory`` resolves every contact with: written only with the events that change it.

Every stored event is also chained by hash, in the same transaction (``chain_sql.py``): the
recorders' ``chain`` is what ``switchboard audit verify`` reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from projections.pg_arrays import as_columns
from services.history.chain_sql import PostgresEventChain, SQLiteEventChain

_CHUNK = 500
_MAX_REASON_CHARS = 1000


def hashed(identity_key: str) -> str:
    """How an identity key is stored: its SHA-256, not the address itself (the table has to
    outlive an erasure and be in backups; only someone who has the address finds its row)."""
    return hashlib.sha256(identity_key.encode()).hexdigest()


def _is_hashed(key: str) -> bool:
    return len(key) == 64 and all(ch in "0123456789abcdef" for ch in key)


@dataclass(frozen=True)
class SkippedEvent:
    """A stored event the follower ``follower`` could not apply, and why; it moved past it."""

    follower: str
    notification_id: int
    reason: str
    skipped_at: datetime | None = None


def _storable(reason: str) -> str:
    # PostgreSQL's text holds no NUL, and an exception's text may quote the event that failed.
    return reason.replace("\x00", "\ufffd")[:_MAX_REASON_CHARS]


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class SQLiteHistoryRecorder(SQLiteProcessRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        # Before the library's __init__, which builds the create statements (ours among them).
        self.chain = SQLiteEventChain(datastore, kwargs.get("events_table_name", "stored_events"))
        super().__init__(datastore, **kwargs)

    def create_table(self) -> None:
        super().create_table()
        self.chain.begin()  # a store written before the chain is chained once, now
        self._hash_plain_identities()

    def _hash_plain_identities(self) -> None:
        """A store written before identity keys were hashed: hash them, once (a marker row
        says it was done, so opening the store does not scan the table again)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute("SELECT 1 FROM identities_hashed LIMIT 1")
            if c.fetchone() is not None:
                return
            c.execute(
                "SELECT key, customer_id FROM identities "
                "WHERE length(key) != 64 OR key GLOB '*[^0-9a-f]*'"
            )
            plain = [(row[0], row[1]) for row in c.fetchall() if not _is_hashed(row[0])]
            if plain:
                c.execute("PRAGMA secure_delete=ON")
                c.executemany("DELETE FROM identities WHERE key = ?", [(k,) for k, _ in plain])
                c.executemany(
                    "INSERT OR IGNORE INTO identities VALUES (?, ?)",
                    [(hashed(k), i) for k, i in plain],
                )
            c.execute("INSERT INTO identities_hashed VALUES (1)")

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements += self.chain.create_statements()
        statements.append(
            "CREATE TABLE IF NOT EXISTS provider_refs ("
            "ref TEXT PRIMARY KEY, customer_id TEXT NOT NULL) WITHOUT ROWID"
        )
        statements.append(
            "CREATE TABLE IF NOT EXISTS identities ("
            "key TEXT PRIMARY KEY, customer_id TEXT NOT NULL) WITHOUT ROWID"
        )
        statements.append("CREATE TABLE IF NOT EXISTS identities_hashed (done INTEGER NOT NULL)")
        statements.append(
            "CREATE TABLE IF NOT EXISTS skipped_events (follower TEXT NOT NULL, "
            "notification_id INTEGER NOT NULL, reason TEXT NOT NULL, skipped_at TEXT NOT NULL, "
            "PRIMARY KEY (follower, notification_id)) WITHOUT ROWID"
        )
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        refs: Sequence[tuple[str, str]] = kwargs.get("provider_refs") or ()
        if refs:
            c.executemany("INSERT INTO provider_refs VALUES (?, ?)", refs)
        new: Sequence[tuple[str, UUID]] = kwargs.get("new_identities") or ()
        if new:
            c.executemany(
                "INSERT INTO identities VALUES (?, ?)", [(hashed(k), i.hex) for k, i in new]
            )
        moved: Sequence[tuple[str, UUID]] = kwargs.get("moved_identities") or ()
        if moved:
            c.executemany(
                "INSERT INTO identities VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET customer_id = excluded.customer_id",
                [(hashed(k), i.hex) for k, i in moved],
            )
        erased: Sequence[UUID] = kwargs.get("erased_identities") or ()
        if erased:
            # An erased person's addresses: gone, and their pages overwritten.
            c.execute("PRAGMA secure_delete=ON")
            marks = ",".join("?" * len(erased))
            c.execute(
                f"DELETE FROM identities WHERE customer_id IN ({marks})", [i.hex for i in erased]
            )
        for tracking in kwargs.get("trackings") or ():
            self._insert_tracking(c, tracking)
        skipped: Sequence[SkippedEvent] = kwargs.get("skipped") or ()
        if skipped:
            now = datetime.now(UTC).isoformat()
            c.executemany(
                "INSERT OR REPLACE INTO skipped_events VALUES (?, ?, ?, ?)",
                [(k.follower, k.notification_id, _storable(k.reason), now) for k in skipped],
            )
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        if stored_events:
            assert notification_ids is not None
            self.chain.append(c, notification_ids, stored_events)
        return notification_ids

    def skipped_events(self, follower: str) -> list[SkippedEvent]:
        """The stored events ``follower`` moved past without applying them, oldest first."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT notification_id, reason, skipped_at FROM skipped_events "
                "WHERE follower = ? ORDER BY notification_id",
                (follower,),
            )
            return [
                SkippedEvent(follower, row[0], row[1], datetime.fromisoformat(row[2]))
                for row in c.fetchall()
            ]

    def identities(self, keys: Sequence[str]) -> dict[str, UUID]:
        """The customer each of these identity keys leads to (keys nobody has are left out)."""
        found: dict[str, UUID] = {}
        by_hash = {hashed(k): k for k in keys}
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(list(by_hash)):
                marks = ",".join("?" * len(chunk))
                c.execute(f"SELECT key, customer_id FROM identities WHERE key IN ({marks})", chunk)
                found.update((by_hash[row[0]], UUID(row[1])) for row in c.fetchall())
        return found

    def has_identities(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT 1 FROM identities LIMIT 1")
            return c.fetchone() is not None

    def backfill_identities(self, rows: Sequence[tuple[str, UUID]]) -> None:
        """Identities of customers stored before the table existed; the first one wins."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                "INSERT OR IGNORE INTO identities VALUES (?, ?)",
                [(hashed(k), i.hex) for k, i in rows],
            )

    def existing_originators(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these aggregates have been created (one query instead of one each)."""
        found: set[UUID] = set()
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks([i.hex for i in ids]):
                marks = ",".join("?" * len(chunk))
                c.execute(
                    f"SELECT originator_id FROM {self.events_table_name} "
                    f"WHERE originator_version = 1 AND originator_id IN ({marks})",
                    list(chunk),
                )
                found.update(UUID(row[0]) for row in c.fetchall())
        return found

    def known_provider_refs(self, refs: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(refs):
                marks = ",".join("?" * len(chunk))
                c.execute(f"SELECT ref FROM provider_refs WHERE ref IN ({marks})", list(chunk))
                found.update(row[0] for row in c.fetchall())
        return found


class PostgresHistoryRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.refs_table_name = self.events_table_name.removesuffix("_events") + "_provider_refs"
        table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.refs_table_name)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (ref text PRIMARY KEY, customer_id uuid NOT NULL)"
            ).format(table)
        )
        # One statement of two arrays, not an executemany (~30 µs a row in the client).
        self._insert_refs = SQL(
            "INSERT INTO {0} SELECT * FROM unnest(%b::text[], %b::uuid[])"
        ).format(table)
        identities = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema),
            Identifier(self.events_table_name.removesuffix("_events") + "_identities"),
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (key text PRIMARY KEY, customer_id uuid NOT NULL)"
            ).format(identities)
        )
        self._insert_identity = SQL(
            "INSERT INTO {0} SELECT * FROM unnest(%b::text[], %b::uuid[])"
        ).format(identities)
        self._move_identity = SQL(
            "INSERT INTO {0} VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET customer_id = excluded.customer_id"
        ).format(identities)
        self._backfill_identity = SQL(
            "INSERT INTO {0} VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"
        ).format(identities)
        self._select_identities = SQL(
            "SELECT key, customer_id FROM {0} WHERE key = ANY(%b::text[])"
        ).format(identities)
        self._any_identity = SQL("SELECT 1 FROM {0} LIMIT 1").format(identities)
        self._select_all_identities = SQL(
            "SELECT key, customer_id FROM {0} WHERE key !~ '^[0-9a-f]{{64}}$'"
        ).format(identities)
        self._delete_identity = SQL("DELETE FROM {0} WHERE key = %s").format(identities)
        marker = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema),
            Identifier(self.events_table_name.removesuffix("_events") + "_identities_hashed"),
        )
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {0} (done int NOT NULL)").format(marker)
        )
        self._identities_hashed = SQL("SELECT 1 FROM {0} LIMIT 1").format(marker)
        self._mark_identities_hashed = SQL("INSERT INTO {0} VALUES (1)").format(marker)
        self._erase_identities = SQL("DELETE FROM {0} WHERE customer_id = ANY(%s)").format(
            identities
        )
        skipped = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema),
            Identifier(self.events_table_name.removesuffix("_events") + "_skipped_events"),
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (follower text NOT NULL, "
                "notification_id bigint NOT NULL, reason text NOT NULL, "
                "skipped_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (follower, notification_id))"
            ).format(skipped)
        )
        self._insert_skipped = SQL(
            "INSERT INTO {0} (follower, notification_id, reason) VALUES (%s, %s, %s) "
            "ON CONFLICT (follower, notification_id) DO UPDATE SET reason = excluded.reason"
        ).format(skipped)
        self._select_skipped = SQL(
            "SELECT notification_id, reason, skipped_at FROM {0} WHERE follower = %s "
            "ORDER BY notification_id"
        ).format(skipped)
        self._select_refs = SQL("SELECT ref FROM {0} WHERE ref = ANY(%b::text[])").format(table)
        self._select_existing = SQL(
            "SELECT originator_id FROM {0}.{1} WHERE originator_version = 1 "
            "AND originator_id = ANY(%s)"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.chain = PostgresEventChain(self)
        self.sql_create_statements += self.chain.create_statements
        # The library's insert takes an array of a composite type, which psycopg writes as
        # text in Python, a quarter of the recorder's CPU on a batch; one array per column is
        # written by its C dumpers.  Same rows, same order, same RETURNING.
        self._insert_columns = SQL(
            "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{2}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            Identifier(self.datastore.schema),
            Identifier(self.events_table_name),
            SQL(self.datastore.originator_id_type),
        )

    def create_table(self) -> None:
        super().create_table()
        self.chain.begin()  # a store written before the chain is chained once, now
        self._hash_plain_identities()

    def _hash_plain_identities(self) -> None:
        """A store written before identity keys were hashed: hash them, once (a marker row
        says it was done, so opening the store does not scan the table again)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._identities_hashed)
            if curs.fetchone() is not None:
                return
            curs.execute(self._select_all_identities)
            rows = curs.fetchall()
            plain = [(r["key"], r["customer_id"]) for r in rows if not _is_hashed(r["key"])]
            if plain:
                curs.executemany(self._delete_identity, [(k,) for k, _ in plain])
                curs.executemany(self._backfill_identity, [(hashed(k), i) for k, i in plain])
            curs.execute(self._mark_identities_hashed)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # As the library's PostgresApplicationRecorder._insert_stored_events: lock the table
        # (commit order = notification order), NOTIFY its channel, insert.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_columns,
            (
                [s.originator_id for s in stored_events],
                [s.originator_version for s in stored_events],
                [s.topic for s in stored_events],
                [s.state for s in stored_events],
            ),
        )

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The library calls this in the events' transaction, after LOCK TABLE and the insert:
        # the chain's heads are read and its rows written while no other writer can store.
        notification_ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if notification_ids:
            self.chain.append(curs.connection, notification_ids, stored_events)
        return notification_ids

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Tracking first, on this cursor (it fetches the upsert's RETURNING row); the refs on
        # a cursor of their own: in pipeline mode a fetch after an executemany on the same
        # cursor reads the executemany's status instead of the row.
        trackings: Sequence[Tracking] = kwargs.get("trackings") or ()
        for tracking in trackings:
            self._insert_tracking(curs, tracking)
        refs: Sequence[tuple[str, Any]] = kwargs.get("provider_refs") or ()
        new: Sequence[tuple[str, UUID]] = kwargs.get("new_identities") or ()
        moved: Sequence[tuple[str, UUID]] = kwargs.get("moved_identities") or ()
        skipped: Sequence[SkippedEvent] = kwargs.get("skipped") or ()
        erased: Sequence[UUID] = kwargs.get("erased_identities") or ()
        if refs or new or moved or skipped or erased:
            with curs.connection.cursor() as side:
                if erased:
                    side.execute(self._erase_identities, (list(erased),))
                if refs:
                    side.execute(self._insert_refs, as_columns(refs, 2))
                if new:
                    side.execute(
                        self._insert_identity, as_columns([(hashed(k), i) for k, i in new], 2)
                    )
                if moved:
                    side.executemany(self._move_identity, [(hashed(k), i) for k, i in moved])
                if skipped:
                    side.executemany(
                        self._insert_skipped,
                        [(k.follower, k.notification_id, _storable(k.reason)) for k in skipped],
                    )
        super()._insert_events(curs, stored_events, **kwargs)

    def skipped_events(self, follower: str) -> list[SkippedEvent]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_skipped, (follower,))
            return [SkippedEvent(follower, **row) for row in curs.fetchall()]

    def identities(self, keys: Sequence[str]) -> dict[str, UUID]:
        found: dict[str, UUID] = {}
        by_hash = {hashed(k): k for k in keys}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            for chunk in _chunks(list(by_hash)):
                curs.execute(self._select_identities, (list(chunk),), prepare=True)
                found.update((by_hash[row["key"]], row["customer_id"]) for row in curs.fetchall())
        return found

    def has_identities(self) -> bool:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._any_identity)
            return curs.fetchone() is not None

    def backfill_identities(self, rows: Sequence[tuple[str, UUID]]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(self._backfill_identity, [(hashed(k), i) for k, i in rows])

    def existing_originators(self, ids: Sequence[UUID]) -> set[UUID]:
        found: set[UUID] = set()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            for chunk in _chunks(list(ids)):
                curs.execute(self._select_existing, (list(chunk),), prepare=True)
                found.update(row["originator_id"] for row in curs.fetchall())
        return found

    def known_provider_refs(self, refs: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            for chunk in _chunks(refs):
                curs.execute(self._select_refs, (list(chunk),), prepare=True)
                found.update(row["ref"] for row in curs.fetchall())
        return found
