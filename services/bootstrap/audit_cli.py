"""``switchboard audit verify|checkpoint|keygen``: the customer history's tamper evidence.

Every stored event is chained by hash in the transaction that stores it
(``services/history/chain.py``).  ``verify`` recomputes the chain from the stored events and
names the first break; ``checkpoint`` signs the verified head with the audit key, into a file
to keep outside the database; ``verify --checkpoint FILE`` also checks that the store still has
the history a checkpoint signed.

Exit codes of ``verify``: 0 the chain (and every checkpoint) holds; 1 it does not, one line
says where and what; 2 it could not be checked as asked (no store, an unreadable checkpoint
file, no key to check signatures with, bad options).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contracts.errors import SwitchboardError
from services.bootstrap.access_cli import access_app
from services.bootstrap.cli_common import err, fail
from services.bootstrap.replay_cli import export_command, replay_command
from services.bootstrap.settings import Settings, load_settings

if TYPE_CHECKING:
    from services.audit.checkpoints import Checkpoint
    from services.audit.verify import ChainReport

audit_app = typer.Typer(
    help="Tamper evidence: verify the event chain, sign checkpoints of it.", no_args_is_help=True
)
out = Console(soft_wrap=True, highlight=False)

CANNOT_CHECK = 2


def _cannot(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(CANNOT_CHECK)


def _settings() -> Settings:
    try:
        return load_settings()
    except SwitchboardError as e:
        raise _cannot(str(e)) from None


def _verified(
    settings: Settings, heads_at: set[int], workers: int | None = None
) -> tuple[ChainReport, float]:
    """The chain of the configured store, verified with a progress bar on stderr; and how
    long the walk took (seconds)."""
    from services.audit.verify import default_workers, verify_chain
    from services.bootstrap.stores import open_history

    if not settings.is_postgres and not settings.sqlite_path("history").is_file():
        raise _cannot(
            f"no store at {settings.sqlite_path('history')} "
            "(check SWITCHBOARD_STORE and SWITCHBOARD_DATA_DIR)"
        )
    try:
        history = open_history(settings, cached=False)
    except Exception as e:  # the library's PersistenceError, a wrong URL, …
        raise _cannot(f"cannot open the store: {_first_line(e)}") from None
    try:
        started = time.monotonic()
        with _bar("verifying the event chain") as progress:
            report = verify_chain(
                history.recorder.chain,
                heads_at=heads_at,
                progress=progress,
                workers=workers or default_workers(),
            )
        return report, time.monotonic() - started
    finally:
        history.close()


@audit_app.command("verify")
def verify(
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="also check this signed checkpoint (repeat for several)",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="processes that check ranges of a big store side by side "
            "(default: the machine's cores, at most 4)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Recompute the event chain from the stored events; name the first break (exit 1)."""
    from services.audit.checkpoints import read_checkpoint, trusted_public_key

    settings = _settings()
    files: list[Checkpoint] = []
    trusted = ""
    if checkpoints:
        try:
            files = [read_checkpoint(path) for path in checkpoints]
            trusted = trusted_public_key(_secret(settings), settings.audit_public_key)
        except SwitchboardError as e:  # an unreadable checkpoint, no key to check it with
            raise _cannot(str(e)) from None
    report, seconds = _verified(settings, {c.notification_id for c in files}, workers)
    if report.first_break is not None:
        out.print(f"broken: {escape(str(report.first_break))}")
    else:
        out.print(f"intact: {_summary(report)} in {seconds:.1f} s")
        if report.start is not None and report.start.backfilled_events:
            out.print(_backfilled(report))
    held = _judge_all(files, report, trusted)
    access_intact = _verify_access_log(settings)
    if report.first_break is not None or not held or not access_intact:
        raise typer.Exit(1)


def _verify_access_log(settings: Settings) -> bool:
    """The access log's own chain (who read which customer): intact, or its first break."""
    from services.audit.access_log import open_access_log, verify_access_log

    log = open_access_log(settings)
    try:
        found = verify_access_log(log)
    finally:
        log.close()
    if found.intact:
        out.print(f"access log intact: {found.verified:,} entries")
        return True
    out.print(f"access log broken at entry {found.broken_at}: {escape(found.reason or '')}")
    return False


