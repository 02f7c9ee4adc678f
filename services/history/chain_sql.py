"""The event chain's tables and SQL on SQLite and PostgreSQL (the hashes: ``chain.py``).

Two tables beside the events (so a backup carries them): ``event_chain`` (PostgreSQL:
``<app>_event_chain``), one row per stored event — notification id, originator id and version,
stream hash, global hash — and ``event_chain_start``, one row: the chain's format version, when
it began, and how many events were stored before it.

**Writing.**  ``append`` runs inside the transaction that stores the events, once they are
inserted (their notification ids known): one query reads the global head and the stream heads
of the batch's originators (only a stream's first event in the batch needs its head from the
store), the hashes are computed here, and one statement inserts the batch's rows.  On
PostgreSQL this is after the library's ``LOCK TABLE <events> IN EXCLUSIVE MODE``, which every
writer takes before it inserts events (``PostgresApplicationRecorder._insert_stored_events``):
so writers take turns, each commits before the next one gets notification ids, and each reads
the head the one before it committed — one global order, however many recorder processes
write.  On SQLite the events' insert holds the file's one write lock.

**Reading.**  The events and chain rows are read as ``chain.py`` hashes them: id, topic and
state as bytes, whatever a tampered SQLite row holds (SQLite keeps any type in any column).
The verifier reads them joined (``linked_after``: each event beside its chain row's hashes) and
apart (``events_after``, ``rows_after``) only where the joined read shows a difference.

**A store written before the chain.**  ``begin``, when the store is opened, chains every event
it holds, once, in one transaction (under the same lock), and records how many: the evidence
for those events starts at that moment, not when they were recorded.  A chain that has rows
but no start record is left as it is, for the verifier to report: it is not rebuilt.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from services.history.chain import (
    FORMAT_VERSION,
    GENESIS,
    ChainFormatError,
    ChainInput,
    ChainRow,
    ChainStart,
    LinkedEvent,
    chain_input,
    first_versions,
    id_key,
    link_events,
)

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresProcessRecorder
    from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore
    from psycopg import Connection, Cursor

log = logging.getLogger(__name__)

_PAGE = 10_000  # events chained per statement when a store is migrated
# Originators per heads query on SQLite: two parameters each, within SQLite's default limit
# of 32766 (a recorder batch is at most 10 000 records).
_HEADS_CHUNK = 15_000
_KEYS_CHUNK = 500  # keys per statement when a verifier takes streams up mid-way
_LAST = 2**63 - 1


def _checked(start: ChainStart | None) -> ChainStart | None:
    if start is not None and start.format_version != FORMAT_VERSION:
        raise ChainFormatError(start.format_version)
    return start


def _log_began(backfilled: int, through: int) -> None:
    if backfilled:
        log.warning(
            "event chain begun: the %s events stored before it (notifications up to %s) are "
            "chained now; the tamper evidence for them starts at this moment",
            backfilled,
            through,
        )
    else:
        log.info("event chain begun on a store without events")


class SQLiteEventChain:
    """The chain in the history's SQLite file."""

    def __init__(self, datastore: SQLiteDatastore, events_table: str) -> None:
        self.datastore = datastore
        self.events_table = events_table
        # Any type a row may hold comes back as what is hashed (NULL as nothing).
        self._select_events = (
            "SELECT rowid, ifnull(CAST(originator_id AS BLOB), x''), "
            "ifnull(CAST(originator_version AS INTEGER), -1), "
            "ifnull(CAST(topic AS BLOB), x''), ifnull(CAST(state AS BLOB), x'') "
            f"FROM {events_table} WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self._select_rows = (
            "SELECT notification_id, ifnull(CAST(originator_id AS BLOB), x''), "
            "ifnull(CAST(originator_version AS INTEGER), -1), "
            "ifnull(CAST(stream_hash AS BLOB), x''), ifnull(CAST(global_hash AS BLOB), x'') "
            "FROM event_chain WHERE notification_id > ? AND notification_id <= ? "
            "ORDER BY notification_id LIMIT ?"
        )
        # The events with the hashes of the chain row at the same notification id, when that
        # row names the same originator and version (NULL hashes otherwise).  Columns of the
        # same affinity compared as stored: equal only if their bytes are (a tampered value of
        # another type just fails to match, and the verifier compares that page row by row).
        self._select_linked = (
            "SELECT e.rowid, ifnull(CAST(e.originator_id AS BLOB), x''), "
            "ifnull(CAST(e.originator_version AS INTEGER), -1), "
            "ifnull(CAST(e.topic AS BLOB), x''), ifnull(CAST(e.state AS BLOB), x''), "
            f"c.stream_hash, c.global_hash FROM {events_table} e "
            "LEFT JOIN event_chain c ON c.notification_id = e.rowid "
            "AND c.originator_id = e.originator_id "
            "AND c.originator_version = e.originator_version "
            "WHERE e.rowid > ? AND e.rowid <= ? ORDER BY e.rowid LIMIT ?"
        )
        self._count_rows = (
            "SELECT count(*) FROM event_chain WHERE notification_id > ? AND notification_id <= ?"
        )
        self._global_at = (
            "SELECT global_hash FROM event_chain WHERE notification_id <= ? "
            "ORDER BY notification_id DESC LIMIT 1"
        )
        # Each key's latest event at or before a notification id, and its chain row's stream
        # hash: where a verifier that starts in the middle takes a stream up.
        self._stream_before = (
            "SELECT w.column1, (SELECT c.stream_hash FROM {events} e "
            "JOIN event_chain c ON c.notification_id = e.rowid "
            "WHERE e.originator_id = w.column1 AND e.rowid <= ? "
            "ORDER BY e.rowid DESC LIMIT 1) FROM (VALUES {values}) AS w"
        ).replace("{events}", events_table)

    def create_statements(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS event_chain ("
            "notification_id INTEGER PRIMARY KEY, originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, stream_hash BLOB NOT NULL, "
            "global_hash BLOB NOT NULL)",
            "CREATE TABLE IF NOT EXISTS event_chain_start ("
            "one INTEGER PRIMARY KEY CHECK (one = 1), format_version INTEGER NOT NULL, "
            "began_at TEXT NOT NULL, backfilled_events INTEGER NOT NULL, "
            "backfilled_through INTEGER NOT NULL)",
        ]

    # -- writing, in the events' transaction ---------------------------------------------

    def append(
        self, c: SQLiteCursor, notification_ids: Sequence[int], stored: Sequence[StoredEvent]
    ) -> None:
        events = chain_input(notification_ids, stored)
        global_head, heads = self._heads(c, first_versions(events))
        # OR REPLACE: SQLite gives the notification id of a deleted last event to the next
        # one.  Its orphaned chain row is replaced, the hub keeps recording, and the verifier
        # still reports the break: the new row links to the removed one's hash.
        self._insert(c, link_events(global_head, heads, events), "INSERT OR REPLACE")

    @staticmethod
    def _insert(c: SQLiteCursor, rows: list[ChainRow], verb: str = "INSERT") -> None:
        c.executemany(f"{verb} INTO event_chain VALUES (?, CAST(? AS TEXT), ?, ?, ?)", rows)

    def _heads(self, c: SQLiteCursor, wanted: dict[bytes, int]) -> tuple[bytes, dict[bytes, bytes]]:
        """The global head and the stream heads of ``wanted`` (id key -> its first new
        version): one query for a batch of up to ``_HEADS_CHUNK`` originators."""
        global_head, heads = GENESIS, {}
        items = list(wanted.items())
        for i in range(0, max(len(items), 1), _HEADS_CHUNK):
            chunk = items[i : i + _HEADS_CHUNK]
            statement = (
                "SELECT NULL, global_hash FROM (SELECT global_hash FROM event_chain "
                "ORDER BY notification_id DESC LIMIT 1)"
            )
            if chunk:
                values = ",".join(["(?, ?)"] * len(chunk))
                statement += (
                    " UNION ALL SELECT CAST(e.originator_id AS BLOB), c.stream_hash "
                    f"FROM (VALUES {values}) AS w JOIN {self.events_table} e "
                    "ON e.originator_id = w.column1 AND e.originator_version = w.column2 "
                    "JOIN event_chain c ON c.notification_id = e.rowid"
                )
            c.execute(statement, [p for key, v in chunk for p in (key.decode(), v - 1)])
            for key, found in c.fetchall():
                if key is None:
                    global_head = found
                else:
                    heads[key] = found
        for key, version in items:
            if key not in heads:  # a gap in the versions: the latest event before
                c.execute(
                    f"SELECT c.stream_hash FROM {self.events_table} e "
                    "JOIN event_chain c ON c.notification_id = e.rowid "
                    "WHERE e.originator_id = ? AND e.originator_version < ? "
                    "ORDER BY e.originator_version DESC LIMIT 1",
                    (key.decode(), version),
                )
                row = c.fetchone()
                if row is not None:
                    heads[key] = row[0]
        return global_head, heads

    # -- a store written before the chain --------------------------------------------------

    def begin(self) -> None:
        if _checked(self.start()) is not None:
            return
        with self.datastore.transaction(commit=True) as c:
            # A write first: it takes the file's write lock, so no event is stored meanwhile.
            c.execute("DELETE FROM event_chain_start WHERE 0")
            c.execute("SELECT 1 FROM event_chain_start")
            if c.fetchone() is not None:
                return  # another process began it
            c.execute("SELECT 1 FROM event_chain LIMIT 1")
            if c.fetchone() is not None:
                log.error("the event chain has rows but no start record: not rebuilt")
                return
            c.sqlite_cursor.row_factory = None
            global_head, heads, after, count = GENESIS, {}, 0, 0
            while True:
                c.execute(self._select_events, (after, _LAST, _PAGE))
                page: list[ChainInput] = c.fetchall()
                if not page:
                    break
                rows = link_events(global_head, heads, page)
                self._insert(c, rows)
                global_head, after, count = rows[-1][4], rows[-1][0], count + len(rows)
            c.execute(
                "INSERT INTO event_chain_start VALUES (1, ?, ?, ?, ?)",
                (FORMAT_VERSION, datetime.now(UTC).isoformat(), count, after),
            )
        _log_began(count, after)

    # -- reading (the verifier) ---------------------------------------------------------------

    def start(self) -> ChainStart | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT format_version, began_at, backfilled_events, backfilled_through "
                "FROM event_chain_start"
            )
            row = c.fetchone()
        if row is None:
            return None
        return ChainStart(row[0], datetime.fromisoformat(row[1]), row[2], row[3])

    def extent(self) -> tuple[int, int]:
        """The last notification id of the events, and of the chain (0: none)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT (SELECT max(rowid) FROM {self.events_table}), "
                "(SELECT max(notification_id) FROM event_chain)"
            )
            row = c.fetchone()
        return row[0] or 0, row[1] or 0

    def events_after(self, after: int, stop: int, limit: int) -> list[ChainInput]:
        return self._read(self._select_events, (after, stop, limit))

    def rows_after(self, after: int, stop: int, limit: int) -> list[ChainRow]:
        return self._read(self._select_rows, (after, stop, limit))

    def linked_after(self, after: int, stop: int, limit: int) -> list[LinkedEvent]:
        return self._read(self._select_linked, (after, stop, limit))

    def count_rows(self, after: int, upto: int) -> int:
        return self._read(self._count_rows, (after, upto))[0][0]

    def global_at(self, notification_id: int) -> bytes:
        """The stored global hash of the last chain row at or before ``notification_id``."""
        found = self._read(self._global_at, (notification_id,))
        return bytes(found[0][0]) if found else GENESIS

    def streams_before(self, keys: Sequence[bytes], notification_id: int) -> dict[bytes, bytes]:
        """The stored stream hash of each key's latest event at or before ``notification_id``
        (keys without one left out)."""
        found: dict[bytes, bytes] = {}
        for i in range(0, len(keys), _KEYS_CHUNK):
            chunk = keys[i : i + _KEYS_CHUNK]
            statement = self._stream_before.replace("{values}", ",".join(["(?)"] * len(chunk)))
            try:
                params = [notification_id, *(k.decode() for k in chunk)]
            except UnicodeDecodeError:  # a tampered id: no head, the verifier will say
                continue
            for key, stream in self._read(statement, tuple(params)):  # type: ignore[arg-type]
                if stream is not None:
                    found[key.encode()] = bytes(stream)
        return found

    def detached(self) -> SQLiteChainReader | None:
        """What another process opens to read this chain (None: an in-memory store)."""
        if self.datastore.pool.is_sqlite_memory_mode:
            return None
        return SQLiteChainReader(self.datastore.pool.db_name, self.events_table)

    def proofs_of(self, originator_id: UUID | str) -> list[tuple[int, int, bytes, bytes]]:
        """One stream's chain rows: (version, notification id, stream hash, global hash)."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(
                "SELECT originator_version, notification_id, stream_hash, global_hash "
                "FROM event_chain WHERE originator_id = ? ORDER BY originator_version",
                (id_key(originator_id).decode(),),
            )
            return c.fetchall()

    def _read(self, statement: str, params: tuple[int, ...]) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None  # plain tuples: the verifier reads millions
            c.execute(statement, params)
            return c.fetchall()


