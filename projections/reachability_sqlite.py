"""The reachability view on SQLite: a database file of its own beside the views file (which a
timeline rebuild may swap), so neither waits for the other's writer lock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteTrackingRecorder

from projections.reachability import AddressFacts, CustomerFacts, MessageState
from projections.reachability_store import (
    FACT_COLUMNS,
    ReachabilityView,
    ViewFromTheFuture,
    chunks,
    fact_values,
    facts_of,
)

# Bumped when the tables change shape: an older view is dropped and rebuilt from the store.
SCHEMA = 1
_TABLES = ("customers", "addresses", "messages", "skipped")
_FACTS = ", ".join(FACT_COLUMNS)
_CUSTOMERS = "SELECT customer_id, preferred_channel, consent, survivor_id FROM customers"
_FACT_TYPES = {"failure": "TEXT", "reply_delays": "TEXT NOT NULL DEFAULT ''"}


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class SQLiteReachabilityView(ReachabilityView, SQLiteTrackingRecorder):
    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("CREATE TABLE IF NOT EXISTS view_schema (version INTEGER NOT NULL)")
            c.execute("SELECT version FROM view_schema")
            row = c.fetchone()
            if row is not None and row[0] > SCHEMA:
                raise ViewFromTheFuture(row[0], SCHEMA)
            if row is None or row[0] != SCHEMA:
                for table in _TABLES:
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tracking'")
                if c.fetchone():
                    self._forget_position(c)
                c.execute("DELETE FROM view_schema")
                c.execute("INSERT INTO view_schema VALUES (?)", (SCHEMA,))
        super().create_table()

    def construct_create_table_statements(self) -> list[str]:
        facts = ", ".join(
            f"{name} {_FACT_TYPES.get(name, 'REAL' if name.endswith('_at') else 'INTEGER')}"
            for name in FACT_COLUMNS
        )
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS customers (customer_id BLOB PRIMARY KEY, "
            "preferred_channel TEXT, consent TEXT NOT NULL DEFAULT '{}', survivor_id BLOB"
            ") WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS customers_by_survivor ON customers (survivor_id) "
            "WHERE survivor_id IS NOT NULL",
            "CREATE TABLE IF NOT EXISTS addresses (customer_id BLOB NOT NULL, "
            f"channel TEXT NOT NULL, address TEXT NOT NULL, {facts}, "
            "PRIMARY KEY (customer_id, channel, address)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS messages (message_ref TEXT PRIMARY KEY, "
            "customer_id BLOB NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL, "
            "status TEXT) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS skipped (notification_id INTEGER PRIMARY KEY, "
            "reason TEXT NOT NULL, skipped_at TEXT NOT NULL DEFAULT (datetime('now')))",
        ]

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.row_factory = None  # plain tuples: a third of the cost of sqlite3.Row
            yield c

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as c:
            c.row_factory = None
            yield c

    def skipped(self) -> list[tuple[int, str]]:
        with self._reading() as c:
            c.execute("SELECT notification_id, reason FROM skipped ORDER BY notification_id")
            return [(r[0], r[1]) for r in c.fetchall()]

    def _key(self, customer_id: UUID) -> bytes:
        return customer_id.bytes  # 16 bytes: a smaller key, and 8 times cheaper than str()

    def _customers(self, c: Any, ids: list[UUID]) -> dict[UUID, CustomerFacts]:
        found: dict[UUID, CustomerFacts] = {}
        for chunk in chunks([i.bytes for i in ids]):
            c.execute(f"{_CUSTOMERS} WHERE customer_id IN ({_marks(len(chunk))})", chunk)
            for row in c.fetchall():
                customer = _customer(row)
                found[customer.customer_id] = customer
        return found

    def _people(self, c: Any, keys: list[bytes]) -> list[CustomerFacts]:
        found: list[CustomerFacts] = []
        for chunk in chunks(keys):
            marks = _marks(len(chunk))
            c.execute(
                f"{_CUSTOMERS} WHERE customer_id IN ({marks}) OR survivor_id IN ({marks})",
                chunk + chunk,
            )
            found += [_customer(row) for row in c.fetchall()]
        return found

    def _facts(self, c: Any, keys: dict[bytes, UUID]) -> dict[bytes, list[AddressFacts]]:
        found: dict[bytes, list[AddressFacts]] = {}
        for chunk in chunks(list(keys)):
            c.execute(
                f"SELECT customer_id, channel, address, {_FACTS} FROM addresses "
                f"WHERE customer_id IN ({_marks(len(chunk))})",
                chunk,
            )
            for r in c.fetchall():
                key = r[0]
                facts = facts_of(keys[key], r[1], r[2], r[3:])
                if key in found:
                    found[key].append(facts)
                else:
                    found[key] = [facts]
        return found

    def _messages(self, c: Any, refs: list[str]) -> dict[str, MessageState]:
        found: dict[str, MessageState] = {}
        for chunk in chunks(refs):
            c.execute(
                "SELECT message_ref, customer_id, channel, address, status FROM messages "
                f"WHERE message_ref IN ({_marks(len(chunk))})",
                chunk,
            )
            for ref, cid, channel, address, status in c.fetchall():
                found[ref] = MessageState(ref, UUID(bytes=cid), channel, address, status)
        return found

    def _write(
        self,
        c: Any,
        addresses: list[AddressFacts],
        messages: list[MessageState],
        customers: list[CustomerFacts],
    ) -> None:
        c.executemany(
            f"INSERT OR REPLACE INTO addresses VALUES ({_marks(3 + len(FACT_COLUMNS))})",
            [(f.customer_id.bytes, f.channel, f.address, *fact_values(f)) for f in addresses],
        )
        c.executemany(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?)",
            [
                (m.message_ref, m.customer_id.bytes, m.channel, m.address, m.status)
                for m in messages
            ],
        )
        c.executemany(
            "INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?)",
            [
                (
                    x.customer_id.bytes,
                    x.preferred_channel,
                    json.dumps(x.consent),
                    x.survivor_id.bytes if x.survivor_id else None,
                )
                for x in customers
            ],
        )

    def _write_skipped(self, c: Any, skipped: list[tuple[int, str]]) -> None:
        c.executemany(
            "INSERT OR REPLACE INTO skipped (notification_id, reason) VALUES (?, ?)", skipped
        )

    def _erase(self, c: Any, keys: list[Any]) -> None:
        c.execute("PRAGMA secure_delete=ON")  # the freed pages zeroed, not left readable
        marks = _marks(len(keys))
        for table in ("addresses", "messages", "customers"):
            c.execute(f"DELETE FROM {table} WHERE customer_id IN ({marks})", keys)
        c.execute(f"UPDATE customers SET survivor_id = NULL WHERE survivor_id IN ({marks})", keys)

    def _clear(self, c: Any) -> None:
        for table in _TABLES:
            c.execute(f"DELETE FROM {table}")
        self._forget_position(c)

    def _forget_position(self, c: Any) -> None:
        c.execute(
            "DELETE FROM tracking WHERE application_name != ?", (self.table_migration_identifier,)
        )


def _customer(row: Any) -> CustomerFacts:
    cid, preferred, consent, survivor = row
    return CustomerFacts(
        UUID(bytes=cid),
        preferred,
        json.loads(consent),
        UUID(bytes=survivor) if survivor else None,
    )
