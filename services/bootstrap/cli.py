"""``switchboard``: the command line.  Each command gets the hub's objects from the one
composition root, ``services.bootstrap.bootstrap.bootstrap(settings)``.

Exit codes: 0 ok, 1 failure, 2 usage error (typer's convention).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Coroutine
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.bootstrap.access_cli import record_cli_read
from services.bootstrap.audit_cli import audit_app
from services.bootstrap.campaign_cli import campaign_app
from services.bootstrap.cli_common import customer_of, err
from services.bootstrap.cli_common import fail as _fail
from services.bootstrap.config_cli import config_app
from services.bootstrap.customers_cli import customer_app
from services.bootstrap.desk_cli import conversations_app, files_app, notes_app
from services.bootstrap.routing_cli import routing_app
from services.bootstrap.settings import Settings, load_settings
from services.bootstrap.store_cli import store_app
from services.bootstrap.users_cli import users_app

if TYPE_CHECKING:
    from deploy.kafka_local import LocalKafka
    from deploy.pg_local import PostgresCluster
    from deploy.simulator import SimulationResult
    from services.bootstrap.bootstrap import Hub

T = TypeVar("T")

app = typer.Typer(
    name="switchboard",
    help="Switchboard: an event-sourced multichannel communication hub.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()

app.add_typer(users_app, name="users", help="Users, roles and API tokens.")
app.add_typer(
    customer_app, name="customer", help="One customer: card, profile, links, merges, duplicates."
)
app.add_typer(conversations_app, name="conversations", help="Conversations and their status.")
app.add_typer(notes_app, name="notes", help="Notes on customers and conversations.")
app.add_typer(files_app, name="files", help="Files attached to customers and conversations.")
app.add_typer(routing_app, name="routing", help="Inbound routing: check the configuration.")
app.add_typer(
    campaign_app,
    name="campaign",
    help="Outbound campaigns: audience, templates, schedule, preview, start, tracking.",
)
app.add_typer(config_app, name="config", help="The hub's configuration: check it, see it.")
app.add_typer(store_app, name="store", help="Back up the event store and restore it.")
app.add_typer(
    audit_app,
    name="audit",
    help="Compliance: verify the hash chain, replay as of a moment, export, the access log.",
)

try:  # the local broker launcher (services/bootstrap/kafka_cli.py)
    from services.bootstrap.kafka_cli import kafka_app

    app.add_typer(kafka_app, name="kafka", help="Run the local single-node Kafka broker.")
except ImportError:  # pragma: no cover
    pass


def _settings() -> Settings:
    return load_settings()


def _hub(settings: Settings) -> Hub:
    # Imported when a command needs the hub: `switchboard --help` stays quick.
    from services.bootstrap.bootstrap import bootstrap

    return bootstrap(settings)


def _client_settings() -> Settings:
    """Settings for a command that talks to a running hub: the local broker unless told."""
    settings = _settings()
    if settings.kafka_bootstrap:
        return settings
    local = f"127.0.0.1:{settings.local_kafka_port}"
    return settings.model_copy(update={"kafka_bootstrap": local})


def _with_kafka(bootstrap: str, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; an unreachable broker is one line saying what to do, not a traceback."""
    from aiokafka.errors import KafkaConnectionError

    # The client library's own connection log lines would only repeat the one below.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(work)
    except KafkaConnectionError:
        raise _fail(
            f"Kafka is not reachable at {bootstrap}: start the hub with `make up` "
            "(or set SWITCHBOARD_KAFKA_BOOTSTRAP to your cluster)"
        ) from None


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


