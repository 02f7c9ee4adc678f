"""Caller lookup benchmark: GET /v1/lookup over HTTP, authenticated, while ingest runs.

The customers are built through the store: ``CustomerHistory.record_interactions`` in batches
of 1 000 first contacts (calls and SMS from distinct phone numbers), the timeline follower
applying them to the view. The store is kept in ``var/bench-lookup-<N>/`` (or --data-dir), so
a second run reuses it; an interrupted build resumes where it stopped.

Then uvicorn (one worker, 127.0.0.1, a free port, served as the hub serves its API) runs in a
child process per variant, driven by wrk (-t2 -c16 --latency) with a Lua script that sends
``Authorization: Bearer <token>`` (an agent made through the UserDirectory) and round-robins
over 4 000 distinct known addresses:

- empty: the floor, an empty async FastAPI handler on the same path, same requests;
- lookup: the real API (``bootstrap(settings).api(...)``, tokens and roles on) while a
  writer process records --ingest-rate new interactions/s through CustomerHistory (mostly
  known customers calling again, 10 % new ones) and a follower process applies them to the
  view, so the view is written while it is read;
- lookup-idle (diagnostic): the same without the ingest;
- raw point query (floor): the lookup's SQL on a read-only sqlite3 connection of its own, one
  thread, no HTTP, no ingest: the statements ``view.lookup`` runs (traced once per address),
  else customer_for_address's and summary's two SELECTs (PostgreSQL: on psycopg);
- view.lookup in process (floor): what the endpoint asks of the view, one thread, no HTTP.

Each run's ingest adds its interactions (and some new customers) to the kept store. Exits 1
when any request was not answered 2xx (the figures then do not measure lookups), else 0.

    python bench/lookup.py                          # 1 000 000 customers (first run builds)
    python bench/lookup.py --customers 20000 --duration 5
    python bench/lookup.py --store postgres --customers 20000   # throwaway cluster, no cache

Needs /usr/bin/wrk. No Kafka: the lookup does not publish.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.table import Table

from bench.webhooks import free_port, parse_wrk, wait_listening
from contracts import CallRinging, Channel, Direction, InteractionEvent, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.history.customers import dedupe_key

LOOKUP_PATH = "/v1/lookup"
HOTLINE = "+18005550100"
BATCH = 1000
DISTINCT_ADDRESSES = 4000
NEW_CUSTOMER_SHARE = 0.1
AGENT = "bench-lookup-agent"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_RPS, TARGET_P99_MS, TARGET_RATIO = 5000.0, 5.0, 0.50
TARGET_TEXT = (
    "DESIGN: >= 5 000 lookups/s from one process, p99 <= 5 ms at 16 concurrent clients "
    "while ingest runs, >= 50 % of an empty FastAPI handler's rate"
)


def customer_address(i: int) -> str:
    """The built customers' numbers: +4930 10000000, +4930 10000001, ..."""
    return f"+4930{10_000_000 + i:08d}"


def first_contact(i: int) -> InteractionEvent:
    """Customer i's first contact: a call (even i) or an SMS (odd i)."""
    party = customer_address(i)
    at = EPOCH + timedelta(seconds=i)
    if i % 2:
        return MessageReceived(
            channel=Channel.sms,
            party=party,
            provider_ref=f"SM-lookup-{i}",
            occurred_at=at,
            body="Hello, where is my order?",
            endpoint=HOTLINE,
        )
    return CallRinging(
        direction=Direction.inbound,
        party=party,
        call_id=f"CA-lookup-{i}",
        provider_ref=f"CA-lookup-{i}",
        occurred_at=at,
        endpoint=HOTLINE,
    )


