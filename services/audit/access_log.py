"""The access log: who read which customer's data, when, what, and why — hash-chained.

One row per customer whose data a request showed (a search that lists five customers is
five rows sharing a ``request_id``; a read that showed nobody, an unknown address or a 404,
is one row without a customer).  A row says who (a user name, or ``cli:<login>``), ``via``
(``api`` with the ``token_id`` used, ``console``, or ``cli``), which customer, ``kind``
(lookup, card, timeline, search, file, …), ``what`` (method and route template, or the CLI
command), ``target`` (the conversation, file or message it named, never an address),
``purpose`` (what the reader said it was for), ``outcome`` (the HTTP status: 200, 403,
404…) and when (``at``, UTC).  Addresses that were looked up are not kept: a lookup row
names the customer the address led to, or none; the log itself holds no personal data
beyond customer ids and staff names.

**Tamper evidence.**  Rows are numbered 1, 2, 3… (``seq``) and chained:
``hash = sha256(prev_hash || canonical JSON of the row's content, seq included)``, where
``prev_hash`` is the previous row's hash (64 zeros before the first).  A batch of rows is one
INSERT statement (one transaction) numbered on from the newest row this writer knows; if
another writer (another API process, the CLI) has taken that number meanwhile, the primary
key refuses the whole batch and it is numbered, chained and inserted again holding the log's
write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE … IN EXCLUSIVE MODE``, which
readers do not wait for).  So every writer appends to the one chain, and the common case
(one API process) reads no head and takes no lock beyond its INSERT's own.
``verify_access_log`` walks it and names the first row that was modified, deleted, inserted
or reordered.  What a chain cannot show by itself is the removal of its newest rows: the
report gives the head (``seq``, hash) so it can be compared with one noted earlier.

**Durable.**  A commit returns once the rows are on disk (SQLite: WAL with
``synchronous=FULL``; PostgreSQL: its commit).  The HTTP side (``services.gateway.access_log``)
answers a read only after the rows that record it are committed.

Store: on SQLite a file of its own (``settings.sqlite_path("access")``: no waits on the
history's write lock); on PostgreSQL the ``access_log`` table in the configured database.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import orjson

from contracts.errors import Unavailable

if TYPE_CHECKING:
    from services.bootstrap.settings import Settings

GENESIS = "0" * 64
PURPOSE_MAX = 200
_PAGE = 5000

# The row's content, in the order of the table's columns (seq first; the hashes follow).
CONTENT = (
    "seq",
    "at",
    "who",
    "via",
    "token_id",
    "customer_id",
    "kind",
    "what",
    "target",
    "purpose",
    "outcome",
    "request_id",
)
COLUMNS = (*CONTENT, "prev_hash", "hash")

_TABLE = """CREATE TABLE IF NOT EXISTS access_log (
    seq {seq_type} PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    via TEXT NOT NULL,
    token_id TEXT,
    customer_id TEXT,
    kind TEXT NOT NULL,
    what TEXT NOT NULL,
    target TEXT,
    purpose TEXT,
    outcome INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS access_log_by_customer ON access_log (customer_id, seq)",
    "CREATE INDEX IF NOT EXISTS access_log_by_who ON access_log (who, seq)",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM access_log"
_HEAD = "SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1"
_TYPES = {"seq": "bigint", "outcome": "integer"}
# A batch is one statement whatever its size (its rows as one JSON array): one transaction,
# one fsync, one round trip, and one release of the GIL by the writer thread, which would
# otherwise queue for it behind the event loop's thread after every statement.
_INSERT_SQLITE = (
    f"INSERT INTO access_log ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$.{c}')" for c in COLUMNS)
    + " FROM json_each(?)"
)
_INSERT_POSTGRES = (
    f"INSERT INTO access_log ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
    "FROM jsonb_to_recordset(%s::jsonb) AS batch("
    + ", ".join(f"{c} {_TYPES.get(c, 'text')}" for c in COLUMNS)
    + ")"
)