@app.command()
def serve(
    service: Annotated[
        list[str] | None,
        typer.Argument(
            help="recorder, timeline, desk, api, router, outbound, email, campaigns (default: all)"
        ),
    ] = None,
    log_level: str = "INFO",
) -> None:
    """Run hub services against the configured Kafka and store (production entry point)."""
    from services.bootstrap.hub import SERVICES, run_hub
    from services.bootstrap.logs import configure_logging

    settings = _settings()
    chosen = service or list(SERVICES)
    unknown = set(chosen) - set(SERVICES)
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {sorted(unknown)}; choose from {SERVICES}")
    if not settings.kafka_bootstrap:
        raise _fail("set SWITCHBOARD_KAFKA_BOOTSTRAP (or use `switchboard up` for a local broker)")
    configure_logging(log_level, personal_data=settings.log_personal_data)  # it runs

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        await run_hub(_hub(settings), stop, services=chosen)

    asyncio.run(main())


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Play simulator traffic into the hub")] = False,
    demo_rate: float = 20.0,
    fresh: Annotated[bool, typer.Option(help="Start with an empty broker")] = False,
    store: Annotated[
        str | None,
        typer.Option(
            help="'postgres': run on a throwaway local PostgreSQL (Debian's package, loopback, "
            "a temp dir removed at the end) instead of SWITCHBOARD_STORE"
        ),
    ] = None,
    log_level: str = "INFO",
) -> None:
    """Start everything locally: Kafka broker, recorder, timeline and API. Ctrl-C stops all."""
    from deploy.kafka_local import KafkaLaunchError, LocalKafka, jars_cached
    from services.bootstrap.logs import configure_logging

    settings = _settings()
    configure_logging(log_level, json_lines=False, personal_data=settings.log_personal_data)
    if store not in (None, "postgres"):
        raise _fail(f"--store takes 'postgres' (got {store!r}); other stores: SWITCHBOARD_STORE")
    with ExitStack() as started:  # stopped in reverse, however the run ends
        if store == "postgres":
            database = _throwaway_postgres()
            started.callback(_discard_postgres, database)
            settings = settings.model_copy(update={"store": database.url("switchboard")})
        if not settings.kafka_bootstrap:
            broker = LocalKafka(
                work_dir=settings.data_dir / "kafka",
                port=settings.local_kafka_port,
                controller_port=settings.local_kafka_port + 1,
                keep_data=not fresh,
            )
            first = "" if jars_cached() else " (first run: fetching its jars from Maven Central)"
            out.print(f"starting the local Kafka broker{first}…")
            try:
                broker.start()
            except KafkaLaunchError as e:
                raise _fail(f"{e} (set SWITCHBOARD_LOCAL_KAFKA_PORT to use another port)") from None
            started.callback(_stop_broker, broker)
            settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        _run_up(settings, demo=demo, demo_rate=demo_rate, postgres=store == "postgres")


def _stop_broker(broker: LocalKafka) -> None:
    out.print("stopping the Kafka broker…")
    broker.stop()


def _discard_postgres(database: PostgresCluster) -> None:
    out.print("stopping PostgreSQL and removing its data…")
    if not database.discard():
        out.print(f"[yellow]PostgreSQL did not stop[/yellow]: {database.data_dir} is left")


