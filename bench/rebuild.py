"""Projection rebuild benchmark: the timeline view rebuilt from zero, beside its floor.

The customers are built through the store: ``CustomerHistory.record_interactions`` in batches
of 1 000 first contacts (calls and SMS from distinct numbers, bench/lookup.py's generator), two
stored events each (FirstContacted, InteractionRecorded).  The SQLite store is kept in
``var/bench-rebuild-<N>/`` (or --data-dir), so a second run reuses it; an interrupted build
resumes where it stopped.  ``--store postgres`` builds it anew in a throwaway cluster.

Then, in the same run:

- floor: every notification the view reads, read and decoded as the rebuild reads them
  (``read_page`` with the view's topics, the page's keys in one query with ``prefetch_keys``,
  ``mapper.to_domain_event``), nothing else; measured before and after the rebuild, the
  faster one counts;
- rebuild: ``projections.rebuild.rebuild_timeline`` — what ``switchboard projections rebuild``
  runs for the timeline — into the store's view (SQLite: ``views.db`` in the data dir), timed
  from its start until the new view answers;
- with ``--incremental``, also the live follower (``TimelineFollower``) from zero into a view
  of its own: what a rebuild cost before the bulk path.

    python bench/rebuild.py                         # 1 000 000 customers (first run builds)
    python bench/rebuild.py --customers 100000
    python bench/rebuild.py --store postgres --customers 100000   # throwaway cluster
    python bench/rebuild.py --customers 100000 --profile rebuild.prof   # cProfile the rebuild
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.table import Table

from bench.lookup import first_contact
from projections.follower import TimelineFollower, prefetch_keys
from projections.log_pages import read_page
from projections.rebuild import LOAD_BATCH, rebuild_timeline
from projections.timeline import TOPICS
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.bootstrap.stores import open_history, open_timeline_view
from services.history.customers import dedupe_key

BATCH = 1000
READ_BATCH = LOAD_BATCH  # the floor reads as the rebuild reads
TARGET_EPS, TARGET_RATIO = 50_000.0, 0.40
TARGET_TEXT = (
    "DESIGN: projection rebuild from zero >= 50 000 events/s and >= 40 % of the read+decode "
    "rate of the same events measured in the same run"
)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- the store ----------------------------------------------------------------------------------


def _first_unrecorded_batch(history: Any, customers: int) -> int:
    """Batches commit whole and in order: the first one not stored yet (to resume)."""

    def stored(b: int) -> bool:
        last = min(customers, (b + 1) * BATCH) - 1
        key = dedupe_key(first_contact(last))
        return key in history.known_refs([key])

    lo, hi = 0, math.ceil(customers / BATCH)
    while lo < hi:
        mid = (lo + hi) // 2
        if stored(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def build_store(settings: Settings, customers: int) -> int:
    """N customers through CustomerHistory (kept between runs on SQLite); the events stored."""
    marker = settings.data_dir / "built.json"
    history = bootstrap(settings).history()
    if marker.exists() and json.loads(marker.read_text()).get("customers") == customers:
        say(f"reusing the store in {settings.data_dir} ({customers:,} customers)")
        return history.recorder.max_notification_id() or 0
    started = time.perf_counter()
    batches = math.ceil(customers / BATCH)
    first = _first_unrecorded_batch(history, customers)
    if first:
        say(f"resuming the build after {min(customers, first * BATCH):,} customers")
    say(f"building {customers:,} customers through CustomerHistory in {settings.data_dir}")
    shown = -1
    for b in range(first, batches):
        history.record_interactions(
            [first_contact(i) for i in range(b * BATCH, min(customers, (b + 1) * BATCH))]
        )
        done = min(customers, (b + 1) * BATCH)
        if (tenth := done * 10 // customers) > shown:
            shown = tenth
            elapsed = time.perf_counter() - started
            say(f"  recorded {done:>11,}/{customers:,} customers in {elapsed:5.0f}s")
    history.forget_cached_customers()
    say(f"built {customers:,} customers in {time.perf_counter() - started:.0f}s")
    if not settings.is_postgres:
        marker.write_text(json.dumps({"customers": customers}))
    return history.recorder.max_notification_id() or 0


# -- the measurements ---------------------------------------------------------------------------


def read_and_decode(settings: Settings) -> dict[str, float]:
    """The floor: every notification the view reads, read and decoded, nothing else."""
    history = bootstrap(settings).history(cached=False)
    to_domain = history.mapper.to_domain_event
    started, cpu = time.perf_counter(), time.process_time()
    position, events = 0, 0
    while batch := read_page(history.recorder, start=position, limit=READ_BATCH, topics=TOPICS):
        prefetch_keys(history, batch)  # a page's keys in one query, as the rebuild reads
        for n in batch:
            to_domain(n)
        events += len(batch)
        position = batch[-1].id
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    history.close()
    return {"events": events, "seconds": seconds, "cpu": cpu, "eps": events / seconds}


def rebuild(settings: Settings, profile: Path | None) -> dict[str, float]:
    """``rebuild_timeline`` into the store's own view, as ``projections rebuild`` does."""
    history = bootstrap(settings).history(cached=False)
    view = open_timeline_view(settings)
    profiler = cProfile.Profile() if profile else None
    started, cpu, workers = time.perf_counter(), time.process_time(), _children_cpu()
    if profiler is not None:
        profiler.enable()
    position = rebuild_timeline(
        history, view, open_source=partial(open_history, settings, cached=False)
    )
    if profiler is not None:
        profiler.disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    workers = _children_cpu() - workers
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
        say(f"cProfile of the rebuild written to {profile}")
    view = open_timeline_view(settings)  # what a process opening the view now sees
    events = _events_upto(history, position)
    result = {
        "events": events,
        "seconds": seconds,
        "cpu": cpu + workers,
        "writer_cpu": cpu,
        "eps": events / seconds,
        "position": position,
        "tracked": view.max_tracking_id(history.name) or 0,
        "skipped": len(view.skipped()),
    }
    history.close()
    return result


