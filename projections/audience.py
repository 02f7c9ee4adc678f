"""The campaign audience's source: every customer of the timeline view, streamed read-only.

A campaign looks at the whole directory (filtering happens in Python, see
``services.campaigns.audience``), so the rows come in pages by customer id (keyset, one
short statement each: no read transaction held across a 1 M-customer scan, which on SQLite
would keep the follower's WAL from being checkpointed).  Customers merged into another
(``merged_into`` set) are left out: their survivor stands for them, with their addresses.

Besides the customer row, each carries when the customer last wrote on WhatsApp (the 24-hour
window in which free text may be sent), looked up only for customers with a WhatsApp address.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

from projections.timeline import TimelineView
from projections.timeline_postgres import PostgresTimelineView
from projections.timeline_sqlite import SQLiteTimelineView

__all__ = ["AudienceRow", "audience_rows"]

PAGE = 5_000


@dataclass(frozen=True, slots=True)
class AudienceRow:
    customer_id: UUID
    addresses: tuple[str, ...]
    profile: dict[str, Any]
    consent: dict[str, bool]  # "<channel>:<purpose>" -> granted
    last_contact_at: datetime | None
    # channel -> the customer's last inbound message there (only "whatsapp" is filled in)
    last_inbound_at: dict[str, datetime] = field(default_factory=dict)


def audience_rows(view: TimelineView, *, page: int = PAGE) -> Iterator[AudienceRow]:
    """Every customer not merged into another, in customer id order."""
    if isinstance(view, SQLiteTimelineView):
        return _sqlite_rows(view, page)
    if isinstance(view, PostgresTimelineView):
        return _postgres_rows(view, page)
    raise TypeError(f"no audience reader for {type(view).__name__}")


_SQLITE_PAGE = (
    "SELECT c.customer_id, c.profile, c.consent, c.last_contact_at, "
    "(SELECT json_group_array(a.address) FROM addresses a WHERE a.customer_id = c.customer_id), "
    "CASE WHEN EXISTS (SELECT 1 FROM addresses a WHERE a.customer_id = c.customer_id "
    "  AND a.address >= 'whatsapp:' AND a.address < 'whatsapp;') "
    "THEN (SELECT t.occurred_at FROM timeline t WHERE t.owner_id = c.customer_id "
    "  AND t.channel = 'whatsapp' AND t.direction = 'inbound' "
    "  ORDER BY t.occurred_at DESC LIMIT 1) END "
    "FROM customers c WHERE c.merged_into IS NULL AND c.customer_id > ? "
    "ORDER BY c.customer_id LIMIT ?"
)


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _sqlite_rows(view: SQLiteTimelineView, page: int) -> Iterator[AudienceRow]:
    last = ""
    while True:
        rows = _sqlite_page(view, last, page)
        for cid, profile, consent, last_contact, addresses, whatsapp_in in rows:
            inbound = {"whatsapp": _dt(whatsapp_in)} if whatsapp_in else {}
            yield AudienceRow(
                customer_id=UUID(cid),
                addresses=tuple(sorted(json.loads(addresses))),
                profile=json.loads(profile),
                consent=json.loads(consent),
                last_contact_at=_dt(last_contact),
                last_inbound_at=inbound,  # type: ignore[arg-type]
            )
        if len(rows) < page:
            return
        last = rows[-1][0]


def _sqlite_page(view: SQLiteTimelineView, after: str, page: int) -> list[Any]:
    # The view's file, opened read-only here: a rebuild may swap the file between pages, and
    # the datastore attribute always names the current one.
    datastore = view.datastore
    if datastore.pool.is_sqlite_memory_mode:
        with datastore.transaction(commit=False) as c:
            c.execute(_SQLITE_PAGE, (after, page))
            return c.fetchall()
    conn = sqlite3.connect(f"file:{datastore.pool.db_name}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(_SQLITE_PAGE, (after, page)).fetchall()
    finally:
        conn.close()


def _postgres_rows(view: PostgresTimelineView, page: int) -> Iterator[AudienceRow]:
    schema = Identifier(view.datastore.schema)
    table = {
        name: SQL("{0}.{1}").format(schema, Identifier(f"timeline_{name}"))
        for name in ("customers", "addresses", "entries")
    }
    query = SQL(
        "SELECT c.customer_id, c.profile, c.consent, c.last_contact_at, "
        "(SELECT coalesce(array_agg(a.address), '{{}}') FROM {addresses} a "
        " WHERE a.customer_id = c.customer_id) AS addresses, "
        "CASE WHEN EXISTS (SELECT 1 FROM {addresses} a WHERE a.customer_id = c.customer_id "
        "  AND a.address LIKE 'whatsapp:%%') "
        "THEN (SELECT t.occurred_at FROM {entries} t WHERE t.owner_id = c.customer_id "
        "  AND t.channel = 'whatsapp' AND t.direction = 'inbound' "
        "  ORDER BY t.occurred_at DESC LIMIT 1) END AS whatsapp_in "
        "FROM {customers} c WHERE c.merged_into IS NULL AND c.customer_id > %s "
        "ORDER BY c.customer_id LIMIT %s"
    ).format(**table)
    last = UUID(int=0)
    while True:
        with view.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (last, page))
            rows = curs.fetchall()
        for r in rows:
            yield AudienceRow(
                customer_id=r["customer_id"],
                addresses=tuple(sorted(r["addresses"])),
                profile=r["profile"] or {},
                consent=r["consent"] or {},
                last_contact_at=r["last_contact_at"],
                last_inbound_at={"whatsapp": r["whatsapp_in"]} if r["whatsapp_in"] else {},
            )
        if len(rows) < page:
            return
        last = rows[-1]["customer_id"]