audit_app.command("replay")(replay_command)
audit_app.command("export")(export_command)
audit_app.add_typer(access_app, name="access", help="Who read which customer, when and why.")


def _judge_all(files: list[Checkpoint], report: ChainReport, trusted: str) -> bool:
    from services.audit.checkpoints import judge

    held = True
    for checkpoint in files:
        verdict = judge(checkpoint, report, trusted)
        held = held and verdict.holds
        name = escape(checkpoint.source)
        if verdict.holds:
            out.print(
                f"checkpoint {name} (notification {checkpoint.notification_id:,}, signed "
                f"{checkpoint.created_at.isoformat()}): {escape(verdict.text)}"
            )
        else:
            out.print(f"checkpoint {name} refused: {escape(verdict.text)}")
    return held


@audit_app.command("checkpoint")
def checkpoint(
    path: Annotated[
        Path,
        typer.Option("--out", help="the new file to write the signed checkpoint to ('-': stdout)"),
    ],
) -> None:
    """Verify the chain, then sign its head with the audit key into a checkpoint file."""
    from services.audit.checkpoints import sign_checkpoint, signing_key

    settings = _settings()
    stdout = str(path) == "-"
    if not stdout and path.exists():
        raise _cannot(f"{path} exists: name a new file (a checkpoint is never overwritten)")
    try:
        key = signing_key(_secret(settings), settings.audit_public_key)
    except SwitchboardError as e:
        raise fail(str(e)) from None
    report, _ = _verified(settings, set())
    if report.first_break is not None:
        out.print(f"broken: {escape(str(report.first_break))}")
        raise fail("the chain is broken: no checkpoint was signed")
    signed = sign_checkpoint(report, key)
    if stdout:
        print(signed.to_json(), end="")
        return
    try:
        _write_new(path, signed.to_json())
    except OSError as e:
        raise fail(f"cannot write {path}: {e}") from None
    out.print(
        f"checkpoint of {_summary(report)} signed with {signed.public_key}, written to "
        f"{escape(str(path))}: keep it outside the database"
    )


@audit_app.command("keygen")
def keygen(
    private_key_file: Annotated[
        Path | None,
        typer.Option(
            "--private-key-file",
            help="write the private key to this new file (mode 600) instead of printing it",
        ),
    ] = None,
) -> None:
    """Make a new audit key pair and print it as settings."""
    from services.audit.checkpoints import PUBLIC_KEY, SIGNING_KEY, new_key_pair

    private, public = new_key_pair()
    if private_key_file is None:
        out.print(f"{SIGNING_KEY}={private}")
    else:
        try:
            _write_new(private_key_file, private + "\n", mode=0o600)
        except OSError as e:
            raise fail(f"cannot write {private_key_file}: {e}") from None
        out.print(f"{SIGNING_KEY}_FILE={escape(str(private_key_file.resolve()))}")
    out.print(f"{PUBLIC_KEY}={public}")


# -- helpers ---------------------------------------------------------------------------------


def _secret(settings: Settings) -> str | None:
    key = settings.audit_signing_key
    return None if key is None else key.get_secret_value()


def _summary(report: ChainReport) -> str:
    if not report.events:
        return "0 events"
    noun = "event" if report.events == 1 else "events"
    side_by_side = f" ({report.processes} processes)" if report.processes > 1 else ""
    return (
        f"{report.events:,} {noun} up to notification {report.last_notification_id:,}"
        f"{side_by_side}, head {report.head.hex()}"
    )


def _backfilled(report: ChainReport) -> str:
    assert report.start is not None
    start = report.start
    return (
        f"note: the {start.backfilled_events:,} events up to notification "
        f"{start.backfilled_through:,} were stored before the chain began and were chained "
        f"when it did, {start.began_at.isoformat(timespec='seconds')}: their evidence starts "
        "then"
    )


def _write_new(path: Path, text: str, *, mode: int = 0o644) -> None:
    """``text`` into the new file ``path`` (never over an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@contextmanager
def _bar(what: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # no bar in a log
    ) as bar:
        task = bar.add_task(what, total=None)

        def progress(position: int, last: int) -> None:
            bar.update(task, completed=position, total=last)

        yield progress
