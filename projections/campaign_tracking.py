"""What campaign tracking reads from the timeline view, in bulk: delivery statuses of many
messages, and the customers' inbound messages and consent changes since a moment.

A campaign of 10 000 recipients is tracked with a few dozen statements (chunks of
``CHUNK`` keys), not one per recipient.  Read-only, like ``projections.audience``; the rules
that turn these rows into a campaign's figures are ``services.campaigns.tracking``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

from projections.timeline import TimelineView
from projections.timeline_postgres import PostgresTimelineView
from projections.timeline_sqlite import SQLiteTimelineView

__all__ = ["CHUNK", "Delivery", "InboundRow", "delivery_statuses", "inbound_since"]

CHUNK = 500
# The inbound rows tracking looks at: replies, and consent given or withdrawn.
_KINDS = ("message.received.v1", "consent.changed.v1")


@dataclass(frozen=True, slots=True)
class InboundRow:
    customer_id: UUID  # the timeline it is on (a merged customer's survivor)
    occurred_at: datetime
    type: str
    channel: str
    provider_ref: str
    purpose: str | None = None  # consent changes only
    granted: bool | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """How far one outbound message got, and when it got there."""

    status: str
    at: datetime  # the report of that status (a "read" after "delivered": the read)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def delivery_statuses(view: TimelineView, message_refs: Iterable[str]) -> dict[str, Delivery]:
    """The furthest status each outbound message reached, and when (refs the view has not
    seen are left out)."""
    refs = sorted(set(message_refs))
    found: dict[str, Delivery] = {}
    for chunk in _chunks(refs):
        if isinstance(view, SQLiteTimelineView):
            marks = ",".join("?" * len(chunk))
            rows = _sqlite(
                view,
                "SELECT message_ref, status, updated_at FROM deliveries "
                f"WHERE message_ref IN ({marks})",
                list(chunk),
            )
            found.update((r[0], Delivery(r[1], datetime.fromisoformat(r[2]))) for r in rows)
        elif isinstance(view, PostgresTimelineView):
            query = SQL(
                "SELECT message_ref, status, updated_at FROM {0} WHERE message_ref = ANY(%s)"
            ).format(_pg_table(view, "deliveries"))
            found.update(
                (r["message_ref"], Delivery(r["status"], r["updated_at"]))
                for r in _pg(view, query, (list(chunk),))
            )
        else:
            raise TypeError(f"no tracking reader for {type(view).__name__}")
    return found


def inbound_since(
    view: TimelineView, customer_ids: Iterable[UUID], since: datetime
) -> list[InboundRow]:
    """The inbound messages and consent changes on these customers' timelines from ``since``
    on, oldest first."""
    ids = sorted(set(customer_ids), key=str)
    out: list[InboundRow] = []
    for chunk in _chunks(ids):
        if isinstance(view, SQLiteTimelineView):
            marks = ",".join("?" * len(chunk))
            rows = _sqlite(
                view,
                "SELECT owner_id, occurred_at, type, channel, provider_ref, payload FROM timeline "
                f"WHERE owner_id IN ({marks}) AND occurred_at >= ? AND direction = 'inbound' "
                "AND type IN (?, ?)",
                [*(str(c) for c in chunk), _sqlite_ts(since), *_KINDS],
            )
            for owner, at, kind, channel, ref, payload in rows:
                out.append(
                    _row(UUID(owner), datetime.fromisoformat(at), kind, channel, ref, payload)
                )
        elif isinstance(view, PostgresTimelineView):
            query = SQL(
                "SELECT owner_id, occurred_at, type, channel, provider_ref, payload FROM {0} "
                "WHERE owner_id = ANY(%s) AND occurred_at >= %s AND direction = 'inbound' "
                "AND type = ANY(%s)"
            ).format(_pg_table(view, "entries"))
            for r in _pg(view, query, (list(chunk), since, list(_KINDS))):
                out.append(
                    _row(
                        r["owner_id"],
                        r["occurred_at"],
                        r["type"],
                        r["channel"],
                        r["provider_ref"],
                        r["payload"],
                    )
                )
        else:
            raise TypeError(f"no tracking reader for {type(view).__name__}")
    out.sort(key=lambda r: r.occurred_at)
    return out


def _row(owner: UUID, at: datetime, kind: str, channel: str, ref: str, payload: Any) -> InboundRow:
    purpose = granted = None
    if kind == "consent.changed.v1":
        data = json.loads(payload) if isinstance(payload, str) else payload
        purpose, granted = data.get("purpose"), data.get("granted")
    return InboundRow(owner, at, kind, channel, ref, purpose, granted)


def _sqlite_ts(moment: datetime) -> str:
    # The view's fixed-width text (projections.timeline_sqlite._ts), so text order is time order.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sqlite(view: SQLiteTimelineView, statement: str, params: list[Any]) -> list[Any]:
    # Read-only, on the file the view names now (a rebuild may swap it), as audience rows are.
    datastore = view.datastore
    if datastore.pool.is_sqlite_memory_mode:
        with datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return [tuple(r) for r in c.fetchall()]
    conn = sqlite3.connect(f"file:{datastore.pool.db_name}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def _pg_table(view: PostgresTimelineView, name: str) -> Any:
    return SQL("{0}.{1}").format(Identifier(view.datastore.schema), Identifier(f"timeline_{name}"))


def _pg(view: PostgresTimelineView, query: Any, params: tuple[Any, ...]) -> list[Any]:
    with view.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query, params)
        return curs.fetchall()
