"""``switchboard store backup|restore``: the event store to a backup directory, and back.

**What a backup holds: the system of record, and nothing derived from it.**

- ``history``: the customers' events and, in the same notification log, their desks (the
  conversations, agents' status changes, notes and files are ``CustomerDesk`` events), with
  the identities, the provider refs that drop redelivered records, the Kafka offsets and the
  desk follower's position, all committed together.  A restored hub so goes on consuming Kafka
  exactly where the backed-up store stopped (what Kafka still holds of later records).
- ``users`` (roles, token hashes) and ``outbound`` (the send ledger: what was sent is not
  sent again).
- the blobs (``data_dir/blobs``: the desk's files and e-mail attachments; events name them by
  hash) and the e-mail checkpoints (``data_dir/email-checkpoints.db``: which mails were read).

Not the views (timeline, directory, their positions): they are projections of the history,
reset by a restore and rebuilt from it, so a restored view never disagrees with its events and
a backup restores across view schema versions.  The desk is *not* a view: agents' decisions
exist only as its events, so it is backed up with the history, and a rebuild only places the
contacts its follower had not placed yet.  Not ``data_dir/session.key``: a secret does not
belong in a backup (console users sign in again), nor the local Kafka broker's data.

**Consistency.**  SQLite: each part is copied with the online backup API in one step, one read
transaction, so a snapshot of that part while the hub goes on writing (WAL: readers never block
writers).  PostgreSQL: ``pg_dump -Fc`` of the snapshot the events are counted in
(``pg_export_snapshot``), views excluded; the password goes in ``PGPASSWORD``, never on a command
line.  No transaction spans two parts, so a snapshot per part is consistent.  Blobs are copied
after the events, and a blob is stored before any event names it: every file an event of the
backup names is in the backup.

**Layout.**  ``PATH/{history,users,outbound}.db`` (SQLite) or ``PATH/database.dump``,
``PATH/email-checkpoints.db``, ``PATH/blobs/ab/cd/<sha256>``, and ``PATH/manifest.json``
(store kind, parts with event counts and last notification id, files with SHA-256, time,
version), written last into a directory renamed into place: no manifest, no backup.

**Restore** (stop the hub first): into a store of the same kind without events (``--force``
replaces one that has some); every file is checked against the manifest before anything is
written.  The views are reset, then rebuilt now (``--rebuild``, the default) or by the hub's
timeline and desk services when it starts.  A backup of one kind does not restore into the
other (that would be a migration, copying events; not done here).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contracts.errors import SwitchboardError
from services.bootstrap.cli_common import err, one_line_errors
from services.bootstrap.settings import Settings, load_settings

if TYPE_CHECKING:
    from services.bootstrap.bootstrap import Hub

__all__ = ["Rebuilt", "StoreBackupError", "backup", "rebuild_projections", "restore", "store_app"]

store_app = typer.Typer(
    help="Back up the event store and restore it into an empty store.", no_args_is_help=True
)
out = Console()

FORMAT = "switchboard-store-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
CHECKPOINTS = "email-checkpoints.db"  # channels.email.checkpoints.CHECKPOINTS_FILE
# Store part -> its application's name (PostgreSQL: the table "<name>_events").
PARTS = {
    "history": "switchboard",
    "users": "users",
    "outbound": "outbound",
    "campaigns": "campaigns",
}
# The views' tables on PostgreSQL (projections/timeline_postgres.py, reachability_postgres.py):
# rebuilt, not backed up.
PG_VIEW_TABLES = "timeline_*"
PG_REACH_TABLES = "reachability_*"
# The keyring (services/history/keys.py): never in a store backup, so an erasure after the
# backup reaches it too.  ``store backup-keys`` writes the keys to a file of their own.
PG_KEY_TABLES = ("*_customer_keys", "*_blob_keys")


_NO_STORE = "nothing to back up: there is no store in"
_CHECK_SETTINGS = " (check SWITCHBOARD_STORE and SWITCHBOARD_DATA_DIR)"


class StoreBackupError(SwitchboardError):
    """A backup cannot be taken or restored; the message says why and what to do."""


Step = Callable[[str, int], None]  # (what is being done, how many steps it takes)


def _kind(settings: Settings) -> str:
    return "postgresql" if settings.is_postgres else "sqlite"


def _where(settings: Settings) -> str:
    if settings.is_postgres:
        return f"the database {_split_password(settings.store)[0]}"
    return f"the store {settings.sqlite_path('history')}"


# -- backup ------------------------------------------------------------------------------------


def backup(settings: Settings, path: Path, *, step: Step | None = None) -> dict[str, Any]:
    """Back up the configured store into the new directory ``path``; its manifest."""
    step = step or (lambda _what, _n: None)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreBackupError(f"{path} exists and is not an empty directory: name a new one")
    if not settings.is_postgres and not settings.sqlite_path("history").is_file():
        raise StoreBackupError(f"{_NO_STORE} {settings.sqlite_path('history')}{_CHECK_SETTINGS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "store": _kind(settings),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "switchboard_version": _version(),
            "views": "not included: rebuilt from the history after a restore",
            "keys": "not included: restore with --keys FILE (switchboard store backup-keys)",
        }
        if settings.is_postgres:
            step("dumping the PostgreSQL database", 1)
            manifest["parts"] = _pg_dump(settings.store, work / DUMP)
        else:
            manifest["parts"] = {}
            for part in PARTS:
                step(f"copying {part}", 1)
                copied = _sqlite_copy(settings.sqlite_path(part), work / f"{part}.db")
                manifest["parts"][part] = copied
        checkpoints = settings.data_dir / CHECKPOINTS
        if checkpoints.is_file():  # after the history: its offsets are older, nothing is lost
            step("copying the e-mail checkpoints", 1)
            _sqlite_copy(checkpoints, work / CHECKPOINTS)
        blobs = _blob_files(settings.data_dir / "blobs")
        step("copying files", len(blobs))
        manifest["blobs"] = _copy_blobs(blobs, work / "blobs", step)
        manifest["files"] = {
            f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)}
            for f in sorted(work.iterdir())
            if f.is_file()
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if path.exists():
            path.rmdir()  # an empty directory given as the target
        work.rename(path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _sqlite_copy(source: Path, target: Path) -> dict[str, Any]:
    """``source`` into the new file ``target`` with the online backup API; the events it
    holds.  A part never opened (no file) has none and is left out."""
    if not source.is_file():
        return {"events": 0, "max_notification_id": 0}
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read transaction, one snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
        return {**_sqlite_events(dst), "file": target.name}
    except sqlite3.DatabaseError as e:
        raise StoreBackupError(f"cannot copy {source}: {e}") from None
    finally:
        src.close()
        dst.close()


def _sqlite_events(db: sqlite3.Connection) -> dict[str, int]:
    has = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'stored_events'").fetchone()
    if not has:
        return {"events": 0, "max_notification_id": 0}
    count, last = db.execute("SELECT count(*), max(rowid) FROM stored_events").fetchone()
    return {"events": count, "max_notification_id": last or 0}


def _pg_dump(url: str, target: Path) -> dict[str, Any]:
    """``pg_dump -Fc`` of the snapshot in which the parts' events are counted."""
    import psycopg

    pg_dump = pg_tool("pg_dump")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # The snapshot stays valid while this transaction is open, i.e. until the dump ends.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
                parts = _pg_events(conn)
                if conn.execute("SELECT to_regclass('switchboard_events')").fetchone()[0] is None:
                    where = _split_password(url)[0]
                    raise StoreBackupError(f"{_NO_STORE} the database {where}{_CHECK_SETTINGS}")
                _run_pg(
                    [
                        pg_dump,
                        "--format=custom",
                        f"--snapshot={snapshot}",
                        f"--exclude-table={PG_VIEW_TABLES}",
                        f"--exclude-table={PG_REACH_TABLES}",
                        *(f"--exclude-table={t}" for t in PG_KEY_TABLES),
                        f"--file={target}",
                    ],
                    url,
                )
    except psycopg.Error as e:
        raise StoreBackupError(f"cannot use the PostgreSQL database: {_first_line(e)}") from None
    return parts


