"""Store footprint: where the bytes of N interactions go, per table and index, per interaction.

Records N simulated interactions (the simulator's mix of calls, SMS, e-mails, WhatsApp;
``bench/ingest.py``'s generator) through ``CustomerHistory.record_interactions`` in batches of
500, as the recorder does, then brings the timeline and reachability views up to date with
their followers, and prints for each table and index its size and its bytes per interaction:

- SQLite: every database file the hub writes (``history.db``, the keyring, ``views.db``, the
  reachability file), sized with SQLite's ``dbstat`` (pages in use, by table and index);
- PostgreSQL (``--store postgres``, a throwaway cluster): ``pg_relation_size`` of every table,
  index and TOAST relation, and the WAL the run wrote.

Then it splits the two biggest items: a stored event's bytes (the clear JSON, the sealed
part, the sealing's own header, nonce and tag, the row's key and topic) and a timeline row's
columns (how much of the payload repeats the row's own columns).  Bytes do not depend on the
machine's load, so these figures are reproducible on a busy machine.

    python bench/footprint.py                      # 20 000 interactions, SQLite
    python bench/footprint.py --n 100000 --store postgres
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson
from eventsourcing.persistence import Tracking
from rich.console import Console
from rich.table import Table

from bench.ingest import make_records
from contracts import parse_interaction
from projections.follower import TimelineFollower
from projections.reachability_store import ReachabilityFollower
from services.bootstrap.settings import Settings
from services.bootstrap.stores import open_history, open_reachability_view, open_timeline_view
from services.history.sealing import _HEADER, SEALED

BATCH = 500
NONCE_AND_TAG = 12 + 16  # AES-GCM
ENVELOPE = ("type", "channel", "direction", "party", "provider_ref")

console = Console(stderr=True)


def record(settings: Settings, n: int, customers: int) -> None:
    console.print(f"recording {n:,} simulated interactions of {customers:,} customers ...")
    records = make_records(n, customers)
    history = open_history(settings)
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        parsed = [parse_interaction(value) for _, value in records[i : i + BATCH]]
        history.record_interactions(parsed, trackings=[Tracking("bench.footprint/0", i + BATCH)])
    console.print(f"  recorded in {time.perf_counter() - started:.1f}s; following the views ...")
    timeline = TimelineFollower(history, open_timeline_view(settings))
    timeline.catch_up()
    reach = ReachabilityFollower(history, open_reachability_view(settings))
    reach.catch_up()
    history.close()


# -- measuring -----------------------------------------------------------------------------


def sqlite_sizes(data_dir: Path) -> list[tuple[str, str, int]]:
    """(file, table or index, bytes in use) of every SQLite file under ``data_dir``."""
    rows = []
    for path in sorted(data_dir.glob("*.db")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for name, size in db.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name HAVING SUM(pgsize) > 4096"
            ):
                rows.append((path.name, name, int(size)))
    return rows


def postgres_sizes(url: str) -> list[tuple[str, str, int]]:
    import psycopg

    with psycopg.connect(url) as db:
        found = db.execute(
            "SELECT c.relkind, c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND c.relkind IN ('r', 'i', 't') AND pg_relation_size(c.oid) > 8192"
        ).fetchall()
    kinds = {"r": "table", "i": "index", "t": "toast"}
    return [(kinds[k], name, int(size)) for k, name, size in found]


def event_split(settings: Settings) -> dict[str, float]:
    """The bytes of a stored event of the customers, on average, split by what they are."""
    history = open_history(settings, cached=False)
    parts = dict.fromkeys(("events", "key", "topic", "header", "clear", "nonce+tag", "sealed"), 0.0)
    start = 0
    while batch := history.recorder.select_notifications(start=start, limit=10_000):
        start = batch[-1].id + 1
        for stored in batch:
            parts["events"] += 1
            parts["key"] += 16 + 8  # the originator id and version, as the store keeps them
            parts["topic"] += len(stored.topic)
            state = stored.state
            if state[:1] != bytes([SEALED]):
                parts["clear"] += len(state)
                continue
            clear_len = _HEADER.unpack_from(state)[2]
            parts["header"] += _HEADER.size
            parts["clear"] += clear_len
            parts["nonce+tag"] += NONCE_AND_TAG
            parts["sealed"] += len(state) - _HEADER.size - clear_len - NONCE_AND_TAG
    history.close()
    count = parts.pop("events") or 1
    return {k: v / count for k, v in parts.items()}


def timeline_split(settings: Settings) -> tuple[dict[str, float], float]:
    """Average bytes per timeline column, and how many of the payload's repeat columns."""
    columns = (
        "customer_id",
        "owner_id",
        "occurred_at",
        "type",
        "channel",
        "direction",
        "party",
        "provider_ref",
        "summary",
        "payload",
    )
    sums = dict.fromkeys(columns, 0.0)
    repeated = 0.0
    rows = 0
    for row in _timeline_rows(settings, ", ".join(columns), 5_000):
        rows += 1
        for c in columns:
            value = row[c]
            sums[c] += len(value if isinstance(value, str) else orjson.dumps(value))
        payload = row["payload"]
        if not isinstance(payload, dict):
            payload = orjson.loads(payload)
        for key in ENVELOPE:
            if key in payload and payload[key] == row[key]:
                repeated += len(orjson.dumps({key: payload[key]})) - 1  # "key":"value",
    rows = rows or 1
    return {c: v / rows for c, v in sums.items()}, repeated / rows


