"""The timeline view on PostgreSQL (same database as the event store, its own tables)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.sql import SQL, Composed, Identifier

from contracts import DeliveryStatus, status_of
from projections.directory import (
    RECENT,
    AddressAdded,
    AgentHandled,
    ConsentSet,
    ConversationChanged,
    ConversationOpened,
    CustomerRow,
    DirectoryOp,
    DuplicateDismissed,
    Erased,
    Merged,
    OpenConversation,
    ProfileSet,
    RecentContact,
    Unmerged,
    with_phone_variants,
)
from projections.pg_arrays import as_columns
from projections.timeline import (
    AgentConversation,
    CustomerSummary,
    DeliveryReport,
    SkippedEvent,
    TimelineChanges,
    TimelineEntry,
    TimelineView,
    ViewFromTheFuture,
    contact_addresses,
    contact_rollup,
    fold_delivery_reports,
    full_payload,
    payload_json,
    storable,
    stored_payload,
)

if TYPE_CHECKING:
    from projections.rebuild_postgres import PostgresViewBuild

# Bumped when the tables change shape: an older view is dropped and rebuilt from the store.
SCHEMA = 4
TABLES = (
    "entries",
    "customers",
    "addresses",
    "shared_addresses",
    "conversations",
    "deliveries",
    "skipped",
)
# The secondary indexes: name -> (table, what it indexes).  A rebuild makes them after its
# load (projections/rebuild_postgres.py).
INDEXES = {
    "timeline_entries_by_owner": ("entries", "(owner_id, occurred_at, position)"),
    "timeline_customers_by_name": (
        "customers",
        "(name_key text_pattern_ops) WHERE name_key IS NOT NULL",
    ),
    "timeline_customers_by_survivor": ("customers", "(merged_into) WHERE merged_into IS NOT NULL"),
    "timeline_addresses_by_prefix": ("addresses", "(address text_pattern_ops)"),
    "timeline_addresses_by_customer": ("addresses", "(customer_id)"),
    "timeline_conversations_by_owner": ("conversations", "(owner_id)"),
    "timeline_conversations_worked": (
        "conversations",
        "(assignee, status) WHERE status IN ('assigned', 'pending')",
    ),
}
_ENTRY_COLUMNS = (
    "customer_id, position, occurred_at, type, channel, direction, party, provider_ref, "
    "summary, payload"
)
_SUMMARY_COLUMNS = (
    "customer_id, first_address, first_seen, contact_count, last_contact_at, last_channel"
)


def _row(r: dict[str, Any]) -> CustomerRow:
    return CustomerRow(
        customer_id=r["customer_id"],
        first_address=r["first_address"],
        first_seen=r["first_seen"],
        contact_count=r["contact_count"],
        last_contact_at=r["last_contact_at"],
        last_channel=r["last_channel"],
        profile=r["profile"],
        profile_version=r["profile_version"],
        consent=r["consent"],
        last_agent=r["last_agent"],
        last_agent_at=r["last_agent_at"],
        merged_into=r["merged_into"],
        absorbed=r["absorbed"],
        addresses=sorted(r["addresses"] or []),
        recent=[
            RecentContact(
                position=p,
                occurred_at=datetime.fromisoformat(at),
                type=type_,
                channel=ch,
                direction=d,
                party=party,
                summary=summary,
            )
            for p, at, type_, ch, d, party, summary in (r["recent"] or [])
        ],
        conversations=[
            OpenConversation(UUID(cid), ch, status, assignee, datetime.fromisoformat(at))
            for cid, ch, status, assignee, at in (r["conversations"] or [])
        ],
    )


@dataclass
class BatchRows:
    """The statement parameters a batch of changes writes (plain data: a rebuild prepares
    them in worker processes)."""

    customers: list[tuple]  # new customers without contacts in the batch
    counted: list[tuple]  # new customers with their contacts in the batch
    addresses: list[tuple]
    entries: list[tuple]
    contacts: list[tuple]  # contacts of customers known before the batch
    deliveries: list[DeliveryReport]
    ops: list[DirectoryOp]

    @classmethod
    def of(cls, changes: TimelineChanges) -> BatchRows:
        rollup = contact_rollup(changes.entries)
        customers, counted = [], []
        for s in changes.new_customers:
            row = (s.customer_id, storable(s.first_address), s.first_seen)
            got = rollup.pop(s.customer_id, None)
            if got is None:
                customers.append(row)
            else:
                counted.append((*row, *got))
        return cls(
            customers=customers,
            counted=counted,
            # Once each: a repeated (address, customer) does nothing anyway.
            addresses=list(
                dict.fromkeys(
                    (storable(address), cid)
                    for address, cid in (*changes.addresses, *contact_addresses(changes.entries))
                )
            ),
            entries=[
                (
                    e.position,
                    e.customer_id,
                    e.customer_id,
                    e.occurred_at,
                    *storable([e.type, e.channel, e.direction, e.party]),
                    *storable([e.provider_ref, e.summary]),
                    payload_json(stored_payload(e)),
                )
                for e in changes.entries
            ],
            contacts=[
                (count, last, channel, cid) for cid, (count, last, channel) in rollup.items()
            ],
            deliveries=changes.deliveries,
            ops=changes.ops,
        )


# Where an erased person's rows are: (table, column naming the customer).
_ERASE = (
    ("entries", "customer_id"),
    ("entries", "owner_id"),
    ("conversations", "customer_id"),
    ("conversations", "owner_id"),
    ("deliveries", "customer_id"),
    ("shared_addresses", "customer_id"),
    ("addresses", "customer_id"),
    ("customers", "customer_id"),
)


class PostgresTimelineView(TimelineView, PostgresTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self._t = {
            name: SQL("{0}.{1}").format(schema, Identifier(f"timeline_{name}")) for name in TABLES
        }
        self._schema_table = SQL("{0}.{1}").format(schema, Identifier("timeline_view_schema"))
        t = self._t
        self.sql_create_statements += [
            # customer_id: whose history holds the event; owner_id: whose timeline shows it
            # (the survivor's, after a merge).
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "position bigint PRIMARY KEY, customer_id uuid NOT NULL, owner_id uuid NOT NULL, "
                "occurred_at timestamptz NOT NULL, type text NOT NULL, channel text NOT NULL, "
                "direction text NOT NULL, party text NOT NULL, provider_ref text NOT NULL, "
                "summary text NOT NULL, payload jsonb NOT NULL)"
            ).format(t["entries"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "customer_id uuid PRIMARY KEY, first_address text NOT NULL, "
                "first_seen timestamptz NOT NULL, contact_count bigint NOT NULL DEFAULT 0, "
                "last_contact_at timestamptz, last_channel text, name_key text, "
                "profile jsonb NOT NULL DEFAULT '{{}}', profile_version int NOT NULL DEFAULT 0, "
                "consent jsonb NOT NULL DEFAULT '{{}}', last_agent text, "
                "last_agent_at timestamptz, merged_into uuid, absorbed int NOT NULL DEFAULT 0, "
                "dismissed jsonb NOT NULL DEFAULT '{{}}')"
            ).format(t["customers"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "address text PRIMARY KEY, customer_id uuid NOT NULL)"
            ).format(t["addresses"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "address text NOT NULL, customer_id uuid NOT NULL, "
                "PRIMARY KEY (address, customer_id))"
            ).format(t["shared_addresses"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "conversation_id uuid PRIMARY KEY, customer_id uuid NOT NULL, "
                "owner_id uuid NOT NULL, channel text NOT NULL, status text NOT NULL, "
                "assignee text, opened_at timestamptz NOT NULL)"
            ).format(t["conversations"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "message_ref text PRIMARY KEY, customer_id uuid NOT NULL, channel text NOT NULL, "
                "status text NOT NULL, updated_at timestamptz NOT NULL)"
            ).format(t["deliveries"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "notification_id bigint PRIMARY KEY, reason text NOT NULL, "
                "skipped_at timestamptz NOT NULL DEFAULT now())"
            ).format(t["skipped"]),
            *self.index_statements().values(),
        ]
        # One customer's row with its addresses and last contacts: the card in one statement.
        self._row_select = SQL(
            "SELECT c.*, "
            "(SELECT json_agg(a.address) FROM {addresses} a "
            " WHERE a.customer_id = c.customer_id) AS addresses, "
            "(SELECT json_agg(json_build_array(t.position, t.occurred_at, t.type, t.channel, "
            " t.direction, t.party, t.summary)) FROM (SELECT * FROM {entries} "
            " WHERE owner_id = c.customer_id AND direction != 'internal' "
            " ORDER BY occurred_at DESC, position DESC "
            " LIMIT {recent}) t) AS recent, "
            "(SELECT json_agg(json_build_array(v.conversation_id, v.channel, v.status, "
            " v.assignee, v.opened_at)) FROM {conversations} v "
            " WHERE v.owner_id = c.customer_id AND v.status != 'resolved') AS conversations "
            "FROM {customers} c "
        ).format(
            conversations=t["conversations"],
            addresses=t["addresses"],
            entries=t["entries"],
            customers=t["customers"],
            recent=RECENT,
        )

    def index_statements(self) -> dict[str, Composed]:
        return {
            name: SQL("CREATE INDEX IF NOT EXISTS {0} ON {1} " + columns).format(
                Identifier(name), self._t[table]
            )
            for name, (table, columns) in INDEXES.items()
        }

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Two processes starting together: one at a time decides about the schema.
            curs.execute("SELECT pg_advisory_xact_lock(727274)")
            curs.execute(
                SQL("CREATE TABLE IF NOT EXISTS {0} (version int NOT NULL)").format(
                    self._schema_table
                )
            )
            curs.execute(SQL("SELECT version FROM {0}").format(self._schema_table))
            row = curs.fetchone()
            if row is not None and row["version"] > SCHEMA:
                raise ViewFromTheFuture(row["version"], SCHEMA)
            if row is None or row["version"] != SCHEMA:
                # An older view (or none): drop it, and its position, to rebuild from zero.
                for table in self._t.values():
                    curs.execute(SQL("DROP TABLE IF EXISTS {0}").format(table))
                curs.execute(SQL("SELECT to_regclass(%s) AS t"), (self._tracking_name(),))
                if curs.fetchone()["t"] is not None:
                    curs.execute(
                        SQL("DELETE FROM {0}.{1} WHERE application_name != %s").format(
                            Identifier(self.datastore.schema),
                            Identifier(self.tracking_table_name),
                        ),
                        (self.table_migration_identifier,),
                    )
                curs.execute(SQL("DELETE FROM {0}").format(self._schema_table))
                curs.execute(
                    SQL("INSERT INTO {0} VALUES (%s)").format(self._schema_table), (SCHEMA,)
                )
        super().create_table()

    def _tracking_name(self) -> str:
        return f'"{self.datastore.schema}"."{self.tracking_table_name}"'

    def apply(self, changes: TimelineChanges, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            self.write_rows(curs, BatchRows.of(changes))

    def write_rows(self, curs: Any, rows: BatchRows) -> None:
        """A batch's rows, in the transaction of ``curs`` (these tables, or a rebuild's beside
        them: projections/rebuild_postgres.py)."""
        t = self._t
        # Each statement takes the batch's rows as arrays, in order: one statement a batch,
        # not one a row (a conflict keeps the first row, as row by row would).
        if rows.customers:
            curs.execute(
                SQL(
                    "INSERT INTO {0} (customer_id, first_address, first_seen) "
                    "SELECT i, a, s FROM unnest(%b::uuid[], %b::text[], %b::timestamptz[]) "
                    "WITH ORDINALITY AS r(i, a, s, n) ORDER BY n ON CONFLICT DO NOTHING"
                ).format(t["customers"]),
                as_columns(rows.customers, 3),
            )
        if rows.counted:
            # A new customer with its contacts: the insert and the contacts' update below in
            # one statement (the same row as inserting, then updating, would leave).
            curs.execute(
                SQL(
                    "INSERT INTO {0} AS c (customer_id, first_address, first_seen, "
                    "contact_count, last_contact_at, last_channel) "
                    "SELECT i, a, s, k, l, h FROM unnest(%b::uuid[], %b::text[], "
                    "%b::timestamptz[], %b::bigint[], %b::timestamptz[], %b::text[]) "
                    "WITH ORDINALITY AS r(i, a, s, k, l, h, n) ORDER BY n "
                    "ON CONFLICT (customer_id) DO UPDATE SET "
                    "contact_count = c.contact_count + excluded.contact_count, "
                    "last_channel = CASE WHEN c.last_contact_at IS NULL "
                    "OR excluded.last_contact_at >= c.last_contact_at "
                    "THEN excluded.last_channel ELSE c.last_channel END, "
                    "last_contact_at = GREATEST(c.last_contact_at, excluded.last_contact_at)"
                ).format(t["customers"]),
                as_columns(rows.counted, 6),
            )
        if rows.addresses:
            curs.execute(
                SQL(
                    "INSERT INTO {0} SELECT a, i FROM unnest(%b::text[], %b::uuid[]) "
                    "WITH ORDINALITY AS r(a, i, n) ORDER BY n ON CONFLICT DO NOTHING"
                ).format(t["addresses"]),
                as_columns(rows.addresses, 2),
            )
        if rows.entries:
            with curs.copy(
                SQL(
                    "COPY {0} (position, customer_id, owner_id, occurred_at, type, channel, "
                    "direction, party, provider_ref, summary, payload) FROM STDIN"
                ).format(t["entries"])
            ) as copy:
                for row in rows.entries:
                    copy.write_row(row)
        if rows.contacts:
            curs.execute(
                SQL(
                    "UPDATE {0} AS c SET contact_count = c.contact_count + u.k, "
                    "last_channel = CASE WHEN c.last_contact_at IS NULL "
                    "OR u.l >= c.last_contact_at THEN u.h ELSE c.last_channel END, "
                    "last_contact_at = GREATEST(c.last_contact_at, u.l) "
                    "FROM unnest(%b::bigint[], %b::timestamptz[], %b::text[], %b::uuid[]) "
                    "AS u(k, l, h, i) WHERE c.customer_id = u.i"
                ).format(t["customers"]),
                as_columns(rows.contacts, 4),
            )
        self._apply_deliveries(curs, rows.deliveries)
        handled: list[AgentHandled] = []
        for op in rows.ops:
            if isinstance(op, AgentHandled):
                handled.append(op)
                continue
            self._agents_handled(curs, handled)
            self._apply_op(curs, op)
        self._agents_handled(curs, handled)

    def _agents_handled(self, curs: Any, ops: list[AgentHandled]) -> None:
        """A run of ``AgentHandled`` (one per answered call or agent's reply, the commonest
        op) in one statement, as applying them one by one would leave the rows: per customer
        the latest, a later one winning a tie.  ``ops`` is emptied."""
        if not ops:
            return
        latest: dict[UUID, AgentHandled] = {}
        for op in ops:
            seen = latest.get(op.customer_id)
            if seen is None or op.at >= seen.at:
                latest[op.customer_id] = op
        ops.clear()
        curs.execute(
            SQL(
                "UPDATE {0} AS c SET last_agent = u.a, last_agent_at = u.t "
                "FROM unnest(%b::text[], %b::timestamptz[], %b::uuid[]) AS u(a, t, i) "
                "WHERE c.customer_id = u.i AND (c.last_agent_at IS NULL OR c.last_agent_at <= u.t)"
            ).format(self._t["customers"]),
            as_columns([(storable(o.agent), o.at, o.customer_id) for o in latest.values()], 3),
        )

    def _apply_op(self, curs: Any, op: DirectoryOp) -> None:
        t = self._t
        customers = t["customers"]
        if isinstance(op, ConsentSet):
            curs.execute(
                SQL("UPDATE {0} SET consent = consent || %s::jsonb WHERE customer_id = %s").format(
                    customers
                ),
                (json.dumps({op.key: op.granted}), op.customer_id),
            )
        elif isinstance(op, AgentHandled):
            curs.execute(
                SQL(
                    "UPDATE {0} SET last_agent = %s, last_agent_at = %s WHERE customer_id = %s "
                    "AND (last_agent_at IS NULL OR last_agent_at <= %s)"
                ).format(customers),
                (storable(op.agent), op.at, op.customer_id, op.at),
            )
        elif isinstance(op, ProfileSet):
            # A value of None clears a field: jsonb_strip_nulls after the merge.
            curs.execute(
                SQL(
                    "UPDATE {0} SET profile = jsonb_strip_nulls(profile || %s::jsonb), "
                    "profile_version = profile_version + 1 WHERE customer_id = %s"
                ).format(customers),
                (json.dumps(storable(op.changes)), op.customer_id),
            )
            curs.execute(
                SQL(
                    "UPDATE {0} SET name_key = lower(profile->>'name') WHERE customer_id = %s"
                ).format(customers),
                (op.customer_id,),
            )
        elif isinstance(op, AddressAdded):
            address = storable(op.address)
            if op.shared:
                curs.execute(
                    SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                        t["shared_addresses"]
                    ),
                    (address, op.customer_id),
                )
                curs.execute(
                    SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                        t["addresses"]
                    ),
                    (address, op.customer_id),
                )
            else:
                curs.execute(
                    SQL(
                        "INSERT INTO {0} VALUES (%s, %s) "
                        "ON CONFLICT (address) DO UPDATE SET customer_id = excluded.customer_id"
                    ).format(t["addresses"]),
                    (address, op.customer_id),
                )
        elif isinstance(op, Merged):
            s, a = op.survivor_id, op.absorbed_id
            self._exec(curs, "UPDATE {addresses} SET customer_id = %s WHERE customer_id = %s", s, a)
            self._exec(curs, "UPDATE {entries} SET owner_id = %s WHERE owner_id = %s", s, a)
            self._exec(curs, "UPDATE {conversations} SET owner_id = %s WHERE owner_id = %s", s, a)
            self._exec(curs, "UPDATE {customers} SET merged_into = %s WHERE customer_id = %s", s, a)
            self._exec(
                curs, "UPDATE {customers} SET absorbed = absorbed + 1 WHERE customer_id = %s", s
            )
            self._recount(curs, [s, a])
        elif isinstance(op, Unmerged):
            s, a = op.survivor_id, op.absorbed_id
            for address in with_phone_variants(op.addresses):
                self._exec(
                    curs,
                    "UPDATE {addresses} SET customer_id = %s WHERE address = %s "
                    "AND customer_id = %s",
                    a,
                    storable(address),
                    s,
                )
            for table in ("entries", "conversations"):
                self._exec(
                    curs,
                    f"UPDATE {{{table}}} SET owner_id = %s WHERE owner_id = %s "
                    "AND customer_id = %s",
                    a,
                    s,
                    a,
                )
            for key in op.moved:
                self._exec(
                    curs,
                    "UPDATE {entries} SET owner_id = %s WHERE owner_id = %s AND customer_id = %s "
                    "AND type = %s AND channel = %s AND provider_ref = %s",
                    a,
                    s,
                    s,
                    *storable(key.split("|", 2)),
                )
            self._exec(curs, "UPDATE {customers} SET merged_into = NULL WHERE customer_id = %s", a)
            self._exec(
                curs, "UPDATE {customers} SET absorbed = absorbed - 1 WHERE customer_id = %s", s
            )
            self._recount(curs, [s, a])
        elif isinstance(op, ConversationOpened):
            self._exec(
                curs,
                "INSERT INTO {conversations} SELECT %s, %s, coalesce(("
                "SELECT merged_into FROM {customers} WHERE customer_id = %s), %s), "
                "%s, 'open', NULL, %s ON CONFLICT DO NOTHING",
                op.conversation_id,
                op.customer_id,
                op.customer_id,
                op.customer_id,
                storable(op.channel),
                op.opened_at,
            )
        elif isinstance(op, ConversationChanged):
            self._exec(
                curs,
                "UPDATE {conversations} SET status = %s, assignee = %s WHERE conversation_id = %s",
                storable(op.status),
                storable(op.assignee),
                op.conversation_id,
            )
        elif isinstance(op, Erased):
            ids = list(op.customer_ids)
            for table, column in _ERASE:
                curs.execute(
                    SQL("DELETE FROM {0} WHERE {1} = ANY(%s)").format(
                        self._t[table], Identifier(column)
                    ),
                    (ids,),
                )
        elif isinstance(op, DuplicateDismissed):
            curs.execute(
                SQL(
                    "UPDATE {0} SET dismissed = dismissed || %s::jsonb WHERE customer_id = %s"
                ).format(customers),
                (json.dumps({str(op.other_id): storable(op.reason)}), op.customer_id),
            )

    def _sql(self, template: str) -> Composed:
        return SQL(template).format(**self._t)

    def _exec(self, curs: Any, template: str, *params: Any) -> None:
        curs.execute(self._sql(template), params)

    def _recount(self, curs: Any, customer_ids: list[UUID]) -> None:
        """A customer's contact figures from the contacts its timeline shows now."""
        for cid in customer_ids:
            curs.execute(
                self._sql(
                    "UPDATE {customers} SET "
                    "contact_count = (SELECT count(*) FROM {entries} "
                    "  WHERE owner_id = %(c)s AND direction != 'internal'), "
                    "last_contact_at = (SELECT max(occurred_at) FROM {entries} "
                    "  WHERE owner_id = %(c)s AND direction != 'internal'), "
                    "last_channel = (SELECT channel FROM {entries} "
                    "  WHERE owner_id = %(c)s AND direction != 'internal' "
                    "  ORDER BY occurred_at DESC, position DESC LIMIT 1) "
                    "WHERE customer_id = %(c)s"
                ),
                {"c": cid},
            )

    def _apply_deliveries(self, curs: Any, reports: list[DeliveryReport]) -> None:
        if not reports:
            return
        t = self._t["deliveries"]
        curs.execute(
            SQL("SELECT message_ref, status FROM {0} WHERE message_ref = ANY(%s)").format(t),
            (sorted({r.message_ref for r in reports}),),
        )
        current = {row["message_ref"]: status_of(row["status"]) for row in curs.fetchall()}
        winners = fold_delivery_reports(current, reports).values()
        if winners:
            curs.executemany(
                SQL(
                    "INSERT INTO {0} VALUES (%s, %s, %s, %s, %s) ON CONFLICT (message_ref) "
                    "DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at"
                ).format(t),
                [
                    (
                        storable(r.message_ref),
                        r.customer_id,
                        r.channel,
                        str(r.status),
                        r.occurred_at,
                    )
                    for r in winners
                ],
            )

    def skip(self, notification_id: int, reason: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            self.write_skip(curs, notification_id, reason)

    def write_skip(self, curs: Any, notification_id: int, reason: str) -> None:
        curs.execute(
            SQL(
                "INSERT INTO {0} (notification_id, reason) VALUES (%s, %s) "
                "ON CONFLICT (notification_id) DO UPDATE SET reason = excluded.reason"
            ).format(self._t["skipped"]),
            (notification_id, storable(reason)),
        )

    def build_beside(self) -> PostgresViewBuild:
        from projections.rebuild_postgres import PostgresViewBuild

        return PostgresViewBuild(self)

    def skipped(self) -> list[SkippedEvent]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {0} ORDER BY notification_id").format(self._t["skipped"])
            )
            return [SkippedEvent(**row) for row in curs.fetchall()]

    def files_in_use(self, sha256s: list[str]) -> set[str]:
        used: set[str] = set()
        for sha in sha256s:
            if self._read(
                SQL("SELECT 1 FROM {0} WHERE strpos(payload::text, %s) > 0 LIMIT 1").format(
                    self._t["entries"]
                ),
                (sha,),
            ):
                used.add(sha)
        return used

    def delivery_status(self, message_ref: str) -> DeliveryReport | None:
        rows = self._read(
            SQL("SELECT * FROM {0} WHERE message_ref = %s").format(self._t["deliveries"]),
            (message_ref,),
        )
        if not rows:
            return None
        row = rows[0]
        return DeliveryReport(
            message_ref=row["message_ref"],
            customer_id=row["customer_id"],
            channel=row["channel"],
            status=DeliveryStatus(row["status"]),
            occurred_at=row["updated_at"],
        )

    def timeline(
        self, customer_id: UUID, *, limit: int = 100, offset: int = 0
    ) -> list[TimelineEntry]:
        rows = self._read(
            SQL(
                f"SELECT {_ENTRY_COLUMNS} FROM {{0}} WHERE owner_id = %s "
                "ORDER BY occurred_at DESC, position DESC LIMIT %s OFFSET %s"
            ).format(self._t["entries"]),
            (customer_id, limit, offset),
        )
        for row in rows:
            row["payload"] = full_payload(row["payload"], row)
        return [TimelineEntry(**row) for row in rows]

    def summary(self, customer_id: UUID) -> CustomerSummary | None:
        rows = self._read(
            SQL(f"SELECT {_SUMMARY_COLUMNS} FROM {{0}} WHERE customer_id = %s").format(
                self._t["customers"]
            ),
            (customer_id,),
        )
        return CustomerSummary(**rows[0]) if rows else None

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for table in self._t.values():
                curs.execute(SQL("TRUNCATE {0}").format(table))
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name != %s").format(
                    Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
                ),
                (self.table_migration_identifier,),
            )

    # -- the directory's reads --------------------------------------------------------------

    def _read(self, query: Composed | SQL, params: Any = ()) -> list[dict[str, Any]]:
        """One statement on a pooled connection, outside any explicit transaction."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params, prepare=True)
            return curs.fetchall()

    def _lookup_row(self, variants: list[str]) -> tuple[CustomerRow | None, bool]:
        rows = self._read(self._lookup_select, {"v": variants})
        if rows:
            return _row(rows[0]), bool(rows[0]["shared"])
        shared = self._read(
            self._sql("SELECT 1 FROM {shared_addresses} WHERE address = ANY(%s) LIMIT 1"),
            (variants,),
        )
        return None, bool(shared)

    @property
    def _lookup_select(self) -> Composed:
        query = self.__dict__.get("_lookup_query")
        if query is None:
            query = self.__dict__["_lookup_query"] = SQL(
                "SELECT * FROM ({row} WHERE c.customer_id = (SELECT customer_id FROM "
                "{addresses} WHERE address = ANY(%(v)s) LIMIT 1)) r, "
                "(SELECT EXISTS (SELECT 1 FROM {shared} WHERE address = ANY(%(v)s)) AS shared) s"
            ).format(
                row=self._row_select,
                addresses=self._t["addresses"],
                shared=self._t["shared_addresses"],
            )
        return query

    def _rows(self, customer_ids: list[UUID]) -> list[CustomerRow]:
        if not customer_ids:
            return []
        rows = self._read(
            self._row_select + SQL("WHERE c.customer_id = ANY(%s)"), (list(customer_ids),)
        )
        by_id = {r["customer_id"]: _row(r) for r in rows}
        return [by_id[i] for i in customer_ids if i in by_id]

    def _absorbed_by(self, customer_id: UUID) -> list[UUID]:
        rows = self._read(
            self._sql(
                "SELECT customer_id FROM {customers} WHERE merged_into = %s ORDER BY customer_id"
            ),
            (customer_id,),
        )
        return [r["customer_id"] for r in rows]

    def _sharers(self, addresses: list[str]) -> list[UUID]:
        rows = self._read(
            self._sql(
                "SELECT DISTINCT customer_id FROM {shared_addresses} WHERE address = ANY(%s) "
                "ORDER BY customer_id"
            ),
            (addresses,),
        )
        return [r["customer_id"] for r in rows]

    def _holders(self, addresses: list[str]) -> dict[str, UUID]:
        if not addresses:
            return {}
        rows = self._read(
            self._sql("SELECT address, customer_id FROM {addresses} WHERE address = ANY(%s)"),
            (addresses,),
        )
        return {r["address"]: r["customer_id"] for r in rows}

    def _contacts_from(
        self, customer_id: UUID, addresses: list[str]
    ) -> tuple[datetime | None, int]:
        rows = self._read(
            self._sql(
                "SELECT max(occurred_at) AS last, count(*) AS n FROM {entries} "
                "WHERE owner_id = %s AND direction != 'internal' AND party = ANY(%s)"
            ),
            (customer_id, addresses),
        )
        return rows[0]["last"], rows[0]["n"]

    def _ids_by_prefix(self, text: str, limit: int) -> list[UUID]:
        prefix = text.strip().casefold()
        if not prefix:
            return []
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # In a stated order (SQLite's: by the first matching address, by name), so that the
        # answer does not depend on where the rows happen to lie (a rebuilt view's differ).
        by_address = self._read(
            self._sql(
                "SELECT customer_id FROM {addresses} WHERE address LIKE %s GROUP BY customer_id "
                'ORDER BY min(address COLLATE "C"), customer_id LIMIT %s'
            ),
            (pattern, limit),
        )
        by_name = self._read(
            self._sql(
                "SELECT customer_id FROM {customers} WHERE name_key LIKE %s "
                "AND merged_into IS NULL ORDER BY name_key, customer_id LIMIT %s"
            ),
            (pattern, limit),
        )
        return list(dict.fromkeys(r["customer_id"] for r in (*by_address, *by_name)))

    def _ids_by_email_base(self, base: str) -> list[UUID]:
        local, _, domain = base.rpartition("@")
        escape = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})
        rows = self._read(
            self._sql("SELECT customer_id FROM {addresses} WHERE address = %s OR address LIKE %s"),
            (base, f"{local.translate(escape)}+%@{domain.translate(escape)}"),
        )
        return [r["customer_id"] for r in rows]

    def _ids_by_name(self, name_key: str) -> list[UUID]:
        rows = self._read(
            self._sql(
                "SELECT customer_id FROM {customers} WHERE name_key = %s "
                "ORDER BY customer_id LIMIT 50"
            ),
            (name_key,),
        )
        return [r["customer_id"] for r in rows]

    def _worked_counts(self) -> list[tuple[str, str, str, int]]:
        rows = self._read(
            self._sql(
                "SELECT assignee, status, channel, count(*) AS n FROM {conversations} "
                "WHERE status IN ('assigned', 'pending') AND assignee IS NOT NULL "
                "GROUP BY assignee, status, channel"
            )
        )
        return [(r["assignee"], r["status"], r["channel"], r["n"]) for r in rows]

    def assigned_to(self, agent: str, *, limit: int = 100) -> list[AgentConversation]:
        rows = self._read(
            self._sql(
                "SELECT conversation_id, owner_id, channel, status, opened_at "
                "FROM {conversations} WHERE status IN ('assigned', 'pending') AND assignee = %s "
                "ORDER BY opened_at DESC LIMIT %s"
            ),
            (agent, limit),
        )
        return [
            AgentConversation(
                r["conversation_id"], r["owner_id"], r["channel"], r["status"], r["opened_at"]
            )
            for r in rows
        ]

    def _dismissed(self, customer_id: UUID) -> dict[str, str]:
        rows = self._read(
            self._sql("SELECT dismissed FROM {customers} WHERE customer_id = %s"), (customer_id,)
        )
        return rows[0]["dismissed"] if rows else {}