def new_contact(party: str, rng: random.Random) -> InteractionEvent:
    """A contact happening now (the background ingest): a call or an SMS."""
    ref = uuid.uuid4().hex
    now = datetime.now(UTC)
    if rng.random() < 0.5:
        return MessageReceived(
            channel=Channel.sms,
            party=party,
            provider_ref=f"SM{ref}",
            occurred_at=now,
            body="Any news on my order?",
            endpoint=HOTLINE,
        )
    return CallRinging(
        direction=Direction.inbound,
        party=party,
        call_id=f"CA{ref}",
        provider_ref=f"CA{ref}",
        occurred_at=now,
        endpoint=HOTLINE,
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


# -- the child processes ------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """One variant's server, configured as services/bootstrap/hub.py serves the API."""
    import uvicorn
    from fastapi import FastAPI, Response

    from channels.publishing import InteractionPublisher

    if args.app == "empty":
        app = FastAPI()

        @app.get(LOOKUP_PATH)
        async def empty() -> Response:
            return Response()

    else:
        settings = Settings()
        hub = bootstrap(settings)
        # Never started: no channel is configured, so no webhook publishes (and no Kafka).
        publisher = InteractionPublisher("127.0.0.1:9", topic=settings.interactions_topic)
        app = hub.api(view=hub.timeline_view(), publisher=publisher, users=hub.user_directory())
    gc.collect()
    gc.freeze()  # as run_hub does once everything long-lived exists
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


def follow(_: argparse.Namespace) -> None:
    """The timeline follower (``switchboard serve timeline``'s loop) until SIGTERM."""
    stop = _stop_on_signals()
    bootstrap(Settings()).timeline_follower().run(stop)


def ingest(args: argparse.Namespace) -> None:
    """Record ``--rate`` interactions/s through CustomerHistory until SIGTERM, in batches every
    0.1 s; never faster (a slow batch is not made up for). Prints what it did as JSON."""
    stop = _stop_on_signals()
    history = bootstrap(Settings()).history()
    print(json.dumps({"ready": True}), flush=True)
    rng = random.Random()  # a new seed each run: new customers get new numbers
    tick = 0.1
    per_tick = max(1, round(args.rate * tick))
    recorded = created = 0
    started = time.perf_counter()
    due = started
    while not stop.is_set():
        batch = []
        for _ in range(per_tick):
            if rng.random() < NEW_CUSTOMER_SHARE:
                party = f"+4940{rng.randrange(10_000_000, 100_000_000)}"
            else:
                party = customer_address(rng.randrange(args.customers))
            batch.append(new_contact(party, rng))
        outcome = history.record_interactions(batch)
        recorded += outcome.recorded
        created += outcome.customers_created
        due += tick
        stop.wait(max(0.0, due - time.perf_counter()))
        due = max(due, time.perf_counter() - tick)
    elapsed = time.perf_counter() - started
    print(json.dumps({"recorded": recorded, "created": created, "seconds": elapsed}), flush=True)


# -- the bench (the parent process) -------------------------------------------------------------


class Children:
    """Every process the bench starts; each is stopped by its PID, also on Ctrl-C or error."""

    def __init__(self, settings: Settings) -> None:
        self.env = {**os.environ, **settings.to_env()}
        self.procs: list[subprocess.Popen] = []

    def start(self, *command: str, capture: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, __file__, *command],
            env=self.env,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> str:
        """SIGTERM, then SIGKILL after 15 s; returns what it printed (when captured)."""
        if proc not in self.procs:
            return ""
        if proc.poll() is None:
            proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        self.procs.remove(proc)
        return out or ""

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _positions(history: Any, view: Any) -> tuple[int, int]:
    """(newest event in the store, newest event applied to the view)."""
    return (
        history.recorder.max_notification_id() or 0,
        view.max_tracking_id(history.name) or 0,
    )


def _first_unrecorded_batch(history: Any, customers: int) -> int:
    """Batches commit whole and in order: find the first one not stored yet (resume)."""

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


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_store(
    settings: Settings, customers: int, children: Children, history: Any, view: Any
) -> None:
    """N customers through CustomerHistory, and the view through the timeline follower."""
    marker = settings.data_dir / "built.json"
    started = time.perf_counter()
    if marker.exists() and json.loads(marker.read_text()).get("customers") == customers:
        say(f"reusing the store in {settings.data_dir} ({customers:,} customers)")
    else:
        batches = math.ceil(customers / BATCH)
        first = _first_unrecorded_batch(history, customers)
        if first:
            say(f"resuming the build after {min(customers, first * BATCH):,} customers")
        say(
            f"building {customers:,} customers through CustomerHistory "
            f"({BATCH:,} per transaction) in {settings.data_dir}; "
            "the timeline follower applies them meanwhile (its own process)"
        )
        follower = children.start("follow")
        shown = -1
        for b in range(first, batches):
            if follower.poll() is not None:
                raise RuntimeError(f"the follower exited with {follower.returncode}")
            events = [first_contact(i) for i in range(b * BATCH, min(customers, (b + 1) * BATCH))]
            history.record_interactions(events)
            done = min(customers, (b + 1) * BATCH)
            if (tenth := done * 10 // customers) > shown:
                shown = tenth
                stored, applied = _positions(history, view)
                elapsed = time.perf_counter() - started
                rate = (done - first * BATCH) / max(elapsed, 1e-9)
                say(
                    f"  recorded {done:>11,}/{customers:,} customers ({tenth * 10:3d} %) "
                    f"in {elapsed:5.0f}s ({rate:,.0f}/s); view: {applied:,}/{stored:,} events"
                )
        _catch_up_view(history, view, children, follower)
        say(f"built {customers:,} customers in {time.perf_counter() - started:.0f}s")
        if not settings.is_postgres:
            built = {"customers": customers, "build_s": round(time.perf_counter() - started)}
            marker.write_text(json.dumps(built))
    # The view may be behind or empty although the history is complete: a run stopped during
    # its ingest, or a new view schema that rebuilds from zero.
    _catch_up_view(history, view, children)


def _catch_up_view(
    history: Any, view: Any, children: Children, follower: subprocess.Popen | None = None
) -> None:
    """Until the view has applied every stored event (the follower in its own process)."""
    stored, applied = _positions(history, view)
    if applied >= stored:
        if follower is not None:
            children.stop(follower)
        return
    if follower is None:
        say(f"the view is at event {applied:,} of {stored:,}: the follower catches up")
        follower = children.start("follow")
    started, shown_at, last_move = time.perf_counter(), applied, time.monotonic()
    while applied < stored:
        if follower.poll() is not None:
            raise RuntimeError(f"the follower exited with {follower.returncode}")
        if time.monotonic() - last_move > 120:
            raise RuntimeError(f"the view stopped at event {applied:,} of {stored:,}")
        time.sleep(0.5)
        before, (stored, applied) = applied, _positions(history, view)
        if applied > before:
            last_move = time.monotonic()
        if applied - shown_at >= stored // 10 or applied >= stored:
            shown_at = applied
            elapsed = time.perf_counter() - started
            say(f"  view: {applied:>11,}/{stored:,} events applied ({elapsed:.0f}s)")
    children.stop(follower)


def agent_token(settings: Settings) -> str:
    """An agent's API token, made through the project's own UserDirectory."""
    users = bootstrap(settings).user_directory()
    if users.find(AGENT) is None:
        users.register(AGENT, roles=["agent"])
    token = users.issue_token(AGENT).token
    users.close()
    return token


def sample_addresses(customers: int) -> list[str]:
    n = min(customers, DISTINCT_ADDRESSES)
    addresses = [customer_address(k * customers // n) for k in range(n)]
    random.Random(7).shuffle(addresses)
    return addresses


def lua_script(path: Path, addresses: list[str], token: str) -> None:
    """wrk's Lua: the bearer token, the addresses round robin (each thread from its own
    place), and a count of every answer that is not 2xx."""
    paths = ",\n".join(f'  "{LOOKUP_PATH}?address={a.replace("+", "%2B")}"' for a in addresses)
    path.write_text(
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f"local paths = {{\n{paths}\n}}\n"
        """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("first", #threads * 1009)
end
function init(args)
  i = first or 0
  non2xx = 0
end
function request()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  io.write(string.format("non-2xx (lua): %d\\n", n))
end
"""
    )


def wrk(url: str, lua: Path, seconds: int) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(lua), url],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    result = parse_wrk(done.stdout)
    counted = done.stdout.split("non-2xx (lua):")
    result["non2xx"] = max(result["non2xx"], int(counted[1].split()[0]) if len(counted) > 1 else 0)
    return result


def check_one(port: int, address: str, token: str) -> None:
    """One request before wrk: a refusal here says why, instead of a count of non-2xx."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{LOOKUP_PATH}?address={address.replace('+', '%2B')}",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"GET {LOOKUP_PATH} answered {e.code}: {e.read()[:300]!r}") from None


def _wait_ready(proc: subprocess.Popen, name: str, timeout: float = 120.0) -> None:
    """Until the child prints its first line (it has opened the store and started)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready or not proc.stdout.readline():
        raise RuntimeError(f"{name} did not start within {timeout:.0f}s (exit {proc.poll()})")


def run_variant(
    app: str,
    args: argparse.Namespace,
    children: Children,
    lua: Path,
    probe: tuple[str, str],
    history: Any,
    view: Any,
) -> dict[str, Any]:
    port = free_port()
    server = children.start("serve", "--app", app, "--port", str(port))
    writer = follower = profiler = None
    try:
        wait_listening(port, server, timeout=120)
        check_one(port, *probe)
        url = f"http://127.0.0.1:{port}{LOOKUP_PATH}"
        if app == "lookup":
            follower = children.start("follow")
            writer = children.start(
                "ingest",
                "--rate",
                str(args.ingest_rate),
                "--customers",
                str(args.customers),
                capture=True,
            )
            _wait_ready(writer, "the ingest writer")
        wrk(url, lua, 2)  # warm up: connections, caches, the writer's first batches
        if writer is not None:
            before, t0 = _positions(history, view), time.perf_counter()
        if args.profile and app == "lookup":
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(args.duration),
                    "--format",
                    "raw" if args.profile.suffix == ".txt" else "speedscope",
                    "--output",
                    str(args.profile),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result = wrk(url, lua, args.duration)
        if profiler is not None:
            profiler.wait(timeout=args.duration + 30)
        if writer is not None and follower is not None:
            after, t1 = _positions(history, view), time.perf_counter()
            for proc, name in ((writer, "ingest writer"), (follower, "follower")):
                if proc.poll() is not None:
                    raise RuntimeError(f"the {name} exited with {proc.returncode} during the run")
            window = t1 - t0
            result["stored_eps"] = (after[0] - before[0]) / window
            result["applied_eps"] = (after[1] - before[1]) / window
            result["lag_events"] = after[0] - after[1]
            printed = children.stop(writer).strip().splitlines()
            if not printed:
                raise RuntimeError(f"the ingest writer said nothing (exit {writer.returncode})")
            result["ingest"] = json.loads(printed[-1])
        return result
    finally:
        for proc in (writer, follower, server):
            if proc is not None:
                children.stop(proc)


def _timed(lookup: Callable[[str], bool], addresses: list[str], seconds: float) -> dict:
    """Lookups one after another for ``seconds``; a lookup that finds nothing is counted."""
    latencies: list[float] = []
    missed = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for address in addresses:
            t = time.perf_counter()
            if not lookup(address):
                missed += 1
            latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "requests": len(latencies),
        "non2xx": missed,  # here: lookups that found nothing
        "socket_errors": 0,
    }


class _Recording:
    """Stands in for the view's read-only sqlite3 connection and keeps what it is asked."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.statements: list[tuple[str, tuple]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, tuple(params)))
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _traced_lookups(view: Any, addresses: list[str]) -> dict[str, list] | None:
    """Per address, the statements ``view.lookup`` runs on the view's read-only connection
    (SQLite), or None where the view reads otherwise (PostgreSQL, the summary lookup)."""
    if not hasattr(view, "lookup") or not hasattr(view, "_readers"):
        return None
    recording = _Recording(view._reader())
    view._readers.conn = recording
    traced = {}
    try:
        for address in addresses:
            recording.statements = []
            view.lookup(address)
            traced[address] = recording.statements
    finally:
        view._readers.conn = recording._conn
    return traced if all(traced.values()) else None


def raw_point_query(
    settings: Settings, view: Any, addresses: list[str], seconds: float
) -> tuple[dict[str, Any], str]:
    """The lookup's SQL on a connection of its own, one thread, no HTTP: the statements
    ``view.lookup`` runs (traced), else customer_for_address's and summary's."""
    if settings.is_postgres:
        import psycopg

        schema = view.datastore.schema
        prefix = f'"{schema}".' if schema else ""
        conn: Any = psycopg.connect(settings.store, autocommit=True)
        by_address = f"SELECT customer_id FROM {prefix}timeline_addresses WHERE address = %s"
        by_id = f"SELECT * FROM {prefix}timeline_customers WHERE customer_id = %s"
    else:
        conn = sqlite3.connect(f"file:{settings.sqlite_path('views')}?mode=ro", uri=True)
        by_address = "SELECT customer_id FROM addresses WHERE address = ?"
        by_id = "SELECT * FROM customers WHERE customer_id = ?"
    traced = None if settings.is_postgres else _traced_lookups(view, addresses)
    if traced is not None:
        counts = sorted({len(statements) for statements in traced.values()})
        what = f"view.lookup's SQL, traced ({'/'.join(map(str, counts))} statement(s) a lookup)"

        def lookup(address: str) -> bool:
            found = None
            for sql, params in traced[address]:
                rows = conn.execute(sql, params).fetchall()
                found = rows if found is None else found
            return bool(found)

    else:
        what = "customer_for_address's and summary's 2 SELECTs"

        def lookup(address: str) -> bool:
            row = conn.execute(by_address, (address,)).fetchone()
            return row is not None and conn.execute(by_id, (row[0],)).fetchone() is not None

    try:
        return _timed(lookup, addresses, seconds), what
    finally:
        conn.close()


def view_lookup(view: Any, addresses: list[str], seconds: float) -> dict[str, Any]:
    """What the endpoint asks of the view, called in process: one thread, no HTTP."""
    if hasattr(view, "lookup"):  # the directory's card lookup

        def lookup(address: str) -> bool:
            view.lookup(address)
            return True

    else:  # the summary lookup

        def lookup(address: str) -> bool:
            customer_id = view.customer_for_address(address)
            return customer_id is not None and view.summary(customer_id) is not None

    return _timed(lookup, addresses, seconds)


def count_customers(settings: Settings) -> int:
    if settings.is_postgres:
        return -1
    conn = sqlite3.connect(f"file:{settings.sqlite_path('views')}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM addresses").fetchone()[0]
    finally:
        conn.close()


def bench(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    # Stopped like Ctrl-C: the finally below stops every child by its PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="sb-bench-lookup-"))
    cluster = None
    children: Children | None = None
    try:
        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            say("starting a throwaway PostgreSQL cluster (the store is built anew) ...")
            cluster = start_throwaway_cluster()
            settings = Settings(data_dir=work, store=cluster.create_database())
        else:
            data_dir = args.data_dir or ROOT / "var" / f"bench-lookup-{args.customers}"
            settings = Settings(data_dir=data_dir.resolve(), store="sqlite")
        children = Children(settings)
        hub = bootstrap(settings)
        history, view = hub.history(), hub.timeline_view()
        build_store(settings, args.customers, children, history, view)
        in_view = count_customers(settings)
        token = agent_token(settings)
        addresses = sample_addresses(args.customers)
        lua = work / "lookup.lua"
        lua_script(lua, addresses, token)
        probe = (addresses[0], token)

        results: dict[str, dict[str, Any]] = {}
        say("raw point query and the view's lookup (one thread, no HTTP, no ingest) ...")
        results["raw point query"], raw_sql = raw_point_query(settings, view, addresses, 3.0)
        results["view.lookup in process"] = view_lookup(view, addresses, 3.0)
        for app, title in (
            ("empty", "empty"),
            ("lookup", "lookup + ingest"),
            ("lookup-idle", "lookup-idle"),
        ):
            say(f"wrk -t2 -c16 -d{args.duration}s against {title} ...")
            results[title] = run_variant(app, args, children, lua, probe, history, view)
        return report(results, args, in_view, raw_sql)
    finally:
        if children is not None:
            children.stop_all()
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def report(
    results: dict[str, dict[str, Any]], args: argparse.Namespace, in_view: int, raw_sql: str
) -> int:
    floor = results["empty"]["rps"]
    table = Table(
        title=f"caller lookup, {args.customers:,} customers ({args.store}), "
        "uvicorn one worker, wrk -t2 -c16, this machine"
    )
    columns = ("variant", "req/s", "p50 ms", "p99 ms", "of empty", "requests", "non-2xx", "errors")
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in (
        "empty",
        "lookup + ingest",
        "lookup-idle",
        "raw point query",
        "view.lookup in process",
    ):
        r = results[name]
        table.add_row(
            name,
            f"{r['rps']:,.0f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['rps'] / floor:.1%}",
            f"{r['requests']:,}",
            f"{r['non2xx']:,}",
            f"{r['socket_errors']:,}",
        )
    Console(width=110).print(table)
    lookup = results["lookup + ingest"]
    ingest = lookup["ingest"]
    ingest_rate = ingest["recorded"] / ingest["seconds"]
    if in_view >= 0:
        print(f"addresses in the view: {in_view:,} ({in_view - args.customers:+,} from ingests)")
    print(
        f"raw point query: {raw_sql} on a read-only connection of its own, one thread, no HTTP, "
        "no ingest (its non-2xx column: lookups that found nothing); view.lookup in process: "
        "what the endpoint asks of the view, one thread, no HTTP, no ingest"
    )
    print(
        f"ingest during 'lookup + ingest': {ingest_rate:,.0f} interactions/s recorded "
        f"(asked {args.ingest_rate:,}/s; {ingest['created']:,} new customers); in the measured "
        f"window {lookup['stored_eps']:,.0f} events/s stored, {lookup['applied_eps']:,.0f} "
        f"applied to the view, {lookup['lag_events']:,} behind at its end"
    )
    print(
        f"lookup + ingest = {lookup['rps'] / floor:.0%} of empty, "
        f"{lookup['rps'] / results['raw point query']['rps']:.0%} of the raw point query"
    )
    print(TARGET_TEXT)
    errors = {
        name: r["non2xx"] + r["socket_errors"]
        for name, r in results.items()
        if name not in ("raw point query", "view.lookup in process")
    }
    checks = [
        (f"lookup + ingest >= {TARGET_RPS:,.0f} req/s", lookup["rps"] >= TARGET_RPS),
        (f"lookup + ingest p99 <= {TARGET_P99_MS:g} ms", lookup["p99"] <= TARGET_P99_MS),
        (f"lookup + ingest >= {TARGET_RATIO:.0%} of empty", lookup["rps"] / floor >= TARGET_RATIO),
        (
            f"ingest ran at >= 90 % of {args.ingest_rate:,}/s",
            ingest_rate >= 0.9 * args.ingest_rate,
        ),
        ("no non-2xx answers, no socket errors", not any(errors.values())),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if any(errors.values()):
        bad = ", ".join(f"{n}: {e:,}" for n, e in errors.items() if e)
        Console(stderr=True).print(
            f"[bold red]!!! ERRORS: {bad} requests were not answered 2xx or failed on the "
            "socket; the figures above do not measure successful lookups !!![/bold red]"
        )
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="(internal) run one variant's server")
    server.add_argument("--app", required=True, choices=["empty", "lookup", "lookup-idle"])
    server.add_argument("--port", type=int, required=True)
    sub.add_parser("follow", help="(internal) run the timeline follower until SIGTERM")
    writer = sub.add_parser("ingest", help="(internal) record interactions until SIGTERM")
    writer.add_argument("--rate", type=int, required=True)
    writer.add_argument("--customers", type=int, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per variant")
    parser.add_argument(
        "--ingest-rate", type=int, default=2000, help="interactions/s recorded during the run"
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--data-dir", type=Path, help="where the SQLite store is kept (var/bench-lookup-<N>/)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy profile of the 'lookup + ingest' server: collapsed stacks if *.txt, "
        "else speedscope",
    )
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    elif args.command == "follow":
        follow(args)
    elif args.command == "ingest":
        ingest(args)
    else:
        try:
            sys.exit(bench(args))
        except KeyboardInterrupt:
            print("interrupted: every server and child process was stopped", file=sys.stderr)
            sys.exit(130)


if __name__ == "__main__":
    main()