def _pg_events(conn: Any) -> dict[str, dict[str, int]]:
    parts = {}
    for part, name in PARTS.items():
        table = conn.execute("SELECT to_regclass(%s)", (f"{name}_events",)).fetchone()[0]
        count, last = 0, 0
        if table is not None:
            count, last = conn.execute(
                f'SELECT count(*), coalesce(max(notification_id), 0) FROM "{name}_events"'
            ).fetchone()
        parts[part] = {"events": count, "max_notification_id": last}
    return parts


def _blob_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    # Named by their hash; a writer's temporary ``.incoming-*`` files are not blobs yet.
    return sorted(f for f in folder.glob("??/??/*") if len(f.name) == 64 and f.is_file())


def _copy_blobs(files: list[Path], folder: Path, step: Step) -> dict[str, int]:
    from channels.email.blobs import SEALED_BLOB, LocalBlobStore

    store = LocalBlobStore(folder)
    size = 0
    for f in files:
        data = f.read_bytes()
        if data.startswith(SEALED_BLOB):  # sealed: copied as it is (its tag checks it on read)
            target = store.path_for(f.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        elif store.put(data) != f.name:  # checked on the way in and out: content addressing
            raise StoreBackupError(f"the file {f} is damaged: its content does not match its name")
        size += len(data)
        step("", 0)
    return {"files": len(files), "bytes": size}


# -- restore -----------------------------------------------------------------------------------


def read_manifest(path: Path, settings: Settings) -> dict[str, Any]:
    """The backup's manifest, once it and every file it lists are checked."""
    if not path.exists():
        raise StoreBackupError(f"no backup at {path}: no such directory")
    if not path.is_dir():
        raise StoreBackupError(
            f"{path} is not a backup: `switchboard store backup` writes a folder"
        )
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreBackupError(f"{path} holds no {MANIFEST}: not a (complete) backup") from None
    except (OSError, ValueError) as e:
        raise StoreBackupError(f"{path / MANIFEST} cannot be read: {_first_line(e)}") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not all(isinstance(manifest.get(k), dict) for k in ("parts", "files", "blobs"))
    ):
        raise StoreBackupError(f"{path / MANIFEST} is not the manifest of a switchboard backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreBackupError(
            f"{path} has backup format {manifest.get('format_version')}, this release reads "
            f"{FORMAT_VERSION}: restore it with the release that wrote it"
        )
    if manifest.get("store") != _kind(settings):
        theirs = "PostgreSQL" if manifest.get("store") == "postgresql" else "SQLite"
        ours = "PostgreSQL" if settings.is_postgres else "SQLite"
        raise StoreBackupError(
            f"{path} is a backup of a {theirs} store, but SWITCHBOARD_STORE is {ours}: "
            f"restore it into a {theirs} store"
        )
    for name, expected in manifest.get("files", {}).items():
        f = path / name
        if not f.is_file() or _sha256(f) != expected.get("sha256"):
            raise StoreBackupError(f"{f} is missing or damaged (not as the manifest says)")
    return manifest