class AccessLogUnavailable(Unavailable):
    """The access log could not be written: what would have been read is not shown."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 4x (per request)
class AccessEntry:
    """One read (or refused attempt) of one customer's data, as a request records it."""

    who: str
    via: str
    kind: str
    what: str
    outcome: int
    request_id: str
    customer_id: UUID | None = None
    target: str | None = None
    purpose: str | None = None
    token_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def content(self, seq: int) -> dict[str, Any]:
        """The row as stored and hashed (text and integers only: the same on both stores)."""
        return {
            "seq": seq,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "who": self.who,
            "via": self.via,
            "token_id": self.token_id,
            "customer_id": str(self.customer_id) if self.customer_id is not None else None,
            "kind": self.kind,
            "what": self.what,
            "target": self.target,
            "purpose": self.purpose,
            "outcome": self.outcome,
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class LoggedAccess:
    """A row of the log."""

    seq: int
    at: datetime
    who: str
    via: str
    token_id: str | None
    customer_id: UUID | None
    kind: str
    what: str
    target: str | None
    purpose: str | None
    outcome: int
    request_id: str
    prev_hash: str
    hash: str


def printable(text: str | None, limit: int = PURPOSE_MAX) -> str | None:
    """Text from a request as it is kept (a purpose, a path segment): control characters
    dropped, at most ``limit`` characters."""
    if text is None:
        return None
    kept = "".join(c for c in text if c.isprintable()).strip()[:limit]
    return kept or None


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


class _Database(Protocol):
    placeholder: str
    seq_type: str
    insert: str
    lock: tuple[str, ...]

    def connect(self) -> Any: ...
    def taken(self, error: Exception) -> bool: ...


@dataclass(frozen=True)
class _SQLite:
    path: Path
    placeholder: str = "?"
    seq_type: str = "INTEGER"  # the rowid itself
    insert: str = _INSERT_SQLITE
    lock: tuple[str, ...] = ("BEGIN IMMEDIATE",)

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10
        )
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit returns once the WAL is synced, so an answered read survives a
        # power cut too (about 0.5 ms a commit here; one commit serves a whole batch).
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def taken(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError)


@dataclass(frozen=True)
class _Postgres:
    env: Mapping[str, str]
    placeholder: str = "%s"
    seq_type: str = "BIGINT"
    insert: str = _INSERT_POSTGRES
    # Other writers wait; readers do not.
    lock: tuple[str, ...] = ("BEGIN", "LOCK TABLE access_log IN EXCLUSIVE MODE")

    def connect(self) -> Any:
        import psycopg

        e = self.env
        connection = psycopg.connect(
            host=e.get("POSTGRES_HOST", "127.0.0.1"),
            port=int(e.get("POSTGRES_PORT", "5432")),
            dbname=e.get("POSTGRES_DBNAME", "switchboard"),
            user=e.get("POSTGRES_USER", "postgres"),
            password=e.get("POSTGRES_PASSWORD", ""),
            connect_timeout=10,
            autocommit=True,  # a batch is one statement
        )
        seconds = int(float(e.get("POSTGRES_LOCK_TIMEOUT", "10") or 0))
        connection.execute(f"SET lock_timeout = '{seconds}s'")
        return connection

    def taken(self, error: Exception) -> bool:
        import psycopg

        return isinstance(error, psycopg.errors.UniqueViolation)


def open_access_log(settings: Settings) -> AccessLog:
    """The hub's access log: ``data_dir/access.db`` on SQLite, a table beside the history's
    on PostgreSQL."""
    if settings.is_postgres:
        return AccessLog.postgres(settings.event_store_env())
    return AccessLog.sqlite(settings.sqlite_path("access"))


