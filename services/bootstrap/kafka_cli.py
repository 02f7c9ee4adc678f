"""`switchboard kafka start|stop|status`: the local single-node broker of deploy.kafka_local.

Its defaults are `switchboard up`'s, from the settings: the work dir ``<data_dir>/kafka``
(``SWITCHBOARD_DATA_DIR``) and the port ``SWITCHBOARD_LOCAL_KAFKA_PORT`` (controller: +1), so
both commands find the same broker.

Exit codes: 0 ok, 1 failure (one-line error on stderr; the broker log path is in that line).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from deploy.kafka_local import KafkaLaunchError, LocalKafka
from services.bootstrap.settings import load_settings

kafka_app = typer.Typer(
    help="Run a local single-node Kafka broker (KRaft, 127.0.0.1 only) from Maven jars.",
    no_args_is_help=True,
)

WorkDirOption = Annotated[
    Path | None,
    typer.Option(
        "--work-dir",
        help="Holds data/, logs/, server.properties, kafka.pid, ports.json. "
        "Default: <data dir>/kafka, as `switchboard up` (SWITCHBOARD_DATA_DIR; var/kafka).",
        show_default=False,
    ),
]


def _work_dir(given: Path | None) -> Path:
    """The work dir asked for, else `switchboard up`'s: the settings' data dir/kafka."""
    return given if given is not None else load_settings().data_dir / "kafka"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message.splitlines()[0]}", err=True)
    return typer.Exit(1)


def _attach(work_dir: Path) -> LocalKafka | None:
    try:
        return LocalKafka.attach(work_dir)
    except KafkaLaunchError:
        return None


@kafka_app.command()
def start(
    work_dir: WorkDirOption = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="PLAINTEXT listener port on 127.0.0.1. "
            "Default: SWITCHBOARD_LOCAL_KAFKA_PORT (19092), as `switchboard up`.",
            show_default=False,
        ),
    ] = None,
    controller_port: Annotated[
        int | None,
        typer.Option(
            help="KRaft CONTROLLER listener port on 127.0.0.1. Default: the port + 1.",
            show_default=False,
        ),
    ] = None,
    keep_data: Annotated[
        bool,
        typer.Option(
            "--keep-data/--fresh",
            help="Keep topics and offsets of a previous run, or wipe and re-format the data dir.",
        ),
    ] = True,
    foreground: Annotated[
        bool, typer.Option(help="Stay attached; Ctrl-C (or SIGTERM) stops the broker cleanly.")
    ] = False,
) -> None:
    """Start the broker (in the background unless --foreground) and wait until it answers."""
    work_dir = _work_dir(work_dir)
    port = port if port is not None else load_settings().local_kafka_port  # as `switchboard up`
    controller_port = controller_port if controller_port is not None else port + 1
    running = _attach(work_dir)
    if running is not None and running.is_running():
        if foreground:
            raise _fail(f"a broker from {work_dir} is already running (pid {running.pid})")
        typer.echo(f"already running: pid {running.pid}, bootstrap {running.bootstrap}")
        return
    kafka = LocalKafka(
        work_dir=work_dir, port=port, controller_port=controller_port, keep_data=keep_data
    )
    started = time.monotonic()
    try:
        kafka.start()
    except KafkaLaunchError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"Kafka up after {time.monotonic() - started:.1f} s: bootstrap {kafka.bootstrap} "
        f"(pid {kafka.pid}, work dir {kafka.work_dir})"
    )
    if foreground:
        _run_foreground(kafka)


def _run_foreground(kafka: LocalKafka) -> None:
    """Wait until Ctrl-C/SIGTERM (then stop the broker) or until the broker dies (exit 1)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while kafka.is_running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping Kafka ...")
        try:
            kafka.stop()
        except KafkaLaunchError as exc:
            raise _fail(str(exc)) from exc
        typer.echo("stopped")
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    kafka.stop()  # reap it and remove the pid file
    raise _fail(f"Kafka broker exited on its own; log: {kafka.stdout_log}")


@kafka_app.command()
def stop(
    work_dir: WorkDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before SIGKILL.")] = 30.0,
) -> None:
    """Stop the broker of a work dir (SIGTERM, then SIGKILL after --timeout). Idempotent."""
    kafka = _attach(_work_dir(work_dir))
    if kafka is None or not kafka.is_running():
        typer.echo("not running")
        return
    pid = kafka.pid
    try:
        kafka.stop(timeout=timeout)
    except KafkaLaunchError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"stopped pid {pid}")


@kafka_app.command()
def status(work_dir: WorkDirOption = None) -> None:
    """Print the bootstrap address if the broker runs (exit 0), else exit 1.

    stdout carries only the address, so `export SWITCHBOARD_KAFKA_BOOTSTRAP=$(... status)` works;
    the human-readable part goes to stderr.
    """
    work_dir = _work_dir(work_dir)
    kafka = _attach(work_dir)
    if kafka is None or not kafka.is_running():
        typer.echo(f"not running (work dir {work_dir})", err=True)
        raise typer.Exit(1)
    typer.echo(f"running: pid {kafka.pid}, work dir {kafka.work_dir}", err=True)
    typer.echo(kafka.bootstrap)