def backup_keys(settings: Settings, path: Path) -> tuple[int, int]:
    """The keyring into the new file ``path`` (keys, erasures)."""
    from services.bootstrap.stores import open_history
    from services.history.keys import write_key_file

    if path.exists():
        raise StoreBackupError(f"{path} exists: name a new file")
    if not settings.is_postgres and not settings.sqlite_path("history").is_file():
        raise StoreBackupError(f"{_NO_STORE} {settings.sqlite_path('history')}{_CHECK_SETTINGS}")
    keyring = open_history(settings, cached=False).keyring
    keys, erased = keyring.all_keys(), list(keyring.erasures().values())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_key_file(path, keys, erased, keyring.all_blob_keys())
    path.chmod(0o600)
    return len(keys), len(erased)


def restore_keys(settings: Settings, keys_file: Path) -> tuple[int, int]:
    """Keys from a key backup into the store's keyring, then every erasure the key backup or
    the history knows of applied again (a key backup older than an erasure does not bring
    the person back).  (keys added, erasures applied)."""
    from services.bootstrap.stores import open_history
    from services.history.keys import read_key_file

    try:
        keys, erased, blob_keys = read_key_file(keys_file)
    except (ValueError, OSError) as e:
        raise StoreBackupError(str(e)) from None
    history = open_history(settings, cached=False)
    keyring = history.keyring
    for e in erased:
        keyring.erase([e.customer_id], by=e.by, basis=e.basis)
    added = keyring.add_keys(keys)
    keyring.add_blob_keys(blob_keys)
    return added, len(erased) + history.reapply_erasures()