def _timeline_rows(settings: Settings, columns: str, limit: int) -> list[dict[str, Any]]:
    if settings.is_postgres:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(settings.store, row_factory=dict_row) as db:
            return db.execute(
                f"SELECT {columns} FROM timeline_entries ORDER BY position LIMIT %s", (limit,)
            ).fetchall()
    with sqlite3.connect(f"file:{settings.sqlite_path('views')}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        found = db.execute(
            f"SELECT {columns} FROM timeline ORDER BY position LIMIT ?", (limit,)
        ).fetchall()
    return [dict(r) for r in found]


# -- the report ----------------------------------------------------------------------------


def report(sizes: list[tuple[str, str, int]], n: int, store: str, extra: dict[str, int]) -> None:
    table = Table(title=f"footprint of {n:,} interactions ({store})")
    for column in ("where", "table / index", "MiB", "bytes per interaction"):
        left = column in ("where", "table / index")
        table.add_column(column, justify="left" if left else "right")
    total = 0
    for where, name, size in sorted(sizes, key=lambda r: -r[2]):
        total += size
        table.add_row(where, name, f"{size / 2**20:.1f}", f"{size / n:,.0f}")
    for name, size in extra.items():
        table.add_row("", name, f"{size / 2**20:.1f}", f"{size / n:,.0f}")
    table.add_row("", "total (tables and indexes)", f"{total / 2**20:.1f}", f"{total / n:,.0f}")
    Console(width=100).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="interactions (default 20 000)")
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    if args.n < 1 or args.customers < 1:
        parser.error("--n and --customers must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="sb-bench-footprint-"))
    cluster = None
    try:
        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            cluster = start_throwaway_cluster()
            settings = Settings(data_dir=work, store=cluster.create_database())
            wal_before = _wal_lsn(settings.store)
        else:
            settings = Settings(data_dir=work, store="sqlite")
        record(settings, args.n, args.customers)
        extra: dict[str, int] = {}
        if args.store == "postgres":
            sizes = postgres_sizes(settings.store)
            extra["WAL written during the run"] = _wal_lsn(settings.store) - wal_before
        else:
            sizes = sqlite_sizes(work)
        report(sizes, args.n, args.store, extra)
        parts = event_split(settings)
        print(
            "a stored customer event, on average: "
            + ", ".join(f"{k} {v:,.0f} B" for k, v in parts.items())
            + f" (total {sum(parts.values()):,.0f} B)"
        )
        columns, repeated = timeline_split(settings)
        print(
            "a timeline row, on average: "
            + ", ".join(f"{k} {v:,.0f} B" for k, v in columns.items())
            + f"; of its payload, {repeated:,.0f} B repeat the row's own columns"
        )
    finally:
        if cluster is not None:
            cluster.discard()
        shutil.rmtree(work, ignore_errors=True)


def _wal_lsn(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        row: Any = db.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0])


if __name__ == "__main__":
    main()
