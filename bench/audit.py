"""Audit benchmark (issue 14): what tamper evidence, sealing and replay cost, beside floors.

Three measurements, each beside a floor measured in the same run, with the load average:

1. ``audit verify``: ``services.audit.verify.verify_chain`` in one process, then in as many
   as ``switchboard audit verify`` uses (ranges side by side), over a store of --events events
   (first contacts of --events/2 customers, two events each, recorded through
   ``CustomerHistory.record_interactions`` by bench/rebuild.py's ``build_store``; kept in
   ``var/bench-audit-<N>/`` so a second run reuses it).  Floor: the same stored rows read
   (``select_notifications``, verify's page size) and decoded (``mapper.to_domain_event``,
   keys fetched a page at a time with ``prepare_stored`` as the followers do), before and
   after the verify, the faster one counts.  A diagnostic row: the verifier's own reads (the
   events' bytes and the chain rows) without the hashing.
2. Ingest with per-customer sealing on and off: --ingest interactions of deploy/simulator.py's
   traffic (--ingest-customers people, Zipf-like: a few return often, most are new), recorded
   in batches of 500 into a fresh store per run, sealing off and on alternately (--rounds
   pairs).  The floor is sealing off.  Also the stored bytes per event of each (PostgreSQL:
   the database's size, an empty one's ~7 MB included).
3. One customer with --replay-events events (kept in ``var/bench-audit-replay-<M>/``):
   ``get_customer`` with snapshots (one every 100 events) and from all its events (a second
   history over the same store with snapshotting off), and the auditor's as-of replay at its
   last version (``services.audit.replay``).  Floor: its events read and decoded.

    python bench/audit.py                                   # 1 000 000 events (first run builds)
    python bench/audit.py --events 200000 --ingest 30000 --rounds 1
    python bench/audit.py --store postgres --events 200000  # throwaway cluster, built anew
    python bench/audit.py --events 200000 --profile verify.prof --only verify
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.table import Table

from bench.rebuild import build_store
from contracts import CallRinging, Channel, Direction, InteractionEvent, MessageReceived
from contracts.interactions import parse_interaction
from deploy.simulator import TrafficGenerator, make_customers
from services.audit.replay import moment_of_version, replay
from services.audit.verify import PAGE, default_workers, verify_chain
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.history.customers import SNAPSHOT_INTERVAL, CustomerHistory
from services.history.sealing import CustomerErased, ErasedEvent

INGEST_BATCH = 500
REPLAY_BATCH = 500
TARGET_VERIFY_EPS, TARGET_VERIFY_RATIO = 200_000.0, 0.50
TARGET_SEALING_SLOWDOWN = 0.20
TARGET_TEXT = (
    "ISSUE 14: audit verify >= 200 000 events/s and >= 50 % of the read+decode rate of the "
    "same rows; ingest with sealing on at most 20 % slower than with it off"
)
REPLAY_PARTY = "+493077000000"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load() -> str:
    """The load average (1, 5, 15 minutes): other engineers' tests share the machine."""
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def load_now() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _open_history(
    settings: Settings, *, cached: bool, seal: bool = True, **env: str
) -> CustomerHistory:
    """The history as ``open_history`` builds it, with library settings changed: what
    ``bootstrap(...).history()`` cannot be asked for (sealing or snapshotting off)."""
    if not settings.is_postgres:
        settings.sqlite_path("history").parent.mkdir(parents=True, exist_ok=True)
    if not cached:
        env = {"AGGREGATE_CACHE_MAXSIZE": "", **env}
    history = CustomerHistory(env={**settings.event_store_env(), **env}, seal=seal)
    history.migrate_identities()  # as open_history does (nothing, on a new store)
    return history


# -- 1. audit verify --------------------------------------------------------------------------


