"""The timeline view on SQLite (its own database file, so it never contends with the
event store for SQLite's single writer lock)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteTrackingRecorder

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
from projections.sqlite_swap import FollowsSwaps
from projections.timeline import (
    AgentConversation,
    CustomerSummary,
    DeliveryReport,
    SkippedEvent,
    TimelineChanges,
    TimelineEntry,
    TimelineView,
    ViewFromTheFuture,
    fold_delivery_reports,
    full_payload,
    payload_json,
    storable,
    stored_payload,
)

if TYPE_CHECKING:
    from projections.rebuild_sqlite import SQLiteViewBuild

# Bumped when the tables change shape: an older view is dropped and rebuilt from the store.
SCHEMA = 4
_TABLES = (
    "timeline",
    "customers",
    "addresses",
    "shared_addresses",
    "conversations",
    "deliveries",
    "skipped",
)
# The secondary indexes, by name: a rebuild creates them after its load (a sort instead of a
# random insert per row; projections/rebuild_sqlite.py).
# Where an erased person's rows are: (table, column naming the customer).
_ERASE = (
    ("timeline", "customer_id"),
    ("timeline", "owner_id"),
    ("conversations", "customer_id"),
    ("conversations", "owner_id"),
    ("deliveries", "customer_id"),
    ("shared_addresses", "customer_id"),
    ("addresses", "customer_id"),
    ("customers", "customer_id"),
)

INDEXES = {
    "timeline_by_owner": "CREATE INDEX IF NOT EXISTS timeline_by_owner "
    "ON timeline (owner_id, occurred_at, position)",
    "customers_by_name": "CREATE INDEX IF NOT EXISTS customers_by_name ON customers (name_key) "
    "WHERE name_key IS NOT NULL",
    "customers_by_survivor": "CREATE INDEX IF NOT EXISTS customers_by_survivor "
    "ON customers (merged_into) WHERE merged_into IS NOT NULL",
    "addresses_by_customer": "CREATE INDEX IF NOT EXISTS addresses_by_customer "
    "ON addresses (customer_id)",
    "conversations_by_owner": "CREATE INDEX IF NOT EXISTS conversations_by_owner "
    "ON conversations (owner_id)",
    "conversations_worked": "CREATE INDEX IF NOT EXISTS conversations_worked ON conversations "
    "(assignee, status) WHERE status IN ('assigned', 'pending')",
}


def _ts(dt: datetime) -> str:
    # Fixed width, so text order is time order.  strftime's own %f costs three times this.
    d = dt.astimezone(UTC)
    if d.year < 1000:  # strftime writes such a year unpadded: stay as it was
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - the fastest here
        d.year,
        d.month,
        d.day,
        d.hour,
        d.minute,
        d.second,
        d.microsecond,
    )


_first = itemgetter(0)


class _Times(dict):
    """_ts once per time in a batch (a contact's time is its row's and its customer's last)."""

    def __missing__(self, key: datetime) -> str:
        text = self[key] = _ts(key)
        return text


@dataclass
class BatchRows:
    """The statement parameters a batch of changes writes (plain data: a rebuild prepares
    them in one thread and writes them in another)."""

    customers: list[tuple]  # new customers without contacts in the batch
    counted: list[tuple]  # new customers with their contacts in the batch
    addresses: list[tuple]
    timeline: list[tuple]
    contacts: list[tuple]  # contacts of customers known before the batch
    deliveries: list[DeliveryReport]
    ops: list[DirectoryOp]

    @classmethod
    def of(cls, changes: TimelineChanges) -> BatchRows:
        # One pass over the entries, the customers keyed by their text (a str hashes in C, a
        # UUID in Python: a dozen UUID hashes an entry were a tenth of this).
        texts: dict[int, str] = {}
        times = _Times()

        def text(customer_id: UUID) -> str:
            found = texts.get(customer_id.int)
            if found is None:
                found = texts[customer_id.int] = str(customer_id)
            return found

        # Once each: a repeated (address, customer) is ignored by the statement anyway; the
        # first contacts' addresses first, then the addresses contacts came from.
        addresses = {(address, text(cid)): None for address, cid in changes.addresses}
        rollup: dict[str, list] = {}  # customer -> [new contacts, the latest's time, channel]
        timeline = []
        for e in changes.entries:
            cid = text(e.customer_id)
            timeline.append(
                (
                    e.position,
                    cid,
                    cid,
                    times[e.occurred_at],
                    e.type,
                    e.channel,
                    e.direction,
                    e.party,
                    e.provider_ref,
                    storable(e.summary),
                    payload_json(stored_payload(e)),
                )
            )
            if e.direction == "internal":  # the desk's own doings are no contact
                continue
            addresses[(e.party, cid)] = None
            got = rollup.get(cid)
            if got is None:
                rollup[cid] = [1, e.occurred_at, e.channel]
            else:
                got[0] += 1
                if e.occurred_at >= got[1]:
                    got[1], got[2] = e.occurred_at, e.channel
        customers, counted = [], []
        for s in changes.new_customers:
            cid = text(s.customer_id)
            row = (cid, s.first_address, _ts(s.first_seen))
            got = rollup.pop(cid, None)
            if got is None:
                customers.append(row)
            else:
                count, last, channel = got
                counted.append((*row, count, times[last], channel))
        # Each table's new keys in key order: inserting them is one walk down its B-tree, not
        # a random one per key (a random id's insert at 1 M customers: ~20 % cheaper sorted).
        # Stable, by the key alone: a key twice keeps its rows' order.
        customers.sort(key=_first)
        counted.sort(key=_first)
        return cls(
            customers=customers,
            counted=counted,
            addresses=sorted(addresses, key=_first),
            timeline=timeline,
            contacts=sorted(
                (cid, count, times[last], channel) for cid, (count, last, channel) in rollup.items()
            ),
            deliveries=changes.deliveries,
            ops=changes.ops,
        )


def _dt(text: str | None) -> datetime | None:
    # fromisoformat reads the trailing Z (3.11) and is ~50 times faster than strptime.
    return datetime.fromisoformat(text) if text else None


def _counted(count: int, last: int, channel: int) -> str:
    """A customer's contact figures after new contacts: how many (parameter ``count``), the
    latest one's time and channel."""
    return (
        f"contact_count = contact_count + ?{count}, "
        f"last_channel = CASE WHEN last_contact_at IS NULL OR ?{last} >= last_contact_at "
        f"THEN ?{channel} ELSE last_channel END, "
        f"last_contact_at = max(coalesce(last_contact_at, ''), ?{last})"
    )


# One customer's row with its addresses, last contacts and open conversations: the card in one
# statement, its nested parts as one JSON document (one decode).
_ROW_COLUMNS = (
    "c.customer_id, c.first_address, c.first_seen, c.contact_count, c.last_contact_at, "
    "c.last_channel, c.profile_version, c.last_agent, c.last_agent_at, c.merged_into, "
    "c.absorbed, json_array(json(c.profile), json(c.consent), "
    "(SELECT json_group_array(a.address) FROM addresses a WHERE a.customer_id = c.customer_id), "
    "(SELECT json_group_array(json_array(t.position, t.occurred_at, t.type, t.channel, "
    "t.direction, t.party, t.summary)) FROM (SELECT * FROM timeline WHERE owner_id = c.customer_id "
    "AND direction != 'internal' "
    f"ORDER BY occurred_at DESC, position DESC LIMIT {RECENT}) t), "
    "(SELECT json_group_array(json_array(v.conversation_id, v.channel, v.status, v.assignee, "
    "v.opened_at)) FROM conversations v "
    "WHERE v.owner_id = c.customer_id AND v.status != 'resolved'))"
)
_SHARED_COLUMN = 12


def _row(r: Any) -> CustomerRow:
    profile, consent, addresses, recent, conversations = json.loads(r[11])
    return CustomerRow(
        customer_id=UUID(r[0]),
        first_address=r[1],
        first_seen=_dt(r[2]),  # type: ignore[arg-type]
        contact_count=r[3],
        last_contact_at=_dt(r[4]),
        last_channel=r[5],
        profile=profile,
        profile_version=r[6],
        consent=consent,
        last_agent=r[7],
        last_agent_at=_dt(r[8]),
        merged_into=UUID(r[9]) if r[9] else None,
        absorbed=r[10],
        addresses=sorted(addresses),
        recent=[
            RecentContact(p, _dt(at), type_, ch, d, party, summary)  # type: ignore[arg-type]
            for p, at, type_, ch, d, party, summary in recent
        ],
        conversations=[
            OpenConversation(UUID(cid), ch, status, assignee, _dt(at))  # type: ignore[arg-type]
            for cid, ch, status, assignee, at in conversations
        ],
    )


class SQLiteTimelineView(FollowsSwaps, TimelineView, SQLiteTrackingRecorder):
    reads_in_process = True

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._start_following()

    def _read(self, query: str, params: tuple | list = ()) -> list[Any]:
        reader = self._reader()
        if reader is not None:
            return reader.execute(query, params).fetchall()
        with self.datastore.transaction(commit=False) as c:
            c.execute(query, params)
            return c.fetchall()

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("CREATE TABLE IF NOT EXISTS view_schema (version INTEGER NOT NULL)")
            c.execute("SELECT version FROM view_schema")
            row = c.fetchone()
            if row is not None and row[0] > SCHEMA:
                raise ViewFromTheFuture(row[0], SCHEMA)
            if row is None or row[0] != SCHEMA:
                # An older view (or none): drop it, and its position, to rebuild from zero.
                for table in _TABLES:
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tracking'")
                if c.fetchone():
                    c.execute(
                        "DELETE FROM tracking WHERE application_name != ?",
                        (self.table_migration_identifier,),
                    )
                c.execute("DELETE FROM view_schema")
                c.execute("INSERT INTO view_schema VALUES (?)", (SCHEMA,))
        super().create_table()

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements += [
            # The position (the event's notification id) is the rowid: inserts append.
            # customer_id: whose history holds the event; owner_id: whose timeline shows it
            # (the survivor's, after a merge).
            "CREATE TABLE IF NOT EXISTS timeline ("
            "position INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, owner_id TEXT NOT NULL, "
            "occurred_at TEXT NOT NULL, "
            "type TEXT NOT NULL, channel TEXT NOT NULL, direction TEXT NOT NULL, "
            "party TEXT NOT NULL, provider_ref TEXT NOT NULL, summary TEXT NOT NULL, "
            "payload TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS customers ("
            "customer_id TEXT PRIMARY KEY, first_address TEXT NOT NULL, first_seen TEXT NOT NULL, "
            "contact_count INTEGER NOT NULL DEFAULT 0, last_contact_at TEXT, last_channel TEXT, "
            "name_key TEXT, profile TEXT NOT NULL DEFAULT '{}', "
            "profile_version INTEGER NOT NULL DEFAULT 0, consent TEXT NOT NULL DEFAULT '{}', "
            "last_agent TEXT, last_agent_at TEXT, merged_into TEXT, "
            "absorbed INTEGER NOT NULL DEFAULT 0, dismissed TEXT NOT NULL DEFAULT '{}'"
            ") WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS addresses ("
            "address TEXT PRIMARY KEY, customer_id TEXT NOT NULL) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS shared_addresses ("
            "address TEXT NOT NULL, customer_id TEXT NOT NULL, "
            "PRIMARY KEY (address, customer_id)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS conversations ("
            "conversation_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, owner_id TEXT NOT NULL, "
            "channel TEXT NOT NULL, status TEXT NOT NULL, assignee TEXT, opened_at TEXT NOT NULL"
            ") WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS deliveries ("
            "message_ref TEXT PRIMARY KEY, customer_id TEXT NOT NULL, channel TEXT NOT NULL, "
            "status TEXT NOT NULL, updated_at TEXT NOT NULL) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS skipped ("
            "notification_id INTEGER PRIMARY KEY, reason TEXT NOT NULL, skipped_at TEXT NOT NULL)",
            *INDEXES.values(),
        ]
        return statements

    def apply(self, changes: TimelineChanges, tracking: Tracking) -> None:
        with self._writing(), self.datastore.transaction(commit=True) as c:
            self._insert_tracking(c, tracking)
            self.write(c, changes)

    def write(self, c: Any, changes: TimelineChanges) -> None:
        """The rows of ``changes``, in the transaction of cursor ``c`` (this view's file, or a
        rebuild's beside it: projections/rebuild_sqlite.py)."""
        self.write_rows(c, BatchRows.of(changes))

    def write_rows(self, c: Any, rows: BatchRows) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO customers (customer_id, first_address, first_seen) "
            "VALUES (?, ?, ?)",
            rows.customers,
        )
        # A new customer with its contacts: the insert and the contacts' update below in one
        # statement (the same row as inserting, then updating, would leave).
        c.executemany(
            "INSERT INTO customers (customer_id, first_address, first_seen, contact_count, "
            "last_contact_at, last_channel) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
            f"ON CONFLICT (customer_id) DO UPDATE SET {_counted(4, 5, 6)}",
            rows.counted,
        )
        c.executemany("INSERT OR IGNORE INTO addresses VALUES (?, ?)", rows.addresses)
        c.executemany(
            "INSERT INTO timeline VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.timeline
        )
        c.executemany(
            f"UPDATE customers SET {_counted(2, 3, 4)} WHERE customer_id = ?1", rows.contacts
        )
        self._apply_deliveries(c, rows.deliveries)
        for op in rows.ops:
            self._apply_op(c, op)

    def _apply_op(self, c: Any, op: DirectoryOp) -> None:
        if isinstance(op, ConsentSet):
            c.execute(
                "UPDATE customers SET consent = json_set(consent, ?, json(?)) "
                "WHERE customer_id = ?",
                (f'$."{op.key}"', "true" if op.granted else "false", str(op.customer_id)),
            )
        elif isinstance(op, AgentHandled):
            c.execute(
                "UPDATE customers SET last_agent = ?, last_agent_at = ? WHERE customer_id = ? "
                "AND (last_agent_at IS NULL OR last_agent_at <= ?)",
                (op.agent, _ts(op.at), str(op.customer_id), _ts(op.at)),
            )
        elif isinstance(op, ProfileSet):
            c.execute(
                "UPDATE customers SET profile = json_patch(profile, ?), "
                "profile_version = profile_version + 1 WHERE customer_id = ?",
                (json.dumps(op.changes), str(op.customer_id)),
            )
            c.execute(
                "UPDATE customers SET name_key = lower(json_extract(profile, '$.name')) "
                "WHERE customer_id = ?",
                (str(op.customer_id),),
            )
        elif isinstance(op, AddressAdded):
            if op.shared:
                c.execute(
                    "INSERT OR IGNORE INTO shared_addresses VALUES (?, ?)",
                    (op.address, str(op.customer_id)),
                )
                # A shared address nobody held yet is held by the first customer it names.
                c.execute(
                    "INSERT OR IGNORE INTO addresses VALUES (?, ?)",
                    (op.address, str(op.customer_id)),
                )
            else:
                c.execute(
                    "INSERT OR REPLACE INTO addresses VALUES (?, ?)",
                    (op.address, str(op.customer_id)),
                )
        elif isinstance(op, Merged):
            survivor, absorbed = str(op.survivor_id), str(op.absorbed_id)
            c.execute(
                "UPDATE addresses SET customer_id = ? WHERE customer_id = ?", (survivor, absorbed)
            )
            for table in ("timeline", "conversations"):
                c.execute(
                    f"UPDATE {table} SET owner_id = ? WHERE owner_id = ?", (survivor, absorbed)
                )
            c.execute(
                "UPDATE customers SET merged_into = ? WHERE customer_id = ?", (survivor, absorbed)
            )
            c.execute(
                "UPDATE customers SET absorbed = absorbed + 1 WHERE customer_id = ?", (survivor,)
            )
            self._recount(c, [survivor, absorbed])
        elif isinstance(op, Unmerged):
            survivor, absorbed = str(op.survivor_id), str(op.absorbed_id)
            c.executemany(
                "UPDATE addresses SET customer_id = ? WHERE address = ? AND customer_id = ?",
                [(absorbed, a, survivor) for a in with_phone_variants(op.addresses)],
            )
            for table in ("timeline", "conversations"):
                c.execute(
                    f"UPDATE {table} SET owner_id = ? WHERE owner_id = ? AND customer_id = ?",
                    (absorbed, survivor, absorbed),
                )
            c.executemany(
                "UPDATE timeline SET owner_id = ? WHERE owner_id = ? AND customer_id = ? "
                "AND type = ? AND channel = ? AND provider_ref = ?",
                [(absorbed, survivor, survivor, *key.split("|", 2)) for key in op.moved],
            )
            c.execute("UPDATE customers SET merged_into = NULL WHERE customer_id = ?", (absorbed,))
            c.execute(
                "UPDATE customers SET absorbed = absorbed - 1 WHERE customer_id = ?", (survivor,)
            )
            self._recount(c, [survivor, absorbed])
        elif isinstance(op, ConversationOpened):
            c.execute(
                "INSERT OR IGNORE INTO conversations VALUES (?, ?, ?, ?, 'open', NULL, ?)",
                (
                    str(op.conversation_id),
                    str(op.customer_id),
                    self._owner(c, str(op.customer_id)),
                    op.channel,
                    _ts(op.opened_at),
                ),
            )
        elif isinstance(op, ConversationChanged):
            c.execute(
                "UPDATE conversations SET status = ?, assignee = ? WHERE conversation_id = ?",
                (op.status, op.assignee, str(op.conversation_id)),
            )
        elif isinstance(op, Erased):
            # secure_delete: the freed pages are overwritten, not left for a file reader.
            c.execute("PRAGMA secure_delete=ON")
            ids = [str(i) for i in op.customer_ids]
            marks = ",".join("?" * len(ids))
            for table, column in _ERASE:
                c.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
        elif isinstance(op, DuplicateDismissed):
            c.execute(
                "UPDATE customers SET dismissed = json_set(dismissed, ?, ?) WHERE customer_id = ?",
                (f'$."{op.other_id}"', op.reason, str(op.customer_id)),
            )

    @staticmethod
    def _owner(c: Any, customer_id: str) -> str:
        """Whose card shows this customer's things: the survivor, if it was merged."""
        c.execute("SELECT merged_into FROM customers WHERE customer_id = ?", (customer_id,))
        row = c.fetchone()
        return row[0] if row and row[0] else customer_id

    @staticmethod
    def _recount(c: Any, customer_ids: list[str]) -> None:
        """A customer's contact figures from the contacts its timeline shows now."""
        for cid in customer_ids:
            c.execute(
                "UPDATE customers SET "
                "contact_count = (SELECT count(*) FROM timeline "
                "  WHERE owner_id = ?1 AND direction != 'internal'), "
                "last_contact_at = (SELECT max(occurred_at) FROM timeline "
                "  WHERE owner_id = ?1 AND direction != 'internal'), "
                "last_channel = (SELECT channel FROM timeline "
                "  WHERE owner_id = ?1 AND direction != 'internal' "
                "  ORDER BY occurred_at DESC, position DESC LIMIT 1) "
                "WHERE customer_id = ?1",
                (cid,),
            )

    def skip(self, notification_id: int, reason: str, tracking: Tracking) -> None:
        with self._writing(), self.datastore.transaction(commit=True) as c:
            self._insert_tracking(c, tracking)
            self.write_skip(c, notification_id, reason)

    @staticmethod
    def write_skip(c: Any, notification_id: int, reason: str) -> None:
        c.execute(
            "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?)",
            (notification_id, reason, _ts(datetime.now(UTC))),
        )

    def skipped(self) -> list[SkippedEvent]:
        self._follow_swap()
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM skipped ORDER BY notification_id")
            return [
                SkippedEvent(row[0], row[1], _dt(row[2]))  # type: ignore[arg-type]
                for row in c.fetchall()
            ]

    def _apply_deliveries(self, c: Any, reports: list[DeliveryReport]) -> None:
        if not reports:
            return
        refs = sorted({r.message_ref for r in reports})
        current: dict[str, DeliveryStatus] = {}
        for i in range(0, len(refs), 500):
            chunk = refs[i : i + 500]
            c.execute(
                "SELECT message_ref, status FROM deliveries WHERE message_ref IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            current.update((row[0], status_of(row[1])) for row in c.fetchall())
        c.executemany(
            "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_ref) DO UPDATE "
            "SET status = excluded.status, updated_at = excluded.updated_at",
            [
                (r.message_ref, str(r.customer_id), r.channel, str(r.status), _ts(r.occurred_at))
                for r in fold_delivery_reports(current, reports).values()
            ],
        )

    def files_in_use(self, sha256s: list[str]) -> set[str]:
        self._follow_swap()
        used: set[str] = set()
        with self.datastore.transaction(commit=False) as c:
            for sha in sha256s:
                c.execute("SELECT 1 FROM timeline WHERE instr(payload, ?) > 0 LIMIT 1", (sha,))
                if c.fetchone() is not None:
                    used.add(sha)
        return used

    def delivery_status(self, message_ref: str) -> DeliveryReport | None:
        self._follow_swap()
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM deliveries WHERE message_ref = ?", (message_ref,))
            row = c.fetchone()
        if row is None:
            return None
        return DeliveryReport(
            message_ref=row["message_ref"],
            customer_id=UUID(row["customer_id"]),
            channel=row["channel"],
            status=DeliveryStatus(row["status"]),
            occurred_at=_dt(row["updated_at"]),  # type: ignore[arg-type]
        )

    def timeline(
        self, customer_id: UUID, *, limit: int = 100, offset: int = 0
    ) -> list[TimelineEntry]:
        self._follow_swap()
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT * FROM timeline WHERE owner_id = ? "
                "ORDER BY occurred_at DESC, position DESC LIMIT ? OFFSET ?",
                (str(customer_id), limit, offset),
            )
            return [self._entry(row) for row in c.fetchall()]

    def summary(self, customer_id: UUID) -> CustomerSummary | None:
        self._follow_swap()
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM customers WHERE customer_id = ?", (str(customer_id),))
            row = c.fetchone()
        if row is None:
            return None
        return CustomerSummary(
            customer_id=UUID(row["customer_id"]),
            first_address=row["first_address"],
            first_seen=_dt(row["first_seen"]),  # type: ignore[arg-type]
            contact_count=row["contact_count"],
            last_contact_at=_dt(row["last_contact_at"]),
            last_channel=row["last_channel"],
        )

    def build_beside(self) -> SQLiteViewBuild | None:
        if self.datastore.pool.is_sqlite_memory_mode:
            return None
        from projections.rebuild_sqlite import SQLiteViewBuild

        return SQLiteViewBuild(self)

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for table in _TABLES:
                c.execute(f"DELETE FROM {table}")
            c.execute(
                "DELETE FROM tracking WHERE application_name != ?",
                (self.table_migration_identifier,),
            )

    # -- the directory's reads --------------------------------------------------------------

    def _lookup_row(self, variants: list[str]) -> tuple[CustomerRow | None, bool]:
        marks = ",".join("?" * len(variants))
        rows = self._read(
            f"SELECT {_ROW_COLUMNS}, "
            f"EXISTS (SELECT 1 FROM shared_addresses WHERE address IN ({marks})) "
            "FROM customers c WHERE c.customer_id = "
            f"(SELECT customer_id FROM addresses WHERE address IN ({marks}) LIMIT 1)",
            [*variants, *variants],
        )
        if rows:
            return _row(rows[0]), bool(rows[0][_SHARED_COLUMN])
        shared = self._read(
            f"SELECT 1 FROM shared_addresses WHERE address IN ({marks}) LIMIT 1", variants
        )
        return None, bool(shared)

    def _rows(self, customer_ids: list[UUID]) -> list[CustomerRow]:
        if not customer_ids:
            return []
        ids = [str(i) for i in customer_ids]
        rows = self._read(
            f"SELECT {_ROW_COLUMNS} FROM customers c "
            f"WHERE c.customer_id IN ({','.join('?' * len(ids))})",
            ids,
        )
        by_id = {r[0]: _row(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _absorbed_by(self, customer_id: UUID) -> list[UUID]:
        rows = self._read(
            "SELECT customer_id FROM customers WHERE merged_into = ? ORDER BY customer_id",
            (str(customer_id),),
        )
        return [UUID(r[0]) for r in rows]

    def _sharers(self, addresses: list[str]) -> list[UUID]:
        rows = self._read(
            "SELECT DISTINCT customer_id FROM shared_addresses "
            f"WHERE address IN ({','.join('?' * len(addresses))}) ORDER BY customer_id",
            addresses,
        )
        return [UUID(r[0]) for r in rows]

    def _holders(self, addresses: list[str]) -> dict[str, UUID]:
        if not addresses:
            return {}
        rows = self._read(
            "SELECT address, customer_id FROM addresses "
            f"WHERE address IN ({','.join('?' * len(addresses))})",
            addresses,
        )
        return {r[0]: UUID(r[1]) for r in rows}

    def _contacts_from(
        self, customer_id: UUID, addresses: list[str]
    ) -> tuple[datetime | None, int]:
        rows = self._read(
            "SELECT max(occurred_at), count(*) FROM timeline WHERE owner_id = ? "
            f"AND direction != 'internal' AND party IN ({','.join('?' * len(addresses))})",
            [str(customer_id), *addresses],
        )
        return _dt(rows[0][0]), rows[0][1]

    def _ids_by_prefix(self, text: str, limit: int) -> list[UUID]:
        prefix = text.strip().casefold()
        if not prefix:
            return []
        upper = prefix + "\U0010ffff"
        by_address = self._read(
            "SELECT DISTINCT customer_id FROM addresses WHERE address >= ? AND address < ? LIMIT ?",
            (prefix, upper, limit),
        )
        by_name = self._read(
            "SELECT customer_id FROM customers WHERE name_key >= ? AND name_key < ? "
            "AND merged_into IS NULL ORDER BY name_key LIMIT ?",
            (prefix, upper, limit),
        )
        ids = dict.fromkeys(UUID(r[0]) for r in (*by_address, *by_name))
        return list(ids)

    def _ids_by_email_base(self, base: str) -> list[UUID]:
        local, _, domain = base.rpartition("@")
        rows = self._read(
            "SELECT customer_id FROM addresses WHERE address = ? "
            "OR (address >= ? AND address < ? AND address LIKE ?)",
            (base, f"{local}+", f"{local},", f"%@{domain}"),
        )
        return [UUID(r[0]) for r in rows]

    def _ids_by_name(self, name_key: str) -> list[UUID]:
        rows = self._read(
            "SELECT customer_id FROM customers WHERE name_key = ? LIMIT 50", (name_key,)
        )
        return [UUID(r[0]) for r in rows]

    def _worked_counts(self) -> list[tuple[str, str, str, int]]:
        rows = self._read(
            "SELECT assignee, status, channel, count(*) FROM conversations "
            "WHERE status IN ('assigned', 'pending') AND assignee IS NOT NULL "
            "GROUP BY assignee, status, channel"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def assigned_to(self, agent: str, *, limit: int = 100) -> list[AgentConversation]:
        rows = self._read(
            "SELECT conversation_id, owner_id, channel, status, opened_at FROM conversations "
            "WHERE status IN ('assigned', 'pending') AND assignee = ? "
            "ORDER BY opened_at DESC LIMIT ?",
            (agent, limit),
        )
        return [
            AgentConversation(
                UUID(r[0]),
                UUID(r[1]),
                r[2],
                r[3],
                _dt(r[4]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    def _dismissed(self, customer_id: UUID) -> dict[str, str]:
        rows = self._read(
            "SELECT dismissed FROM customers WHERE customer_id = ?", (str(customer_id),)
        )
        return json.loads(rows[0][0]) if rows else {}

    @staticmethod
    def _entry(row: Any) -> TimelineEntry:
        return TimelineEntry(
            customer_id=UUID(row["customer_id"]),
            position=row["position"],
            occurred_at=_dt(row["occurred_at"]),  # type: ignore[arg-type]
            type=row["type"],
            channel=row["channel"],
            direction=row["direction"],
            party=row["party"],
            provider_ref=row["provider_ref"],
            summary=row["summary"],
            payload=full_payload(json.loads(row["payload"]), row),
        )