def _run_up(settings: Settings, *, demo: bool, demo_rate: float, postgres: bool) -> None:
    """``up``'s hub (and demo) on the broker and store it started; Ctrl-C stops it."""
    from services.bootstrap.hub import run_hub
    from services.bootstrap.users_cli import first_sign_in, print_sign_in

    api_url = f"http://{settings.http_host}:{settings.http_port}"
    demo_phone_token = None
    if demo:
        settings, demo_phone_token = _demo_settings(settings, api_url)
    hub = _hub(settings)
    out.print(
        f"[green]Kafka[/green] {hub.kafka}   [green]store[/green] {settings.store}   "
        f"[green]API[/green] {api_url}/docs"
    )
    # Nothing is open, so a new hub must say how to get in: its first admin's token.
    users = hub.user_directory()
    print_sign_in(first_sign_in(users, demo=demo), directory=users, api_url=api_url)
    out.print(
        f"console: {api_url}/console/  (sign in with a user's password or API token; "
        "add agents with `switchboard users add NAME --role agent --password`)"
    )
    if postgres:  # another shell's commands need to be told where the store is
        out.print(f"in another shell: export SWITCHBOARD_STORE={settings.store}")
    out.print("try: switchboard timeline +493050000000   (Ctrl-C stops everything)")

    async def main() -> None:
        stop = asyncio.Event()  # Ctrl-C
        _install_stop(stop)
        # The hub stops after the demo's callers have hung up, so their last status callbacks
        # still reach it (no call is left ringing in the next run's screen pops).
        hub_stop = asyncio.Event()
        running = asyncio.create_task(run_hub(hub, hub_stop, refuse_s=0))
        demos: list[asyncio.Task] = []
        if demo_phone_token is not None:
            from deploy.phone import DemoPhoneNetwork

            phone = DemoPhoneNetwork(
                api_url=api_url, public_base_url=api_url, auth_token=demo_phone_token
            )
            out.print(
                "demo: a pretend phone network calls the hotline every few seconds "
                "(set yourself available in the console to get the calls)"
            )
            demos.append(asyncio.create_task(phone.run(stop)))
        if demo:
            out.print(f"demo: playing simulated traffic into the hub at {demo_rate:g} contacts/s")
            demos.append(
                asyncio.create_task(
                    _run_simulation(
                        hub,
                        customers=200,
                        rate=demo_rate,
                        duration=10**6,
                        stop=stop,
                        progress=False,
                    )
                )
            )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, running], return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # the hub may have ended by itself (its port taken): the demo ends too
        if demos:
            await asyncio.wait(demos, timeout=15)
        hub_stop.set()
        await running  # raises what ended it, if anything did

    asyncio.run(main())


def _throwaway_postgres() -> PostgresCluster:
    """A PostgreSQL cluster of this run (``up --store postgres``) with its ``switchboard``
    database; the hub creates its tables on start."""
    import psycopg

    from deploy.pg_local import start_throwaway_cluster

    out.print("starting a throwaway PostgreSQL (Debian's package) on loopback…")
    try:
        cluster = start_throwaway_cluster()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.decode(errors="replace").strip() if hasattr(e, "stderr") else e
        raise _fail(
            f"PostgreSQL did not start: {detail or e} (make install puts it in place: "
            "deploy/install-system-deps.sh)"
        ) from None
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "switchboard"')
    out.print(f"[green]PostgreSQL[/green] in {cluster.data_dir} (removed when the hub stops)")
    return cluster


def _demo_settings(settings: Settings, api_url: str) -> tuple[Settings, str | None]:
    """The demo's routing (deploy/routing.demo.yaml) and, when no Twilio account is set, a
    made-up one whose webhooks the pretend phone network calls; its token, else None."""
    import secrets
    from pathlib import Path

    from pydantic import SecretStr

    import deploy

    update: dict[str, object] = {}
    if settings.routing_config is None:
        update["routing_config"] = Path(deploy.__file__).parent / "routing.demo.yaml"
    token = None
    if settings.twilio_auth_token is None:
        token = secrets.token_hex(16)
        update["twilio_auth_token"] = SecretStr(token)
        update["public_base_url"] = api_url
    return settings.model_copy(update=update), token