def restore(
    settings: Settings,
    path: Path,
    *,
    force: bool = False,
    step: Step | None = None,
    keys: Path | None = None,
    without_keys: bool = False,
) -> dict[str, Any]:
    """Restore the backup at ``path`` into the configured store; its manifest.  Refused when
    the store has events, unless ``force``; the views are reset (not rebuilt).  The keys come
    from ``keys`` (a ``backup-keys`` file), else the store's keyring must have some (restoring
    in place), else it is refused unless ``without_keys``."""
    step = step or (lambda _what, _n: None)
    manifest = read_manifest(path, settings)
    if keys is not None and not keys.is_file():
        raise StoreBackupError(f"no key backup at {keys}")
    if keys is None and not without_keys and "keys" in manifest and not _has_keys(settings):
        raise StoreBackupError(
            "a store backup holds no keys (an erasure must reach every copy): pass --keys FILE "
            "written by `switchboard store backup-keys`, or --without-keys to restore events "
            "whose personal data nobody can read"
        )
    present = store_events(settings)
    if sum(present.values()) and not force:
        held = ", ".join(f"{part} {n:,}" for part, n in present.items() if n)
        raise StoreBackupError(
            f"{_where(settings)} already has events ({held}): restore into an empty store, "
            "or pass --force to replace them"
        )
    if settings.is_postgres:
        step("restoring the PostgreSQL database", 1)
        _pg_restore(settings.store, path / DUMP)
    for part, found in manifest["parts"].items():
        if settings.is_postgres:
            break
        if "file" in found:
            step(f"restoring {part}", 1)
            _sqlite_restore(path / found["file"], settings.sqlite_path(part))
        else:  # never opened when backed up: so it is after the restore (--force)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{settings.sqlite_path(part)}{suffix}").unlink(missing_ok=True)
    if (path / CHECKPOINTS).is_file():
        step("restoring the e-mail checkpoints", 1)
        _sqlite_restore(path / CHECKPOINTS, settings.data_dir / CHECKPOINTS)
    blobs = _blob_files(path / "blobs")
    step("restoring files", len(blobs))
    _copy_blobs(blobs, settings.data_dir / "blobs", step)
    if keys is not None:
        step("restoring the keys", 1)
        restore_keys(settings, keys)
    _reset_views(settings)
    return manifest


def _has_keys(settings: Settings) -> bool:
    if settings.is_postgres:
        import psycopg

        try:
            with psycopg.connect(settings.store, autocommit=True) as conn:
                row = conn.execute("SELECT to_regclass('switchboard_customer_keys')").fetchone()
                if row is None or row[0] is None:
                    return False
                found = conn.execute("SELECT 1 FROM switchboard_customer_keys LIMIT 1")
                return found.fetchone() is not None
        except psycopg.Error:
            return False
    from services.history.keys import keyring_path

    path = keyring_path(settings.sqlite_path("history"))
    if not path.is_file():
        return False
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM customer_keys LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def store_events(settings: Settings) -> dict[str, int]:
    """How many events each part of the configured store holds (nothing is created)."""
    if settings.is_postgres:
        import psycopg

        try:
            with psycopg.connect(settings.store, autocommit=True) as conn:
                return {part: found["events"] for part, found in _pg_events(conn).items()}
        except psycopg.Error as e:
            raise StoreBackupError(
                f"cannot use the PostgreSQL database: {_first_line(e)}"
            ) from None
    counts = {}
    for part in PARTS:
        f = settings.sqlite_path(part)
        counts[part] = 0
        if f.is_file():
            try:
                with _closing(sqlite3.connect(f"file:{f}?mode=ro", uri=True)) as db:
                    counts[part] = _sqlite_events(db)["events"]
            except sqlite3.DatabaseError as e:
                raise StoreBackupError(f"{f} is not a readable SQLite store: {e}") from None
    return counts


def _sqlite_restore(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        _closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        _closing(sqlite3.connect(target, timeout=30)) as dst,
    ):
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")  # as the store keeps it
        except sqlite3.DatabaseError as e:
            raise StoreBackupError(f"cannot restore {target}: {e}") from None


def _pg_restore(url: str, dump: Path) -> None:
    # One transaction: a failed restore leaves the database as it was.  --clean drops the
    # dump's tables first (a store opened once has them, empty, or --force replaces them);
    # ownership and grants are the restoring user's.  A running hub's locks would make it
    # wait: stop after 10 s instead.
    _run_pg(
        [
            pg_tool("pg_restore"),
            "--single-transaction",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-acl",
            str(dump),
        ],
        url,
        extra_env={"PGOPTIONS": "-c lock_timeout=10s"},
    )