class AccessLog:
    """The access log in one store.  ``append`` is safe from any thread (one at a time)."""

    def __init__(self, database: _Database) -> None:
        self._db = database
        self._writing = threading.Lock()
        self._writer: Any = None
        self._head: tuple[int, str] | None = None  # (seq, hash) of the newest row, as last seen
        self._create()

    @classmethod
    def sqlite(cls, path: Path) -> AccessLog:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(_SQLite(path))

    @classmethod
    def postgres(cls, env: Mapping[str, str]) -> AccessLog:
        """``env``: the eventsourcing library's PostgreSQL settings (``POSTGRES_HOST``, …)."""
        return cls(_Postgres(dict(env)))

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._db.placeholder)

    def _create(self) -> None:
        for attempt in range(5):
            try:
                connection = self._db.connect()
                try:
                    for statement in (_TABLE.format(seq_type=self._db.seq_type), *_INDEXES):
                        connection.execute(statement)
                finally:
                    connection.close()
                return
            except Exception as e:  # PostgreSQL: two processes creating it at once
                if attempt == 4 or not _racing_create(e):
                    raise
                time.sleep(0.2 * (attempt + 1))

    # -- writing -------------------------------------------------------------------------

    def append(self, entries: Sequence[AccessEntry]) -> int:
        """Append ``entries`` in one transaction, chained to the log's head; returns the
        ``seq`` of the last.  Raises ``AccessLogUnavailable`` if they were not committed."""
        if not entries:
            return 0
        with self._writing:
            try:
                return self._append(entries)
            except Exception as e:
                self._drop_writer()  # a new connection for the next batch
                raise AccessLogUnavailable(f"the access log could not be written: {e}") from e

    def _append(self, entries: Sequence[AccessEntry]) -> int:
        if self._writer is None:
            self._writer, self._head = self._db.connect(), None
        writer = self._writer
        # First without a lock, on the head as last seen; if another writer has appended
        # since, again holding the log's write lock (so this one cannot lose twice).
        for locked in (False, True):
            try:
                for statement in self._db.lock if locked else ():
                    writer.execute(statement)
                if self._head is None or locked:
                    newest = writer.execute(_HEAD).fetchone()
                    self._head = (int(newest[0]), str(newest[1])) if newest else (0, GENESIS)
                seq, prev = self._head
                rows = []
                for entry in entries:
                    seq += 1
                    row = entry.content(seq)
                    digest = chain_hash(prev, row)
                    row["prev_hash"], row["hash"] = prev, digest
                    rows.append(row)
                    prev = digest
                writer.execute(self._db.insert, (orjson.dumps(rows).decode(),))
                if locked:
                    writer.execute("COMMIT")
            except Exception as e:
                self._head = None
                if locked:
                    with suppress(Exception):
                        writer.execute("ROLLBACK")
                elif self._db.taken(e):
                    continue
                raise
            self._head = (seq, prev)
            return seq
        raise AssertionError("unreachable")

    def _drop_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._writer = None

    def close(self) -> None:
        with self._writing:
            self._drop_writer()

    # -- reading -------------------------------------------------------------------------

    def entries(
        self,
        *,
        customer_id: UUID | None = None,
        who: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[LoggedAccess]:
        """Rows for a customer and/or a user, at or after ``since``, newest first."""
        where, args = [], []
        if customer_id is not None:
            where.append("customer_id = ?")
            args.append(str(customer_id))
        if who is not None:
            where.append("who = ?")
            args.append(who)
        if since is not None:
            stamp = since if since.tzinfo else since.replace(tzinfo=UTC)
            where.append("at >= ?")
            args.append(stamp.astimezone(UTC).isoformat(timespec="microseconds"))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        statement = f"{_SELECT} {clause}ORDER BY seq DESC LIMIT ?"
        return [_logged(row) for row in self._query(statement, (*args, limit))]

    def rows(self) -> Iterator[tuple]:
        """Every row as stored (``COLUMNS``), in ``seq`` order, read in pages."""
        after = 0
        statement = f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?"
        while page := self._query(statement, (after, _PAGE)):
            yield from page
            after = int(page[-1][0])

    def _query(self, statement: str, args: Sequence[Any]) -> list[tuple]:
        connection = self._db.connect()
        try:
            return list(connection.execute(self._sql(statement), tuple(args)).fetchall())
        finally:
            connection.close()


def _logged(row: Sequence[Any]) -> LoggedAccess:
    values = dict(zip(COLUMNS, row, strict=True))
    values["at"] = datetime.fromisoformat(values["at"])
    if values["customer_id"] is not None:
        values["customer_id"] = UUID(values["customer_id"])
    values["seq"], values["outcome"] = int(values["seq"]), int(values["outcome"])
    return LoggedAccess(**values)


def _racing_create(error: Exception) -> bool:
    text = str(error)
    return "concurrently updated" in text or "duplicate key" in text or "already exists" in text


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessChainReport:
    """What ``verify_access_log`` found: how many rows chain correctly from the first
    (``verified``), the hash of the last of them, and the first break if there is one
    (``broken_at``: the seq where the chain stops holding)."""

    verified: int
    head_hash: str
    broken_at: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_access_log(log: AccessLog) -> AccessChainReport:
    """Walk the chain from the first row; stop at the first row that breaks it."""
    expected, prev = 1, GENESIS
    for row in log.rows():
        # The stored text is hashed as it is, not as it reads back (no re-formatting).
        content = dict(zip(CONTENT, row, strict=False))
        seq, prev_hash, digest = int(content["seq"]), row[-2], row[-1]
        broken = None
        if seq != expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}-{seq - 1}"
            broken = (expected, f"entry {missing} is missing: deleted, or the rows renumbered")
        elif prev_hash != prev:
            broken = (
                seq,
                f"entry {seq} does not follow entry {seq - 1}: an entry before it was changed, "
                "removed, inserted or reordered",
            )
        elif chain_hash(prev_hash, content) != digest:
            broken = (seq, f"entry {seq} was modified: its content does not match its hash")
        if broken is not None:
            return AccessChainReport(expected - 1, prev, *broken)
        prev, expected = digest, expected + 1
    return AccessChainReport(expected - 1, prev)