async def _run_simulation(
    hub: Hub,
    *,
    customers: int,
    rate: float,
    duration: float,
    stop: asyncio.Event | None = None,
    progress: bool = True,
    seed: int | None = None,
) -> SimulationResult | None:
    from deploy.simulator import simulate
    from services.bootstrap.kafka_topics import ensure_topics

    await ensure_topics(hub.settings, hub.kafka)
    async with hub.publisher(linger_ms=5) as publisher:

        async def publish(value: bytes, key: str) -> asyncio.Future:
            return await publisher.publish_unconfirmed(value, key=key)

        total = int(rate * duration)
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not progress,
        ) as bar:
            task = bar.add_task("records", total=total)
            sim = asyncio.create_task(
                simulate(
                    publish,
                    customers=customers,
                    rate=rate,
                    duration=duration,
                    seed=seed,
                    on_progress=lambda n: bar.advance(task, n),
                )
            )
            if stop is None:
                return await sim
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([sim, stopper], return_when=asyncio.FIRST_COMPLETED)
            sim.cancel()
            stopper.cancel()
            return None


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=1)] = 100,
    rate: Annotated[float, typer.Option(min=0.1, help="records per second")] = 50.0,
    duration: Annotated[float, typer.Option(min=0.1, help="seconds")] = 10.0,
    seed: Annotated[
        int | None, typer.Option(help="replay the traffic of an earlier run (default: new traffic)")
    ] = None,
) -> None:
    """Publish realistic mixed traffic (with some duplicates and malformed records) to Kafka."""
    hub = _hub(_client_settings())
    result = _with_kafka(
        hub.kafka,
        _run_simulation(hub, customers=customers, rate=rate, duration=duration, seed=seed),
    )
    assert result is not None
    out.print(
        f"published {result.published} records to {hub.settings.interactions_topic} on "
        f"{hub.kafka} with seed {result.seed} (`--seed {result.seed}` replays this run)"
    )
    if seed is None:
        out.print(
            f"for the recorder: {result.new_contacts} new contacts, {result.retries} provider "
            f"retries (it keeps one of each), {result.malformed} malformed (it dead-letters them)"
        )
    else:
        # The provider refs come from the seed: a replay publishes an earlier run's refs again.
        out.print(
            f"a replay: of its {result.new_contacts} contacts, those an earlier run with seed "
            f"{seed} already published are provider retries to the recorder, which drops them; "
            f"plus {result.retries} provider retries within this run (it keeps one of each) and "
            f"{result.malformed} malformed (it dead-letters them)"
        )


