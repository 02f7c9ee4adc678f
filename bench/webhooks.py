"""Voice webhook benchmark: signature check + caller lookup + confirmed publish + TwiML.

Starts uvicorn (one worker, 127.0.0.1, a free port) in a child process per variant and
drives it with wrk (-t2 -c16 --latency, a Lua script of pre-signed Twilio requests):

- empty: the floor, an empty FastAPI POST handler, same requests, same run;
- voice: the real Twilio voice router: signature (Twilio's RequestValidator), caller lookup
  in a SQLite timeline view of --customers customers, CallRinging published to the real
  broker and confirmed (acks=all, idempotent), TwiML answer;
- voice-thread: the same with the lookup in the threadpool instead of on the event loop;
- voice-gc: voice without ``gc.freeze()`` after startup (every other variant freezes);
- voice-nokafka (diagnostic, --diagnose): the same without the publish, to show what the
  confirmed write costs;
- kafka-alone (diagnostic, --diagnose): 16 concurrent confirmed publishes from one asyncio
  process with no HTTP at all: the ceiling the broker round trip puts on the webhook.

    python bench/webhooks.py                         # 100 000 customers, 10 s per variant
    python bench/webhooks.py --duration 5 --diagnose

Needs a broker: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local one. Needs /usr/bin/wrk.
The requests are 1 000 distinct calls from known callers, signed once before the run (the
signature covers the body and URL, so each is sent many times: dedupe is the recorder's job).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table
from twilio.request_validator import RequestValidator

from channels.publishing import InteractionPublisher
from contracts import CallRinging, Direction, InteractionEvent
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics, topic_size
from services.bootstrap.settings import Settings
from services.domain import customer_id_for

console = Console(stderr=True)

TOKEN = "bench-twilio-auth-token"
PUBLIC = "https://hooks.example.com/switchboard"
VOICE_PATH = "/webhooks/twilio/voice"
EMPTY_PATH = "/webhooks/empty"
HOTLINE = "+18005550100"
DISTINCT_REQUESTS = 1000
TARGET_RPS, TARGET_P99_MS, TARGET_RATIO = 1000.0, 20.0, 0.15


def caller(i: int) -> str:
    return f"+4930{10_000_000 + i:08d}"


# -- the server (a child process) ---------------------------------------------------------------


class _Unpublished(InteractionPublisher):
    """Diagnostic only: everything but the Kafka write."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, event: InteractionEvent) -> None:
        return None


def serve(args: argparse.Namespace) -> None:
    import uvicorn
    from fastapi import FastAPI, Response

    from channels.voice import TwilioVoiceConfig, twilio_voice_router

    if args.app == "empty":
        app = FastAPI()

        @app.post(EMPTY_PATH)
        async def empty() -> Response:
            return Response()

    else:
        settings = Settings(store=args.store, data_dir=Path(args.store[10:]).parent)
        publisher: InteractionPublisher
        if args.app.startswith("voice-nokafka"):
            publisher = _Unpublished(args.bootstrap)
        else:
            publisher = InteractionPublisher(args.bootstrap, topic=args.topic)

        @asynccontextmanager
        async def lifespan(_: FastAPI):
            await publisher.start()
            yield
            await publisher.stop()

        app = FastAPI(lifespan=lifespan)
        config = TwilioVoiceConfig(
            auth_token=TOKEN,
            public_base_url=PUBLIC,
            lookup_in_threadpool=args.app.startswith("voice-thread"),
        )
        directory = bootstrap(settings).timeline_view()
        app.include_router(
            twilio_voice_router(publisher=publisher, config=config, directory=directory)
        )
    if args.gc_freeze:
        # What a long-running server should do once it has started: move every object of
        # the imported libraries out of the collector's way, so that a full collection
        # does not stall requests (see the voice-gc variant).
        gc.collect()
        gc.freeze()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, workers=1
    )


# -- the bench (the parent process) -------------------------------------------------------------


