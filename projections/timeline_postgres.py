"""The timeline view on PostgreSQL (same database as the event store, its own tables)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

from contracts import DeliveryStatus
from projections.timeline import (
    CustomerSummary,
    DeliveryReport,
    SkippedEvent,
    TimelineChanges,
    TimelineEntry,
    TimelineView,
    contact_rollup,
    fold_delivery_reports,
    payload_json,
    storable,
)


class PostgresTimelineView(TimelineView, PostgresTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self._t = {
            name: SQL("{0}.{1}").format(schema, Identifier(f"timeline_{name}"))
            for name in ("entries", "customers", "addresses", "deliveries", "skipped")
        }
        t = self._t
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "position bigint PRIMARY KEY, customer_id uuid NOT NULL, "
                "occurred_at timestamptz NOT NULL, type text NOT NULL, channel text NOT NULL, "
                "direction text NOT NULL, party text NOT NULL, provider_ref text NOT NULL, "
                "summary text NOT NULL, payload jsonb NOT NULL)"
            ).format(t["entries"]),
            SQL(
                "CREATE INDEX IF NOT EXISTS timeline_entries_by_time "
                "ON {0} (customer_id, occurred_at, position)"
            ).format(t["entries"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "customer_id uuid PRIMARY KEY, first_address text NOT NULL, "
                "first_seen timestamptz NOT NULL, contact_count bigint NOT NULL DEFAULT 0, "
                "last_contact_at timestamptz, last_channel text)"
            ).format(t["customers"]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "address text PRIMARY KEY, customer_id uuid NOT NULL)"
            ).format(t["addresses"]),
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
        ]

    def apply(self, changes: TimelineChanges, tracking: Tracking) -> None:
        t = self._t
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            if changes.new_customers:
                curs.executemany(
                    SQL(
                        "INSERT INTO {0} VALUES (%s, %s, %s, 0, NULL, NULL) ON CONFLICT DO NOTHING"
                    ).format(t["customers"]),
                    [
                        (s.customer_id, storable(s.first_address), s.first_seen)
                        for s in changes.new_customers
                    ],
                )
            if changes.addresses:
                curs.executemany(
                    SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                        t["addresses"]
                    ),
                    [(storable(address), cid) for address, cid in changes.addresses],
                )
            if changes.entries:
                with curs.copy(SQL("COPY {0} FROM STDIN").format(t["entries"])) as copy:
                    for e in changes.entries:
                        copy.write_row(
                            (
                                e.position,
                                e.customer_id,
                                e.occurred_at,
                                *storable([e.type, e.channel, e.direction, e.party]),
                                *storable([e.provider_ref, e.summary]),
                                payload_json(e.payload),
                            )
                        )
                curs.executemany(
                    SQL(
                        "UPDATE {0} SET contact_count = contact_count + %s, "
                        "last_channel = CASE WHEN last_contact_at IS NULL OR %s >= last_contact_at "
                        "THEN %s ELSE last_channel END, "
                        "last_contact_at = GREATEST(last_contact_at, %s) WHERE customer_id = %s"
                    ).format(t["customers"]),
                    [
                        (count, last, channel, last, cid)
                        for cid, (count, last, channel) in contact_rollup(changes.entries).items()
                    ],
                )
            self._apply_deliveries(curs, changes.deliveries)

    def _apply_deliveries(self, curs: Any, reports: list[DeliveryReport]) -> None:
        if not reports:
            return
        t = self._t["deliveries"]
        curs.execute(
            SQL("SELECT message_ref, status FROM {0} WHERE message_ref = ANY(%s)").format(t),
            (sorted({r.message_ref for r in reports}),),
        )
        current = {row["message_ref"]: DeliveryStatus(row["status"]) for row in curs.fetchall()}
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
            curs.execute(
                SQL(
                    "INSERT INTO {0} (notification_id, reason) VALUES (%s, %s) "
                    "ON CONFLICT (notification_id) DO UPDATE SET reason = excluded.reason"
                ).format(self._t["skipped"]),
                (notification_id, storable(reason)),
            )

    def skipped(self) -> list[SkippedEvent]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {0} ORDER BY notification_id").format(self._t["skipped"])
            )
            return [SkippedEvent(**row) for row in curs.fetchall()]

    def delivery_status(self, message_ref: str) -> DeliveryReport | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {0} WHERE message_ref = %s").format(self._t["deliveries"]),
                (message_ref,),
            )
            row = curs.fetchone()
        if row is None:
            return None
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
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT * FROM {0} WHERE customer_id = %s "
                    "ORDER BY occurred_at DESC, position DESC LIMIT %s OFFSET %s"
                ).format(self._t["entries"]),
                (customer_id, limit, offset),
            )
            return [TimelineEntry(**row) for row in curs.fetchall()]

    def customer_for_address(self, address: str) -> UUID | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT customer_id FROM {0} WHERE address = %s").format(self._t["addresses"]),
                (address,),
            )
            row = curs.fetchone()
        return row["customer_id"] if row else None

    def summary(self, customer_id: UUID) -> CustomerSummary | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {0} WHERE customer_id = %s").format(self._t["customers"]),
                (customer_id,),
            )
            row = curs.fetchone()
        return CustomerSummary(**row) if row else None

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