@app.command()
def timeline(
    target: Annotated[
        str, typer.Argument(help="an address (phone, e-mail, whatsapp:+…) or a customer id")
    ],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Show a customer's contact history across all channels, newest first."""
    hub = _hub(_settings())
    customer_id = customer_of(target, hub)
    entries = hub.timeline_view().timeline(customer_id, limit=limit)
    record_cli_read(hub, [customer_id], kind="timeline", what="switchboard timeline")
    if as_json:
        for e in entries:
            sys.stdout.write(
                json.dumps(
                    {
                        "occurred_at": e.occurred_at.isoformat(),
                        "type": e.type,
                        "channel": e.channel,
                        "direction": e.direction,
                        "summary": e.summary,
                        "provider_ref": e.provider_ref,
                    }
                )
                + "\n"
            )
        return
    table = Table(title=f"customer {customer_id}")
    for col in ("when (UTC)", "channel", "dir", "type", "summary"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.channel,
            e.direction[:3],
            e.type,
            e.summary,
        )
    out.print(table)
    if not entries:
        out.print("(no interactions yet)")


@app.command()
def lookup(
    address: Annotated[
        str, typer.Argument(help="a phone number, e-mail or social id (or a customer id)")
    ],
) -> None:
    """Who is this? The customer card behind an address (JSON; "known": false if nobody)."""
    from contracts import AddressError, parse_any_address
    from services.gateway.customers_api import card_out, lookup_answer

    hub = _hub(_settings())
    try:
        UUID(address)
    except ValueError:
        pass
    else:  # a customer id: resolved like every command's (an unknown one is an error)
        customer_id = customer_of(address, hub)
        card = hub.timeline_view().card(customer_id)
        if card is None:
            raise _fail(f"customer {customer_id} is not in the timeline view yet: try again")
        record_cli_read(hub, [customer_id], kind="card", what="switchboard lookup")
        out.print_json(card_out(card).model_dump_json())
        return
    # An address: nobody behind it is an answer ("known": false), not an error as elsewhere.
    try:
        normalized = parse_any_address(address, default_region=hub.settings.default_region)
    except AddressError as e:
        raise _fail(str(e)) from None
    answer = lookup_answer(normalized, hub.timeline_view().lookup(normalized))
    shown = [answer.customer, *(c.customer for c in answer.candidates)]
    record_cli_read(
        hub, [c.customer_id for c in shown if c], kind="lookup", what="switchboard lookup"
    )
    out.print_json(answer.model_dump_json())


@app.command()
def send(
    channel: Annotated[str, typer.Option(help="email, sms, whatsapp, messenger, telegram")],
    to: Annotated[str, typer.Option(help="the recipient's address")],
    body: Annotated[str, typer.Option(help="the text")] = "",
    subject: Annotated[str | None, typer.Option(help="e-mail subject")] = None,
    purpose: Annotated[str, typer.Option(help="service or marketing")] = "service",
) -> None:
    """Ask the hub to send a message (publishes a command on the outbound topic)."""
    from pydantic import ValidationError

    from contracts import SendMessage

    hub = _hub(_client_settings())
    settings = hub.settings
    try:
        command = SendMessage(
            channel=channel, to=to, body=body, subject=subject, purpose=purpose, requested_by="cli"
        )
    except ValidationError as e:
        raise _fail(str(e)) from None
    if command.channel not in hub.sending_channels():
        raise _fail(
            f"the hub has no sender for {command.channel}: set that channel's credentials "
            "(see README, Channels) and restart the hub"
        )

    async def publish() -> None:
        from services.bootstrap.kafka_topics import ensure_topics

        # Reaches Kafka (and makes sure the topic is there) with a call that cleans up after
        # itself when Kafka is down; a producer's failed start would leave one behind.
        await ensure_topics(settings, hub.kafka)
        async with hub.publisher(topic=settings.outbound_topic) as commands:
            await commands.publish_command(command, topic=settings.outbound_topic)

    _with_kafka(hub.kafka, publish())
    out.print(f"queued command {command.command_id} ({command.channel} to {command.to})")


projections_app = typer.Typer(help="Read models: rebuild from the event store.")
app.add_typer(projections_app, name="projections")


@projections_app.command("rebuild")
def rebuild() -> None:
    """Bring every projection up to date from the event store: the desk catches up, and the
    timeline view is rebuilt from zero beside the serving one, then swapped in at once. The hub
    may keep running: it answers from the old view until the new one has caught up."""
    from services.bootstrap.store_cli import rebuild_bar, rebuild_projections

    hub = _hub(_settings())
    with rebuild_bar() as progress:
        rebuilt = rebuild_projections(hub, progress=progress)
    out.print(
        f"timeline rebuilt up to event {rebuilt.timeline_position}, reachability up to "
        f"{rebuilt.reachability_position}; the desk has placed the contacts up to event "
        f"{rebuilt.desk_position}"
        + (f"; {rebuilt.skipped} events skipped (see the logs)" if rebuilt.skipped else "")
    )


@app.command()
def schemas(
    check: Annotated[bool, typer.Option(help="Exit 1 if the committed files drifted")] = False,
) -> None:
    """Write the JSON Schemas and the AsyncAPI document into contracts/schemas/."""
    from contracts import schema_gen

    target = Path(schema_gen.__file__).parent / "schemas"
    if check:
        code = schema_gen.main(["--check"])
        raise typer.Exit(code)
    for path in schema_gen.write_schemas(target):
        out.print(f"wrote {path}")


def main() -> None:
    """The ``switchboard`` command: an error of ours is one line and exit status 1, never a
    traceback (a bug still shows its traceback)."""
    from contracts.errors import SwitchboardError

    try:
        app(prog_name="switchboard")
    except SwitchboardError as e:
        err.print(f"[red]error:[/red] {e}")
        raise SystemExit(1) from None