def _reset_views(settings: Settings) -> None:
    """The views start from zero: rebuilt now, or by the hub's services when it starts."""
    from services.bootstrap.stores import open_reachability_view, open_timeline_view

    for view in (open_timeline_view(settings), open_reachability_view(settings)):
        try:
            view.reset()
        finally:
            with suppress(Exception):
                view.datastore.close()


# -- rebuilding the projections ----------------------------------------------------------------


@dataclass(frozen=True)
class Rebuilt:
    desk_position: int  # the last contact the desk follower placed
    timeline_position: int  # the last event the timeline view applied
    skipped: int  # events the timeline could not apply (see its skipped())
    reachability_position: int = 0  # the last event the reachability view applied


def rebuild_projections(
    hub: Hub, *, progress: Callable[[str, int, int], None] | None = None
) -> Rebuilt:
    """Every projection of the history brought up to date: first the desk follower catches up
    (the desks are events of the history, not a view: it places only the contacts it had not
    placed), then the timeline view is rebuilt from zero, its desk entries included: beside
    the serving one, which answers until the new one has caught up and is swapped in
    (projections/rebuild.py); then the reachability view, in one transaction (readers see the
    old one until it commits).  The hub may keep running.  ``progress(projection, position,
    last event)``."""
    from functools import partial

    from projections.reachability_store import rebuild_reachability
    from projections.rebuild import rebuild_timeline
    from services.bootstrap.stores import open_history

    report = progress or (lambda _name, _position, _total: None)
    history = hub.history()
    desk = hub.desk_follower()
    total = history.recorder.max_notification_id() or 0
    while desk.run_once():
        report("desk", desk.position, total)
    view = hub.timeline_view()
    position = rebuild_timeline(
        history,
        view,
        open_source=partial(open_history, hub.settings, cached=False),  # the load's readers
        progress=lambda at, last: report("timeline", at, last),
    )
    reach = rebuild_reachability(
        history, hub.reachability_view(), progress=lambda at, last: report("reachability", at, last)
    )
    return Rebuilt(desk.position, position, len(view.skipped()), reach)


# -- PostgreSQL's tools ------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """``pg_dump`` or ``pg_restore``: the newest Debian-installed one (it must be at least the
    server's version), else the one on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        reverse=True,
    )
    found = str(versions[0]) if versions else shutil.which(name)
    if found is None:
        raise StoreBackupError(
            f"{name} is not installed: install the PostgreSQL client tools "
            "(apt-get install postgresql-client), of the server's version or newer"
        )
    return found