def _children_cpu() -> float:
    """CPU seconds of this process's ended children (the load's reader processes)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def incremental(settings: Settings) -> dict[str, float]:
    """The view reset and followed from zero by the live follower (``TimelineFollower``, as
    ``projections rebuild`` did before the bulk path)."""
    history = bootstrap(settings).history(cached=False)
    view = open_timeline_view(settings)
    started, cpu = time.perf_counter(), time.process_time()
    view.reset()
    follower = TimelineFollower(history, view)
    follower.catch_up()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    events = _events_upto(history, follower.position)
    history.close()
    return {"events": events, "seconds": seconds, "cpu": cpu, "eps": events / seconds}


def _events_upto(history: Any, position: int) -> int:
    """How many of the view's events the store holds up to ``position``."""
    count, start = 0, 0
    while batch := history.recorder.select_notifications(
        start=start, limit=50_000, stop=position, topics=TOPICS, inclusive_of_start=False
    ):
        count += len(batch)
        start = batch[-1].id
    return count


def check_view(settings: Settings, customers: int) -> None:
    """The rebuilt view knows the first and the last customer (a cheap sanity check)."""
    view = open_timeline_view(settings)
    from bench.lookup import customer_address

    for i in (0, customers - 1):
        card = view.lookup(customer_address(i)).card
        if card is None or card.contact_count != 1:
            raise SystemExit(f"the rebuilt view does not show customer {i} as expected: {card}")


# -- the report -----------------------------------------------------------------------------


def report(args: argparse.Namespace, floors: list[dict], results: dict[str, dict]) -> int:
    floor = max(floors, key=lambda f: f["eps"])
    table = Table(
        title=f"timeline rebuild from zero, {args.customers:,} customers ({args.store}), "
        f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )
    for column in ("what", "events", "seconds", "CPU s", "events/s", "of floor", "CPU of floor"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for i, f in enumerate(floors):
        table.add_row(
            f"floor: read + decode ({'before' if i == 0 else 'after'})",
            f"{f['events']:,}",
            f"{f['seconds']:.1f}",
            f"{f['cpu']:.1f}",
            f"{f['eps']:,.0f}",
            f"{f['eps'] / floor['eps']:.0%}",
            f"{floor['cpu'] / f['cpu']:.0%}",
        )
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['events']:,}",
            f"{r['seconds']:.1f}",
            f"{r['cpu']:.1f}",
            f"{r['eps']:,.0f}",
            f"{r['eps'] / floor['eps']:.0%}",
            f"{floor['cpu'] / r['cpu']:.0%}",
        )
    Console(width=110).print(table)
    built = results["rebuild (bulk, real path)"]
    print(
        f"rebuilt view: tracking at event {built['tracked']:,}, {built['skipped']:,} skipped; "
        f"CPU: {built['writer_cpu']:.1f} s writing (this process), "
        f"{built['cpu'] - built['writer_cpu']:.1f} s reading and preparing (worker processes); "
        f"{os.cpu_count()} cores"
    )
    print(TARGET_TEXT)
    checks = [
        (f"rebuild >= {TARGET_EPS:,.0f} events/s", built["eps"] >= TARGET_EPS),
        (
            f"rebuild >= {TARGET_RATIO:.0%} of read+decode",
            built["eps"] / floor["eps"] >= TARGET_RATIO,
        ),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0


def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="sb-bench-rebuild-"))
    cluster = None
    try:
        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            say("starting a throwaway PostgreSQL cluster (the store is built anew) ...")
            cluster = start_throwaway_cluster()
            settings = Settings(data_dir=work / "pg", store=cluster.create_database())
        else:
            data_dir = args.data_dir or ROOT / "var" / f"bench-rebuild-{args.customers}"
            settings = Settings(data_dir=data_dir.resolve(), store="sqlite")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        build_store(settings, args.customers)
        floors = []
        say("floor: read + decode every notification ...")
        floors.append(read_and_decode(settings))
        results: dict[str, dict] = {}
        if args.incremental:
            say("the live follower from zero into a fresh view ...")
            results["live follower from zero (before)"] = incremental(settings)
        say("rebuild ...")
        results["rebuild (bulk, real path)"] = rebuild(settings, args.profile)
        check_view(settings, args.customers)
        say("floor again ...")
        floors.append(read_and_decode(settings))
        return report(args, floors, results)
    finally:
        if cluster is not None:
            cluster.discard()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--data-dir", type=Path, help="where the SQLite store is kept (var/bench-rebuild-<N>/)"
    )
    parser.add_argument(
        "--incremental", action="store_true", help="also time the live follower from zero"
    )
    parser.add_argument("--profile", type=Path, help="cProfile the rebuild into this file")
    args = parser.parse_args()
    try:
        sys.exit(bench(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