def read_and_decode(settings: Settings) -> dict[str, Any]:
    """The floor: every stored row read a page at a time and decoded, nothing else."""
    history = bootstrap(settings).history(cached=False)
    select, to_domain = history.recorder.select_notifications, history.mapper.to_domain_event
    prepare = getattr(history.mapper, "prepare_stored", None)
    started, cpu = time.perf_counter(), time.process_time()
    position, events, unreadable = 0, 0, 0
    while batch := select(start=position, limit=PAGE, inclusive_of_start=False):
        if prepare is not None:
            prepare(batch)
        for n in batch:
            unreadable += type(to_domain(n)) is ErasedEvent
        events += len(batch)
        position = batch[-1].id
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    history.close()
    if unreadable:
        # No customer of the bench store was erased: their keys are not where this release
        # looks for them, and a floor that decrypts nothing would flatter nothing.
        raise SystemExit(
            f"{unreadable:,} of {events:,} events read as erased: the keyring is missing "
            f"(remove {settings.data_dir} to build the store again)"
        )
    return {"events": events, "seconds": seconds, "cpu": cpu, "load": load_now()}


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its ended children (the verifier's workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def verify(settings: Settings, profile: Path | None, workers: int = 1) -> dict[str, Any]:
    """``verify_chain`` as ``switchboard audit verify`` runs it (progress on stderr), with
    ``workers`` processes."""
    history = bootstrap(settings).history(cached=False)
    shown = [-1]

    def progress(position: int, last: int) -> None:
        if (tenth := position * 10 // max(last, 1)) > shown[0]:
            shown[0] = tenth
            say(f"  verified up to {position:>11,}/{last:,}")

    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), _cpu_with_children()
    if profiler is not None:
        profiler.enable()
    report = verify_chain(history.recorder.chain, progress=progress, workers=workers)
    if profiler is not None:
        profiler.disable()
    seconds, cpu = time.perf_counter() - started, _cpu_with_children() - cpu
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
        say(f"cProfile of the verify written to {profile}")
    history.close()
    if not report.intact:
        raise SystemExit(f"the bench store's chain is broken: {report.first_break}")
    return {"events": report.events, "seconds": seconds, "cpu": cpu, "load": load_now()}


def read_chain(settings: Settings) -> dict[str, Any]:
    """Diagnostic: what the verifier reads of an intact store (each event's bytes beside its
    chain row's hashes, as plain tuples, and the count of chain rows, its page size), read and
    nothing else: the part of the verify hashing is not."""
    history = bootstrap(settings).history(cached=False)
    chain = history.recorder.chain
    stop = max(chain.extent())
    started, cpu = time.perf_counter(), time.process_time()
    after, events = 0, 0
    while after < stop:
        page = chain.linked_after(after, stop, PAGE)
        upto = page[-1][0] if len(page) == PAGE else stop
        chain.count_rows(after, upto)
        events += len(page)
        after = upto
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    history.close()
    return {"events": events, "seconds": seconds, "cpu": cpu, "load": load_now()}


def verify_table(
    args: argparse.Namespace, floors: list[dict], single: dict, result: dict, raw: dict
) -> list[bool]:
    floor = max(floors, key=lambda f: f["events"] / f["seconds"])
    table = Table(
        title=f"1. audit verify, {result['events']:,} events ({args.store}), load {load()}"
    )
    for column in ("what", "events", "seconds", "CPU s", "events/s", "of floor", "load 1m"):
        table.add_column(column, justify="left" if column == "what" else "right")
    names = (
        "floor: read + decode (before)",
        "floor: read + decode (after)",
        "verify_chain, 1 process",
        f"verify_chain, {result['workers']} processes (the CLI's)",
        "(diagnostic: one process's reads alone)",
    )
    for name, r in zip(names, [*floors, single, result, raw], strict=True):
        eps = r["events"] / r["seconds"]
        table.add_row(
            name,
            f"{r['events']:,}",
            f"{r['seconds']:.1f}",
            f"{r['cpu']:.1f}",
            f"{eps:,.0f}",
            f"{eps / (floor['events'] / floor['seconds']):.0%}",
            r["load"],
        )
    Console(width=110).print(table)
    eps = result["events"] / result["seconds"]
    ratio = eps / (floor["events"] / floor["seconds"])
    cpu_eps = result["events"] / result["cpu"]
    print(
        f"verify per CPU second: {cpu_eps:,.0f} events/s in {result['workers']} processes, "
        f"{single['events'] / single['cpu']:,.0f} in one ({os.cpu_count()} cores)"
    )
    return _checks(
        [
            (f"verify >= {TARGET_VERIFY_EPS:,.0f} events/s", eps >= TARGET_VERIFY_EPS),
            (f"verify >= {TARGET_VERIFY_RATIO:.0%} of read+decode", ratio >= TARGET_VERIFY_RATIO),
        ]
    )


# -- 2. ingest with sealing on and off -----------------------------------------------------


def simulated_interactions(n: int, customers: int) -> list[InteractionEvent]:
    """deploy/simulator.py's traffic as the recorder parses it (no retries, nothing malformed:
    the recorder drops those before the history)."""
    generator = TrafficGenerator(make_customers(customers), duplicate_rate=0, malformed_rate=0)
    records = generator.records()
    return [parse_interaction(next(records)[1]) for _ in range(n)]


def ingest(
    work: Path, cluster: Any, interactions: list[InteractionEvent], *, sealing: bool, run: int
) -> dict[str, Any]:
    """``record_interactions`` of every interaction, batches of 500, into a fresh store."""
    folder = work / f"ingest-{'on' if sealing else 'off'}-{run}"
    folder.mkdir(parents=True)
    store = cluster.create_database() if cluster else f"sqlite:///{folder}/history.db"
    settings = Settings(data_dir=folder, store=store)
    hub = bootstrap(settings)
    if sealing:
        history = hub.history()
    else:
        # Cached as the writer's history is: returning customers come from memory.
        history = _open_history(settings, cached=True, seal=False)
        history.on_saved = hub.new_events.notify
    if history.sealing != sealing:
        raise SystemExit(f"asked for sealing={sealing}, the history has {history.sealing}")
    started, cpu, created = time.perf_counter(), time.process_time(), 0
    for i in range(0, len(interactions), INGEST_BATCH):
        created += history.record_interactions(interactions[i : i + INGEST_BATCH]).customers_created
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    events = history.recorder.max_notification_id() or 0
    keyring = getattr(history.keyring, "path", None) if history.sealing else None
    history.close()
    return {
        "sealing": sealing,
        "interactions": len(interactions),
        "customers": created,
        "events": events,
        "seconds": seconds,
        "cpu": cpu,
        "load": load_now(),
        **_stored_bytes(settings, events, keyring),
    }


def _stored_bytes(settings: Settings, events: int, keyring: Path | None) -> dict[str, Any]:
    """Bytes on disk per stored event (the whole store: events, chain, snapshots, indexes),
    the mean stored event's own bytes, and the keyring's bytes."""
    if settings.is_postgres:
        import psycopg

        with psycopg.connect(settings.store) as conn:
            total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            state = conn.execute(
                "SELECT sum(octet_length(state)) FROM switchboard_events"
            ).fetchone()[0]
        # The keyring's tables are in the same database: counted in the total.
        return {"file_per_event": total / events, "state_per_event": state / events, "keys": None}
    path = settings.sqlite_path("history")
    for db in (path, keyring):
        if db is not None:
            with sqlite3.connect(db) as conn:  # the WAL's pages into the file, to count them
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(path) as conn:
        state = conn.execute("SELECT sum(length(state)) FROM stored_events").fetchone()[0]
    return {
        "file_per_event": path.stat().st_size / events,
        "state_per_event": state / events,
        "keys": keyring.stat().st_size if keyring is not None else 0,
    }


def ingest_table(args: argparse.Namespace, runs: list[dict]) -> list[bool]:
    table = Table(
        title=f"2. ingest, {args.ingest:,} simulated interactions of {args.ingest_customers:,} "
        f"people, batches of {INGEST_BATCH} ({args.store}), in run order, load {load()}"
    )
    columns = ("sealing", "new customers", "events", "seconds", "CPU s", "inter./s", "bytes/event")
    for column in (*columns, "state B/ev", "keyring B", "load 1m"):
        table.add_column(column, justify="left" if column == "sealing" else "right")
    for r in runs:
        table.add_row(
            "on" if r["sealing"] else "off (floor)",
            f"{r['customers']:,}",
            f"{r['events']:,}",
            f"{r['seconds']:.1f}",
            f"{r['cpu']:.1f}",
            f"{r['interactions'] / r['seconds']:,.0f}",
            f"{r['file_per_event']:,.0f}",
            f"{r['state_per_event']:,.0f}",
            "in db" if r["keys"] is None else f"{r['keys']:,}",
            r["load"],
        )
    Console(width=120).print(table)
    rates = {
        s: [r["interactions"] / r["seconds"] for r in runs if r["sealing"] is s]
        for s in (False, True)
    }
    cpu_rates = {
        s: [r["interactions"] / r["cpu"] for r in runs if r["sealing"] is s] for s in (False, True)
    }
    best_slowdown = 1 - max(rates[True]) / max(rates[False])
    median_slowdown = 1 - statistics.median(rates[True]) / statistics.median(rates[False])
    cpu_slowdown = 1 - max(cpu_rates[True]) / max(cpu_rates[False])
    print(
        f"sealing on vs off: best {max(rates[True]):,.0f} vs {max(rates[False]):,.0f} "
        f"interactions/s ({best_slowdown:.0%} slower), median {median_slowdown:.0%} slower, "
        f"per CPU second (best) {cpu_slowdown:.0%} slower"
    )
    return _checks(
        [
            (
                f"sealing on <= {TARGET_SEALING_SLOWDOWN:.0%} slower (best of each)",
                best_slowdown <= TARGET_SEALING_SLOWDOWN,
            )
        ]
    )


# -- 3. one long customer: snapshots and the as-of replay --------------------------------------


def _contact(i: int) -> InteractionEvent:
    """The replayed customer's i-th contact: a call (even i) or an SMS (odd i)."""
    at = EPOCH + timedelta(minutes=i)
    if i % 2:
        return MessageReceived(
            channel=Channel.sms,
            party=REPLAY_PARTY,
            provider_ref=f"SM-audit-{i}",
            occurred_at=at,
            body="Hello again, about my order",
        )
    return CallRinging(
        direction=Direction.inbound,
        party=REPLAY_PARTY,
        call_id=f"CA-audit-{i}",
        provider_ref=f"CA-audit-{i}",
        occurred_at=at,
    )


def build_replay_store(settings: Settings, events: int) -> UUID:
    """One customer with ``events`` events: a first contact (two events), then one each."""
    marker = settings.data_dir / "built.json"
    history = bootstrap(settings).history()
    if marker.exists() and json.loads(marker.read_text()).get("events") == events:
        say(f"reusing the replay store in {settings.data_dir} ({events:,} events)")
        customer_id = UUID(json.loads(marker.read_text())["customer"])
        try:
            history.get_customer(customer_id)
        except CustomerErased:
            raise SystemExit(
                f"the replay customer reads as erased: its key is not where this release "
                f"looks for it (remove {settings.data_dir} to build the store again)"
            ) from None
        return customer_id
    if history.recorder.max_notification_id():
        raise SystemExit(f"{settings.data_dir} holds a store not built to the end: remove it")
    say(f"building one customer with {events:,} events in {settings.data_dir}")
    contacts = events - 1
    for i in range(0, contacts, REPLAY_BATCH):
        history.record_interactions(_contact(j) for j in range(i, min(contacts, i + REPLAY_BATCH)))
    customer_id = history.customer_for_address(REPLAY_PARTY)
    assert customer_id is not None
    history.close()
    if not settings.is_postgres:
        marker.write_text(json.dumps({"events": events, "customer": str(customer_id)}))
    return customer_id


def _timed(what: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = what()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def replay_figures(settings: Settings, customer_id: UUID, repeats: int) -> list[dict]:
    snapshotted = bootstrap(settings).history(cached=False)
    unsnapshotted = _open_history(settings, cached=False, IS_SNAPSHOTTING_ENABLED="n")
    assert unsnapshotted.snapshots is None
    figures = []

    def figure(name: str, what: Callable[[], Any], times: int = repeats) -> Any:
        say(f"  {name} ...")
        seconds, result = _timed(what, times)
        figures.append({"what": name, "seconds": seconds, "load": load_now()})
        return result

    events = figure(
        "floor: its events read + decoded", lambda: list(snapshotted.events.get(customer_id))
    )
    with_snapshot = figure(
        "get_customer, snapshots on", lambda: snapshotted.get_customer(customer_id)
    )
    from_events = figure(
        "get_customer from all events", lambda: unsnapshotted.get_customer(customer_id)
    )
    if with_snapshot.version != from_events.version or with_snapshot.version != len(events):
        raise SystemExit(
            f"the customer loads at version {with_snapshot.version} with snapshots, "
            f"{from_events.version} without; it has {len(events)} events"
        )
    last = len(events)
    moment = figure(
        "moment_of_version (last)", lambda: moment_of_version(snapshotted, customer_id, last)
    )
    replayed = figure(
        f"as-of replay at version {last:,}",
        lambda: replay(snapshotted, customer_id, moment),
        max(1, repeats // 5),
    )
    if replayed.version != last or replayed.card is None:
        raise SystemExit(f"the replay found version {replayed.version}, card {replayed.card}")
    figures[-1]["replayed"] = replayed.events_replayed
    figures[0]["events"] = last
    assert snapshotted.snapshots is not None
    snapshot = next(snapshotted.snapshots.get(customer_id, desc=True, limit=1), None)
    figures[0]["snapshot"] = snapshot.originator_version if snapshot is not None else 0
    snapshotted.close()
    unsnapshotted.close()
    return figures


def replay_table(args: argparse.Namespace, figures: list[dict]) -> None:
    events = figures[0]["events"]
    table = Table(
        title=f"3. one customer with {events:,} events ({args.store}); a snapshot every "
        f"{SNAPSHOT_INTERVAL} events, the last at version {figures[0]['snapshot']:,}, "
        f"load {load()}"
    )
    for column in ("what", "runs", "median ms", "best ms", "events/s (best)", "load 1m"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for f in figures:
        best = min(f["seconds"])
        per_second = f"{events / best:,.0f}" if f["what"] != "get_customer, snapshots on" else "—"
        table.add_row(
            f["what"],
            str(len(f["seconds"])),
            f"{statistics.median(f['seconds']) * 1000:,.1f}",
            f"{best * 1000:,.1f}",
            per_second,
            f["load"],
        )
    Console(width=110).print(table)
    replayed = figures[-1].get("replayed")
    print(
        f"the replay projected {replayed:,} events: the whole store up to the moment "
        "(here only this customer's; in a full store it is a rebuild's pass)"
    )


# -- the run --------------------------------------------------------------------------------


def _checks(checks: list[tuple[str, bool]]) -> list[bool]:
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return [ok for _, ok in checks]


def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="sb-bench-audit-"))
    cluster = None
    passed: list[bool] = []
    try:
        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            say("starting a throwaway PostgreSQL cluster (the stores are built anew) ...")
            cluster = start_throwaway_cluster()

        def settings_for(name: str) -> Settings:
            if cluster is not None:
                return Settings(data_dir=work / name, store=cluster.create_database())
            return Settings(data_dir=(ROOT / "var" / name).resolve(), store="sqlite")

        print(f"load average at the start: {load()} ({os.cpu_count()} cores)")
        print(TARGET_TEXT)
        if "verify" in args.only:
            settings = settings_for(f"bench-audit-{args.events}")
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            build_store(settings, args.events // 2)
            say("floor: read + decode every stored row ...")
            floors = [read_and_decode(settings)]
            say("audit verify, in one process ...")
            single = verify(settings, args.profile, workers=1)
            workers = default_workers()
            say(f"audit verify, in {workers} processes (as switchboard audit verify) ...")
            result = verify(settings, None, workers=workers)
            result["workers"], single["workers"] = workers, 1
            say("floor again ...")
            floors.append(read_and_decode(settings))
            say("the verifier's reads alone ...")
            raw = read_chain(settings)
            passed += verify_table(args, floors, single, result, raw)
        if "ingest" in args.only:
            say(f"generating {args.ingest:,} simulated interactions ...")
            interactions = simulated_interactions(args.ingest, args.ingest_customers)
            runs = []
            for run in range(args.rounds):
                for sealing in (False, True) if run % 2 == 0 else (True, False):
                    say(f"ingest, sealing {'on' if sealing else 'off'} (round {run + 1}) ...")
                    runs.append(ingest(work, cluster, interactions, sealing=sealing, run=run))
            passed += ingest_table(args, runs)
        if "replay" in args.only:
            settings = settings_for(f"bench-audit-replay-{args.replay_events}")
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            customer_id = build_replay_store(settings, args.replay_events)
            replay_table(args, replay_figures(settings, customer_id, args.repeats))
        print(f"load average at the end: {load()}")
        return 0 if all(passed) else 1
    finally:
        if cluster is not None and not cluster.discard():
            say(f"PostgreSQL in {cluster.data_dir} did not stop: left in place")
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="the verified store's")
    parser.add_argument("--ingest", type=int, default=100_000, help="interactions per run")
    parser.add_argument("--ingest-customers", type=int, default=20_000, help="people in them")
    parser.add_argument(
        "--rounds", type=int, default=2, help="ingest pairs: off+on, then on+off, ..."
    )
    parser.add_argument("--replay-events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10, help="timings per replay figure")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["verify", "ingest", "replay"],
        default=["verify", "ingest", "replay"],
    )
    parser.add_argument("--profile", type=Path, help="cProfile the verify into this file")
    args = parser.parse_args()
    try:
        sys.exit(bench(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