def _run_pg(command: list[str], url: str, *, extra_env: dict[str, str] | None = None) -> None:
    conninfo, password = _split_password(url)
    # The child gets this process's environment (PATH, locale, PGSSLROOTCERT …) and the
    # password in PGPASSWORD: on a command line every user of the machine could read it.
    env = dict(os.environ, **(extra_env or {}))
    if password is not None:
        env["PGPASSWORD"] = password
    done = subprocess.run(
        [*command, f"--dbname={conninfo}"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tool = Path(command[0]).name
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StoreBackupError(f"{tool} failed: {reason}")


def _split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password, and the password."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    netloc = f"{user}{at}{hostport}"
    return urlunsplit(parts._replace(netloc=netloc)), unquote(password) if colon else None


# -- small helpers -----------------------------------------------------------------------------


def _sha256(f: Path) -> str:
    digest = hashlib.sha256()
    with f.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:
        return "unknown"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@contextmanager
def _closing(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # sqlite3's own context manager commits; it does not close.
    try:
        yield db
    finally:
        db.close()


@contextmanager
def _steps() -> Iterator[Step]:
    """A progress bar on stderr; ``step(what, n)`` starts a step of ``n`` units, ``step("", 0)``
    finishes one unit."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # no bar in a log
    ) as bar:
        started: list[tuple[Any, int]] = []  # (task, its units)

        def step(what: str, units: int) -> None:
            if not what:
                bar.advance(started[-1][0])
                return
            if started:
                bar.update(started[-1][0], completed=started[-1][1])
            started.append((bar.add_task(what, total=units), units))

        yield step


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    size = float(n)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:,.1f} {unit}"


def _files(manifest: dict[str, Any]) -> str:
    n = manifest["blobs"]["files"]
    return f"{n:,} file" if n == 1 else f"{n:,} files"


def _events_text(manifest: dict[str, Any]) -> str:
    parts = manifest["parts"]
    total = sum(p["events"] for p in parts.values())
    each = ", ".join(f"{name} {p['events']:,}" for name, p in parts.items())
    return f"{total:,} events ({each})"


# -- the commands ------------------------------------------------------------------------------


@store_app.command("backup")
def backup_command(
    path: Annotated[Path, typer.Argument(help="a new (or empty) directory for the backup")],
) -> None:
    """Back up the store while the hub runs: events, users, send ledger, desk files."""
    started = time.monotonic()
    with one_line_errors():
        settings = load_settings()
        try:
            with _steps() as step:
                manifest = backup(settings, path, step=step)
        except OSError as e:
            raise StoreBackupError(f"cannot write the backup to {path}: {e}") from None
    size = sum(f["bytes"] for f in manifest["files"].values()) + manifest["blobs"]["bytes"]
    out.print(
        f"backed up {_events_text(manifest)} and {_files(manifest)} to {path}: "
        f"{_size(size)} in {time.monotonic() - started:.1f} s",
        soft_wrap=True,
    )


@store_app.command("backup-keys")
def backup_keys_command(
    path: Annotated[Path, typer.Argument(help="a new file for the keys")],
) -> None:
    """Back up the keyring (one key per customer) to a file of its own. Keep it apart from
    the store backups and for no longer than an erasure may take (say 30 days): it can read
    every person in it, also one erased after it was taken."""
    with one_line_errors():
        settings = load_settings()
        try:
            keys, erased = backup_keys(settings, path)
        except OSError as e:
            raise StoreBackupError(f"cannot write the keys to {path}: {e}") from None
    out.print(f"backed up {keys:,} keys and {erased:,} erasures to {path} (mode 600)")


@store_app.command("restore")
def restore_command(
    path: Annotated[Path, typer.Argument(help="a directory written by `switchboard store backup`")],
    keys: Annotated[
        Path | None,
        typer.Option("--keys", help="the keys, from `switchboard store backup-keys`"),
    ] = None,
    without_keys: Annotated[
        bool,
        typer.Option(
            "--without-keys", help="restore although no keys are at hand (nobody can read them)"
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="replace a store that has events (they are lost)")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild/--no-rebuild",
            help="rebuild the desk and the timeline now (else the hub's services do on start)",
        ),
    ] = True,
) -> None:
    """Restore a backup into an empty store (stop the hub first), then rebuild the views."""
    started = time.monotonic()
    with one_line_errors():
        settings = load_settings()
        try:
            with _steps() as step:
                manifest = restore(
                    settings, path, force=force, step=step, keys=keys, without_keys=without_keys
                )
        except OSError as e:
            raise StoreBackupError(f"cannot restore from {path}: {e}") from None
    out.print(
        f"restored {_events_text(manifest)} and {_files(manifest)} from "
        f"the backup of {manifest['created_at']} in {time.monotonic() - started:.1f} s",
        soft_wrap=True,
    )
    if not rebuild:
        out.print(
            "the views are reset: the hub's timeline and desk services bring them up to date "
            "when it starts",
            soft_wrap=True,
        )
        return
    from services.bootstrap.bootstrap import bootstrap

    started = time.monotonic()
    with rebuild_bar() as progress, one_line_errors():
        rebuilt = rebuild_projections(bootstrap(settings), progress=progress)
    skipped = f", {rebuilt.skipped} events skipped" if rebuilt.skipped else ""
    out.print(
        f"projections rebuilt in {time.monotonic() - started:.1f} s: the desk has placed the "
        f"contacts up to event {rebuilt.desk_position:,}, the timeline shows the events up to "
        f"{rebuilt.timeline_position:,}{skipped}",
        soft_wrap=True,
    )


@contextmanager
def rebuild_bar() -> Iterator[Callable[[str, int, int], None]]:
    with Progress(
        TextColumn("rebuilding {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # no bar in a log
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, position: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=position, total=total)

        yield progress