class SQLiteChainReader:
    """The chain of a SQLite file, read from another process (the verifier's workers): a
    read-only connection of its own, the same statements as ``SQLiteEventChain``."""

    def __init__(self, path: str, events_table: str) -> None:
        self.path = path
        self.events_table = events_table

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "events_table": self.events_table}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["events_table"])  # type: ignore[misc]

    def open(self) -> _SQLiteReading:
        return _SQLiteReading(self.path, self.events_table)


class _SQLiteReading(SQLiteEventChain):
    def __init__(self, path: str, events_table: str) -> None:
        super().__init__(None, events_table)  # type: ignore[arg-type]
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)

    def _read(self, statement: str, params: tuple[int, ...]) -> list[Any]:
        return self._conn.execute(statement, params).fetchall()

    def close(self) -> None:
        self._conn.close()


class PostgresEventChain:
    """The chain in the history's PostgreSQL schema, named after its events table."""

    def __init__(self, recorder: PostgresProcessRecorder) -> None:
        self.recorder = recorder
        datastore = recorder.datastore
        is_uuid = datastore.originator_id_type == "uuid"
        prefix = recorder.events_table_name.removesuffix("_events")
        schema = Identifier(datastore.schema)
        # originator_id as hashed (chain.id_key)
        key_of = "convert_to(replace({}::text, '-', ''), 'UTF8')"
        if not is_uuid:
            key_of = "convert_to({}, 'UTF8')"
        names = {
            "chain": SQL("{0}.{1}").format(schema, Identifier(f"{prefix}_event_chain")),
            "start": SQL("{0}.{1}").format(schema, Identifier(f"{prefix}_event_chain_start")),
            "events": SQL("{0}.{1}").format(schema, Identifier(recorder.events_table_name)),
            "id_type": Identifier(datastore.originator_id_type),
            # originator_id as hashed, and back
            "key": SQL(key_of.format("originator_id")),
            "e_key": SQL(key_of.format("e.originator_id")),
            "id_of": SQL(
                "convert_from({0}, 'UTF8')::uuid" if is_uuid else "convert_from({0}, 'UTF8')"
            ),
        }

        def sql(text: str, **more: Any) -> Composed:
            return SQL(text).format(**names, **more)

        def id_of(column: str) -> Composed:
            return names["id_of"].format(SQL(column))  # type: ignore[attr-defined]

        self.create_statements = [
            sql(
                "CREATE TABLE IF NOT EXISTS {chain} (notification_id bigint PRIMARY KEY, "
                "originator_id {id_type} NOT NULL, originator_version bigint NOT NULL, "
                "stream_hash bytea NOT NULL, global_hash bytea NOT NULL)"
            ),
            sql(
                "CREATE TABLE IF NOT EXISTS {start} (one int PRIMARY KEY CHECK (one = 1), "
                "format_version int NOT NULL, began_at timestamptz NOT NULL, "
                "backfilled_events bigint NOT NULL, backfilled_through bigint NOT NULL)"
            ),
        ]
        self._heads = sql(
            "SELECT NULL::bytea, g.global_hash FROM "
            "(SELECT global_hash FROM {chain} ORDER BY notification_id DESC LIMIT 1) g "
            "UNION ALL SELECT w.key, c.stream_hash "
            "FROM unnest(%b::bytea[], %b::bigint[]) AS w(key, version) "
            "JOIN {events} e ON e.originator_id = {w_id} AND e.originator_version = w.version "
            "JOIN {chain} c ON c.notification_id = e.notification_id",
            w_id=id_of("w.key"),
        )
        self._head_before = sql(
            "SELECT c.stream_hash FROM {events} e "
            "JOIN {chain} c ON c.notification_id = e.notification_id "
            "WHERE e.originator_id = {p_id} AND e.originator_version < %s "
            "ORDER BY e.originator_version DESC LIMIT 1",
            p_id=id_of("%b"),
        )
        # A batch's rows as five arrays in one statement, as the library inserts the events
        # (an executemany costs ~30 µs a row in the client, this ~2).
        self._insert_batch = sql(
            "INSERT INTO {chain} SELECT n, {t_id}, v, s, g FROM "
            "unnest(%b::bigint[], %b::bytea[], %b::bigint[], %b::bytea[], %b::bytea[]) "
            "AS t(n, k, v, s, g)",
            t_id=id_of("t.k"),
        )
        self._select_start = sql(
            "SELECT format_version, began_at, backfilled_events, backfilled_through FROM {start}"
        )
        self._insert_start = sql("INSERT INTO {start} VALUES (1, %s, now(), %s, %s)")
        self._any_row = sql("SELECT 1 FROM {chain} LIMIT 1")
        self._extent = sql(
            "SELECT (SELECT max(notification_id) FROM {events}), "
            "(SELECT max(notification_id) FROM {chain})"
        )
        # The events table's topic and state may be NULL (the library's DDL allows it).
        self._events_after = sql(
            "SELECT notification_id, {key}, originator_version, "
            "convert_to(coalesce(topic, ''), 'UTF8'), coalesce(state, ''::bytea) "
            "FROM {events} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        )
        self._proofs_of = sql(
            "SELECT originator_version, notification_id, stream_hash, global_hash "
            "FROM {chain} WHERE originator_id = %s ORDER BY originator_version"
        )
        self._rows_after = sql(
            "SELECT notification_id, {key}, originator_version, stream_hash, global_hash "
            "FROM {chain} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        )
        # As on SQLite: the events with their chain row's hashes where it matches (same types,
        # compared as stored), NULL where it does not.
        self._linked_after = sql(
            "SELECT e.notification_id, {e_key}, e.originator_version, "
            "convert_to(coalesce(e.topic, ''), 'UTF8'), coalesce(e.state, ''::bytea), "
            "c.stream_hash, c.global_hash FROM {events} e LEFT JOIN {chain} c "
            "ON c.notification_id = e.notification_id AND c.originator_id = e.originator_id "
            "AND c.originator_version = e.originator_version "
            # The range on the chain too: else the merge join scans the chain's index from
            # its beginning for every page (quadratic over a big store).
            "AND c.notification_id > %(after)s AND c.notification_id <= %(stop)s "
            "WHERE e.notification_id > %(after)s AND e.notification_id <= %(stop)s "
            "ORDER BY e.notification_id LIMIT %(limit)s"
        )
        self._count_rows = sql(
            "SELECT count(*) FROM {chain} WHERE notification_id > %s AND notification_id <= %s"
        )
        self._global_at = sql(
            "SELECT global_hash FROM {chain} WHERE notification_id <= %s "
            "ORDER BY notification_id DESC LIMIT 1"
        )
        self._streams_before = sql(
            "SELECT w.key, (SELECT c.stream_hash FROM {events} e "
            "JOIN {chain} c ON c.notification_id = e.notification_id "
            "WHERE e.originator_id = {w_id} AND e.notification_id <= %s "
            "ORDER BY e.notification_id DESC LIMIT 1) FROM unnest(%b::bytea[]) AS w(key)",
            w_id=id_of("w.key"),
        )

    # -- writing, in the events' transaction (after the lock and the insert) --------------

    def append(
        self, conn: Connection[Any], notification_ids: Sequence[int], stored: Sequence[StoredEvent]
    ) -> None:
        events = chain_input(notification_ids, stored)
        wanted = first_versions(events)
        with conn.cursor(row_factory=tuple_row) as side:
            side.execute(self._heads, (list(wanted), [v - 1 for v in wanted.values()]))
            global_head, heads = GENESIS, {}
            for key, found in side.fetchall():
                if key is None:
                    global_head = found
                else:
                    heads[key] = found
            for key, version in wanted.items():
                if key not in heads:  # a gap in the versions: the latest event before
                    side.execute(self._head_before, (key, version))
                    row = side.fetchone()
                    if row is not None:
                        heads[key] = row[0]
            self._insert(side, link_events(global_head, heads, events))

    def _insert(self, curs: Cursor[Any], rows: list[ChainRow]) -> None:
        curs.execute(self._insert_batch, [list(column) for column in zip(*rows, strict=True)])

    # -- a store written before the chain --------------------------------------------------

    def begin(self) -> None:
        if _checked(self.start()) is not None:
            return
        with (
            self.recorder.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            self.recorder._lock_table(curs)  # the writers' lock: no event is stored meanwhile
            curs.execute(self._select_start)
            if curs.fetchone() is not None:
                return  # another process began it
            curs.execute(self._any_row)
            if curs.fetchone() is not None:
                log.error("the event chain has rows but no start record: not rebuilt")
                return
            global_head, heads, after, count = GENESIS, {}, 0, 0
            while True:
                curs.execute(self._events_after, (after, _LAST, _PAGE))
                page = curs.fetchall()
                if not page:
                    break
                rows = link_events(global_head, heads, page)
                self._insert(curs, rows)
                global_head, after, count = rows[-1][4], rows[-1][0], count + len(rows)
            curs.execute(self._insert_start, (FORMAT_VERSION, count, after))
        _log_began(count, after)

    # -- reading (the verifier) ---------------------------------------------------------------

    def start(self) -> ChainStart | None:
        row = self._read_one(self._select_start)
        return None if row is None else ChainStart(*row)

    def extent(self) -> tuple[int, int]:
        row = self._read_one(self._extent)
        assert row is not None
        return row[0] or 0, row[1] or 0

    def events_after(self, after: int, stop: int, limit: int) -> list[ChainInput]:
        return self._read(self._events_after, (after, stop, limit))

    def rows_after(self, after: int, stop: int, limit: int) -> list[ChainRow]:
        return self._read(self._rows_after, (after, stop, limit))

    def linked_after(self, after: int, stop: int, limit: int) -> list[LinkedEvent]:
        return self._read(self._linked_after, {"after": after, "stop": stop, "limit": limit})

    def count_rows(self, after: int, upto: int) -> int:
        return self._read(self._count_rows, (after, upto))[0][0]

    def global_at(self, notification_id: int) -> bytes:
        """The stored global hash of the last chain row at or before ``notification_id``."""
        found = self._read(self._global_at, (notification_id,))
        return bytes(found[0][0]) if found else GENESIS

    def streams_before(self, keys: Sequence[bytes], notification_id: int) -> dict[bytes, bytes]:
        """The stored stream hash of each key's latest event at or before ``notification_id``
        (keys without one left out)."""
        found: dict[bytes, bytes] = {}
        for i in range(0, len(keys), _KEYS_CHUNK):
            chunk = list(keys[i : i + _KEYS_CHUNK])
            try:
                rows = self._read(self._streams_before, (notification_id, chunk))  # type: ignore[arg-type]
            except psycopg.DataError:  # a tampered id that is no UUID: the verifier will say
                continue
            for key, stream in rows:
                if stream is not None:
                    found[bytes(key)] = bytes(stream)
        return found

    def detached(self) -> PostgresChainReader:
        """What another process opens to read this chain: the connection's settings and the
        statements as text."""
        kwargs = {
            k: v
            for k, v in self.recorder.datastore.pool.kwargs.items()
            if k in ("dbname", "host", "port", "user", "password")
        }
        with self.recorder.datastore.get_connection() as conn:
            statements = {
                name: getattr(self, name).as_string(conn)
                for name in (
                    "_linked_after",
                    "_count_rows",
                    "_global_at",
                    "_streams_before",
                    "_events_after",
                    "_rows_after",
                )
            }
        return PostgresChainReader(kwargs, statements)

    def proofs_of(self, originator_id: UUID | str) -> list[tuple[int, int, bytes, bytes]]:
        """One stream's chain rows: (version, notification id, stream hash, global hash)."""
        with self.recorder.datastore.get_connection() as conn:
            with conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(self._proofs_of, (originator_id,))
                return [(v, n, bytes(s), bytes(g)) for v, n, s, g in curs.fetchall()]

    def _read_one(self, statement: Composed) -> Any:
        with self.recorder.datastore.get_connection() as conn:
            with conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(statement)
                return curs.fetchone()

    def _read(self, statement: Composed, params: Any) -> list[Any]:
        with self.recorder.datastore.get_connection() as conn:
            with conn.cursor(row_factory=tuple_row, binary=True) as curs:
                curs.execute(statement, params)
                return curs.fetchall()


class PostgresChainReader:
    """The chain in PostgreSQL, read from another process (the verifier's workers): a
    connection of its own, the statements ``PostgresEventChain`` rendered as text."""

    def __init__(self, connect: dict[str, Any], statements: dict[str, str]) -> None:
        self.connect = connect
        self.statements = statements

    def open(self) -> _PostgresReading:
        return _PostgresReading(self.connect, self.statements)


class _PostgresReading(PostgresEventChain):
    def __init__(self, connect: dict[str, Any], statements: dict[str, str]) -> None:
        self._conn = psycopg.connect(**connect, autocommit=True)
        for name, text in statements.items():
            setattr(self, name, text)

    def _read(self, statement: Any, params: Any) -> list[Any]:
        with self._conn.cursor(row_factory=tuple_row, binary=True) as curs:
            curs.execute(statement, params)
            return curs.fetchall()

    def close(self) -> None:
        self._conn.close()
