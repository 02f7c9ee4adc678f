"""How far each mailbox has been read: (UIDVALIDITY, last UID), kept durably.

The ingester advances a mailbox's checkpoint only after Kafka confirmed everything up to that
UID, and in the same transaction records which mails it has seen (by Message-ID, else by content
hash). A restart resumes after the checkpoint; a changed UIDVALIDITY (the server renumbered the
mailbox) makes every UID meaningless, so the mailbox is read again from the start and the seen
keys keep mails already published from being published twice.

It also remembers, for all mailboxes together, which mail holds each Message-ID: the content
digest of the first mail seen with it. A later mail with that Message-ID and the same digest is
the same mail (its provider_ref is the Message-ID, the recorder keeps one); a different digest is
a different mail reusing the Message-ID, recorded under a variant ref (see ``refs``).

``CheckpointStore`` is the interface; ``SQLiteCheckpointStore`` keeps it in one SQLite file under
the hub's data dir.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

__all__ = ["Checkpoint", "CheckpointStore", "SQLiteCheckpointStore"]

_SQLITE_MAX_PARAMS = 900  # below SQLite's default limit of 999 host parameters


CHECKPOINTS_FILE = "email-checkpoints.db"  # under the hub's data dir


@dataclass(frozen=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int


class CheckpointStore(Protocol):
    def load(self, mailbox: str) -> Checkpoint | None: ...

    def seen_among(self, mailbox: str, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` recorded as seen for ``mailbox``."""
        ...

    def advance(self, mailbox: str, checkpoint: Checkpoint, seen: Iterable[str]) -> None:
        """Atomically store the checkpoint and the newly seen keys.

        Never moves a mailbox backwards within one UIDVALIDITY.
        """
        ...

    def claim_message_ids(self, claims: Sequence[tuple[str, str]]) -> dict[str, str]:
        """For each (Message-ID, content digest), in order, the digest that holds the Message-ID.

        The first claim of a Message-ID wins, durably and across mailboxes; later claims only
        learn the holder. Claiming again what one holds is harmless (a replayed batch).
        """
        ...

    def close(self) -> None: ...


class SQLiteCheckpointStore:
    """Checkpoints in a SQLite file; one connection shared by the mailbox threads, serialised."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a checkpoint that returned is on disk, so a power cut cannot roll it back past
        # mails whose events were already confirmed (they would be read again, harmlessly, but
        # the guarantee is cheaper to state this way).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS imap_checkpoints (
                mailbox TEXT PRIMARY KEY,
                uidvalidity INTEGER NOT NULL,
                last_uid INTEGER NOT NULL,
                updated_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS imap_seen (
                mailbox TEXT NOT NULL,
                key TEXT NOT NULL,
                PRIMARY KEY (mailbox, key)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS message_id_holders (
                message_id TEXT PRIMARY KEY,
                digest TEXT NOT NULL
            ) WITHOUT ROWID;
            """
        )

    def load(self, mailbox: str) -> Checkpoint | None:
        with self._lock:
            row = self._db.execute(
                "SELECT uidvalidity, last_uid FROM imap_checkpoints WHERE mailbox = ?", (mailbox,)
            ).fetchone()
        return Checkpoint(row[0], row[1]) if row else None

    def seen_among(self, mailbox: str, keys: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), _SQLITE_MAX_PARAMS):
                chunk = wanted[start : start + _SQLITE_MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key FROM imap_seen WHERE mailbox = ? AND key IN ({marks})",
                    (mailbox, *chunk),
                )
                found.update(row[0] for row in rows)
        return found

    def advance(self, mailbox: str, checkpoint: Checkpoint, seen: Iterable[str]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO imap_seen (mailbox, key) VALUES (?, ?)",
                    ((mailbox, key) for key in seen),
                )
                self._db.execute(
                    """
                    INSERT INTO imap_checkpoints (mailbox, uidvalidity, last_uid, updated_at)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (mailbox) DO UPDATE SET
                        last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                                        THEN max(last_uid, excluded.last_uid)
                                        ELSE excluded.last_uid END,
                        uidvalidity = excluded.uidvalidity,
                        updated_at = excluded.updated_at
                    """,
                    (mailbox, checkpoint.uidvalidity, checkpoint.last_uid, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def claim_message_ids(self, claims: Sequence[tuple[str, str]]) -> dict[str, str]:
        ids = list(dict.fromkeys(message_id for message_id, _ in claims))
        holders: dict[str, str] = {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO message_id_holders (message_id, digest) VALUES (?, ?)",
                    claims,
                )
                for start in range(0, len(ids), _SQLITE_MAX_PARAMS):
                    chunk = ids[start : start + _SQLITE_MAX_PARAMS]
                    marks = ",".join("?" * len(chunk))
                    holders.update(
                        self._db.execute(
                            "SELECT message_id, digest FROM message_id_holders "
                            f"WHERE message_id IN ({marks})",
                            chunk,
                        ).fetchall()
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return holders

    @classmethod
    def last_uid(cls, path: Path, mailbox: str) -> int:
        """How far ``mailbox`` is checkpointed (0 before the first batch): for watchers."""
        store = cls(path)
        try:
            found = store.load(mailbox)
        finally:
            store.close()
        return found.last_uid if found else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
