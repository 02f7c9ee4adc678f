"""The reachability view on PostgreSQL: tables ``reachability_*`` beside the event store, with
their own tracking table (``reachability_tracking``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from projections.pg_arrays import as_columns
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
_FACT_TYPES = {"failure": "text", "reply_delays": "text NOT NULL DEFAULT ''"}
_LOCK = 727275  # the advisory lock under which one process at a time decides about the schema


def _column_type(name: str) -> str:
    """The PostgreSQL type of a fact column (as created below)."""
    return "text" if name in _FACT_TYPES else "double precision" if name.endswith("_at") else "int"


class PostgresReachabilityView(ReachabilityView, PostgresTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = self.datastore.schema
        self._t = {
            name: SQL("{0}.{1}")
            .format(Identifier(schema), Identifier(f"reachability_{name}"))
            .as_string(None)
            for name in (*_TABLES, "view_schema")
        }
        self._tracking = (
            SQL("{0}.{1}")
            .format(Identifier(schema), Identifier(self.tracking_table_name))
            .as_string(None)
        )
        t = self._t
        facts = ", ".join(
            f"{name} {_FACT_TYPES.get(name, _column_type(name))}" for name in FACT_COLUMNS
        )
        self.sql_create_statements += [
            SQL(statement)
            for statement in (
                f"CREATE TABLE IF NOT EXISTS {t['customers']} (customer_id uuid PRIMARY KEY, "
                "preferred_channel text, consent jsonb NOT NULL DEFAULT '{}', survivor_id uuid)",
                "CREATE INDEX IF NOT EXISTS reachability_customers_by_survivor ON "
                f"{t['customers']} (survivor_id) WHERE survivor_id IS NOT NULL",
                f"CREATE TABLE IF NOT EXISTS {t['addresses']} (customer_id uuid NOT NULL, "
                f"channel text NOT NULL, address text NOT NULL, {facts}, "
                "PRIMARY KEY (customer_id, channel, address))",
                f"CREATE TABLE IF NOT EXISTS {t['messages']} (message_ref text PRIMARY KEY, "
                "customer_id uuid NOT NULL, channel text NOT NULL, address text NOT NULL, "
                "status text)",
                f"CREATE TABLE IF NOT EXISTS {t['skipped']} (notification_id bigint PRIMARY KEY, "
                "reason text NOT NULL, skipped_at timestamptz NOT NULL DEFAULT now())",
            )
        ]
        # Each write is one statement of one array per column (bound in binary): an
        # executemany costs ~30 µs a row in the client, and this view writes a row or two for
        # every contact.  A key twice in one statement is refused by ON CONFLICT DO UPDATE, so
        # ``_write`` keeps the last row of each key (a dict), as row by row would have left it.
        upsert = ", ".join(f"{n} = excluded.{n}" for n in FACT_COLUMNS)
        arrays = ", ".join(f"%b::{_column_type(n)}[]" for n in FACT_COLUMNS)
        self._upsert_addresses = (
            f"INSERT INTO {t['addresses']} SELECT * FROM unnest(%b::uuid[], %b::text[], "
            f"%b::text[], {arrays}) ON CONFLICT (customer_id, channel, address) "
            f"DO UPDATE SET {upsert}"
        )
        self._upsert_messages = (
            f"INSERT INTO {t['messages']} SELECT * FROM unnest(%b::text[], %b::uuid[], "
            "%b::text[], %b::text[], %b::text[]) "
            "ON CONFLICT (message_ref) DO UPDATE SET status = excluded.status"
        )
        self._upsert_customers = (
            f"INSERT INTO {t['customers']} SELECT * FROM unnest(%b::uuid[], %b::text[], "
            "%b::jsonb[], %b::uuid[]) ON CONFLICT (customer_id) DO UPDATE SET "
            "preferred_channel = excluded.preferred_channel, consent = excluded.consent, "
            "survivor_id = excluded.survivor_id"
        )

    def create_table(self) -> None:
        t = self._t
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
            c.execute(f"CREATE TABLE IF NOT EXISTS {t['view_schema']} (version int NOT NULL)")
            c.execute(f"SELECT version FROM {t['view_schema']}")
            row = c.fetchone()
            if row is not None and row["version"] > SCHEMA:
                raise ViewFromTheFuture(row["version"], SCHEMA)
            if row is None or row["version"] != SCHEMA:
                for table in _TABLES:
                    c.execute(f"DROP TABLE IF EXISTS {t[table]}")
                c.execute("SELECT to_regclass(%s) AS t", (self._tracking,))
                if c.fetchone()["t"] is not None:
                    self._forget_position(c)
                c.execute(f"DELETE FROM {t['view_schema']}")
                c.execute(f"INSERT INTO {t['view_schema']} VALUES (%s)", (SCHEMA,))
        super().create_table()

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as c:
            yield c

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as c:
            yield c

    def skipped(self) -> list[tuple[int, str]]:
        with self._reading() as c:
            c.execute(
                f"SELECT notification_id, reason FROM {self._t['skipped']} ORDER BY notification_id"
            )
            return [(r["notification_id"], r["reason"]) for r in c.fetchall()]

    def _key(self, customer_id: UUID) -> UUID:
        return customer_id

    def _customers(self, c: Any, ids: list[UUID]) -> dict[UUID, CustomerFacts]:
        found: dict[UUID, CustomerFacts] = {}
        for chunk in chunks(ids):
            c.execute(
                f"SELECT * FROM {self._t['customers']} WHERE customer_id = ANY(%b::uuid[])",
                (chunk,),
            )
            for row in c.fetchall():
                found[row["customer_id"]] = CustomerFacts(**row)
        return found

    def _people(self, c: Any, keys: list[UUID]) -> list[CustomerFacts]:
        found: list[CustomerFacts] = []
        for chunk in chunks(keys):
            c.execute(
                f"SELECT * FROM {self._t['customers']} "
                "WHERE customer_id = ANY(%b::uuid[]) OR survivor_id = ANY(%b::uuid[])",
                (chunk, chunk),
            )
            found += [CustomerFacts(**row) for row in c.fetchall()]
        return found

    def _facts(self, c: Any, keys: dict[UUID, UUID]) -> dict[UUID, list[AddressFacts]]:
        found: dict[UUID, list[AddressFacts]] = {}
        for chunk in chunks(list(keys)):
            c.execute(
                f"SELECT customer_id, channel, address, {_FACTS} FROM {self._t['addresses']} "
                "WHERE customer_id = ANY(%b::uuid[])",
                (chunk,),
            )
            for r in c.fetchall():
                row = tuple(r.values())
                key = row[0]
                facts = facts_of(keys[key], row[1], row[2], row[3:])
                if key in found:
                    found[key].append(facts)
                else:
                    found[key] = [facts]
        return found

    def _messages(self, c: Any, refs: list[str]) -> dict[str, MessageState]:
        found: dict[str, MessageState] = {}
        for chunk in chunks(refs):
            c.execute(
                f"SELECT * FROM {self._t['messages']} WHERE message_ref = ANY(%b::text[])", (chunk,)
            )
            for row in c.fetchall():
                found[row["message_ref"]] = MessageState(**row)
        return found

    def _write(
        self,
        c: Any,
        addresses: list[AddressFacts],
        messages: list[MessageState],
        customers: list[CustomerFacts],
    ) -> None:
        if addresses:
            c.execute(
                self._upsert_addresses,
                as_columns(
                    {
                        (f.customer_id, f.channel, f.address): (
                            f.customer_id,
                            f.channel,
                            f.address,
                            *fact_values(f),
                        )
                        for f in addresses
                    }.values(),
                    3 + len(FACT_COLUMNS),
                ),
            )
        if messages:
            c.execute(
                self._upsert_messages,
                as_columns(
                    {
                        m.message_ref: (
                            m.message_ref,
                            m.customer_id,
                            m.channel,
                            m.address,
                            m.status,
                        )
                        for m in messages
                    }.values(),
                    5,
                ),
            )
        if customers:
            c.execute(
                self._upsert_customers,
                as_columns(
                    {
                        x.customer_id: (
                            x.customer_id,
                            x.preferred_channel,
                            Jsonb(x.consent),
                            x.survivor_id,
                        )
                        for x in customers
                    }.values(),
                    4,
                ),
            )

    def _write_skipped(self, c: Any, skipped: list[tuple[int, str]]) -> None:
        c.executemany(
            f"INSERT INTO {self._t['skipped']} (notification_id, reason) VALUES (%s, %s) "
            "ON CONFLICT (notification_id) DO UPDATE SET reason = excluded.reason",
            [(n, reason.replace("\x00", "\ufffd")) for n, reason in skipped],
        )

    def _erase(self, c: Any, keys: list[Any]) -> None:
        for table in ("addresses", "messages", "customers"):
            c.execute(f"DELETE FROM {self._t[table]} WHERE customer_id = ANY(%s)", (keys,))
        c.execute(
            f"UPDATE {self._t['customers']} SET survivor_id = NULL WHERE survivor_id = ANY(%s)",
            (keys,),
        )

    def _clear(self, c: Any) -> None:
        # DELETE, not TRUNCATE: readers go on seeing the old rows until the rebuild commits.
        for table in _TABLES:
            c.execute(f"DELETE FROM {self._t[table]}")
        self._forget_position(c)

    def _forget_position(self, c: Any) -> None:
        c.execute(
            f"DELETE FROM {self._tracking} WHERE application_name != %s",
            (self.table_migration_identifier,),
        )