def build_directory(settings: Settings, customers: int) -> None:
    """A timeline view with ``customers`` callers, written directly (the view's own tables)."""
    view = bootstrap(settings).timeline_view()  # creates the schema
    del view
    seen = datetime(2026, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    db = sqlite3.connect(settings.sqlite_path("views"))
    with db:
        rows = [(caller(i), str(customer_id_for(caller(i)))) for i in range(customers)]
        db.executemany("INSERT INTO addresses VALUES (?, ?)", rows)
        db.executemany(
            "INSERT INTO customers (customer_id, first_address, first_seen, contact_count, "
            "last_contact_at, last_channel) VALUES (?, ?, ?, 7, ?, 'voice')",
            [(cid, address, seen, seen) for address, cid in rows],
        )
    db.close()


def lua_script(path: Path, customers: int) -> None:
    """wrk's Lua: DISTINCT_REQUESTS pre-signed incoming calls, sent round robin."""
    validator = RequestValidator(TOKEN)
    step = max(1, customers // DISTINCT_REQUESTS)
    lines = ["local requests = {}"]
    for n in range(DISTINCT_REQUESTS):
        params = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": f"CA{uuid.uuid4().hex}",
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": caller((n * step) % customers),
            "To": HOTLINE,
            "ApiVersion": "2010-04-01",
        }
        signature = validator.compute_signature(PUBLIC + VOICE_PATH, params)
        lines.append(
            f'requests[{n + 1}] = {{body = "{urlencode(params)}", signature = "{signature}"}}'
        )
    lines += [
        "local i = 0",
        "request = function()",
        "  i = i % #requests + 1",
        "  local r = requests[i]",
        '  local headers = {["Content-Type"] = "application/x-www-form-urlencoded",',
        '                   ["X-Twilio-Signature"] = r.signature}',
        '  return wrk.format("POST", nil, headers, r.body)',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on {port} within {timeout}s")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    """req/s, p50 and p99 (ms), request and error counts from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "requests": total,
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": 0
        if errors is None
        else sum(map(int, re.findall(r"\d+", errors.group(1)))),
    }


def run_variant(app: str, args: argparse.Namespace, settings: Settings, lua: Path) -> dict:
    port = free_port()
    command = [
        sys.executable,
        __file__,
        "serve",
        "--app",
        app,
        "--port",
        str(port),
        "--store",
        settings.store,
        "--bootstrap",
        settings.kafka_bootstrap or "",
        "--topic",
        settings.interactions_topic,
        *([] if app.endswith("-gc") else ["--gc-freeze"]),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    profiler = None
    try:
        wait_listening(port, server)
        path = EMPTY_PATH if app == "empty" else VOICE_PATH
        url = f"http://127.0.0.1:{port}{path}"
        # Warm up: connections, caches, the producer's metadata.
        warm = subprocess.run(
            ["wrk", "-t2", "-c16", "-d2s", "--latency", "-s", str(lua), url],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        warmed = parse_wrk(warm.stdout)
        if args.profile and app == "voice":
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
        done = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c16",
                f"-d{args.duration}s",
                "--latency",
                "-s",
                str(lua),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=args.duration + 30,
        )
        if profiler is not None:
            profiler.wait(timeout=args.duration + 30)
        result = parse_wrk(done.stdout)
        result["answered"] = (
            result["requests"] - result["non2xx"] + warmed["requests"] - warmed["non2xx"]
        )
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def confirmed_publish_alone(settings: Settings, seconds: float) -> dict[str, float]:
    """Diagnostic: 16 concurrent confirmed publishes from one process, no HTTP at all."""
    latencies: list[float] = []
    async with InteractionPublisher(
        settings.kafka_bootstrap, topic=settings.interactions_topic
    ) as pub:
        deadline = time.perf_counter() + seconds

        async def worker(n: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                event = CallRinging(
                    direction=Direction.inbound,
                    party=caller(n * 1000 + i % 1000),
                    call_id=f"CA-alone-{n}-{i}",
                    provider_ref=f"CA-alone-{n}-{i}:ringing",
                    occurred_at=datetime.now(UTC),
                )
                started = time.perf_counter()
                await pub.publish(event)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(16)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "requests": len(latencies),
        "non2xx": 0,
        "answered": 0,
    }


def bench(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="sb-bench-webhooks-"))
    kafka = None
    try:
        bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not bootstrap:
            from deploy.kafka_local import LocalKafka

            console.print("starting the local Kafka broker ...")
            kafka = LocalKafka(work_dir=work / "kafka").start()
            bootstrap = kafka.bootstrap
        settings = Settings(
            data_dir=work,
            store=f"sqlite:///{work / 'history.db'}",
            kafka_bootstrap=bootstrap,
            interactions_topic=f"sb.bench.webhooks.{uuid.uuid4().hex[:8]}",
            deadletter_topic=f"sb.bench.deadletter.{uuid.uuid4().hex[:8]}",
            outbound_topic=f"sb.bench.outbound.{uuid.uuid4().hex[:8]}",
            routing_topic=f"sb.bench.routing.{uuid.uuid4().hex[:8]}",
            presence_topic=f"sb.bench.presence.{uuid.uuid4().hex[:8]}",
        )
        asyncio.run(ensure_topics(settings, bootstrap))
        started = time.perf_counter()
        build_directory(settings, args.customers)
        console.print(
            f"directory: {args.customers} customers in {time.perf_counter() - started:.1f}s"
        )
        lua = work / "voice.lua"
        lua_script(lua, args.customers)
        variants = ["empty", "voice", "voice-thread", "voice-gc"]
        if args.diagnose:
            variants.append("voice-nokafka")
        results = {}
        for app in variants:
            console.print(f"wrk -t2 -c16 -d{args.duration}s against {app} ...")
            results[app] = run_variant(app, args, settings, lua)
        if args.diagnose:
            console.print("16 concurrent confirmed publishes, no HTTP ...")
            results["kafka-alone"] = asyncio.run(confirmed_publish_alone(settings, args.duration))
        on_topic = asyncio.run(topic_size(settings.kafka_bootstrap, settings.interactions_topic))
        alone = results["kafka-alone"]["requests"] if "kafka-alone" in results else 0
        published = on_topic - alone
        report(results, published)
    finally:
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict], published: int) -> None:
    floor = results["empty"]["rps"]
    table = Table(title="voice webhook under uvicorn, wrk -t2 -c16, one worker, this machine")
    for column in ("variant", "req/s", "p50 ms", "p99 ms", "of empty", "requests", "non-2xx"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for app, r in results.items():
        table.add_row(
            app,
            f"{r['rps']:,.0f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['rps'] / floor:.1%}",
            f"{r['requests']:,}",
            f"{r['non2xx']:,}",
        )
    Console().print(table)
    voice = results["voice"]
    # wrk counts completed responses only; a request cut off at the end of a run may have
    # been published without being counted, so the topic may hold a few more.
    answered = sum(
        r["answered"] for a, r in results.items() if a.startswith("voice") and "nokafka" not in a
    )
    print(
        f"records on the topic: {published:,}; 2xx answers of the publishing variants: {answered:,}"
    )
    checks = [
        (f"voice >= {TARGET_RPS:,.0f} req/s", voice["rps"] >= TARGET_RPS),
        (f"voice p99 <= {TARGET_P99_MS:g} ms", voice["p99"] <= TARGET_P99_MS),
        (f"voice >= {TARGET_RATIO:.0%} of empty", voice["rps"] / floor >= TARGET_RATIO),
        ("no errors", voice["non2xx"] == 0 and voice["socket_errors"] == 0),
        ("every 2xx answer is on the topic", published >= answered),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="(internal) run one variant's server")
    server.add_argument("--app", required=True)
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--store", required=True)
    server.add_argument("--bootstrap", required=True)
    server.add_argument("--topic", required=True)
    server.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per variant")
    parser.add_argument("--diagnose", action="store_true", help="also run without Kafka")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy profile of the 'voice' variant: collapsed stacks if *.txt, else speedscope",
    )
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
