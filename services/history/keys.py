"""The keyring: one secret key per customer, kept apart from the events (crypto-shredding).

Personal data in a customer's events is encrypted with that customer's key
(``services/history/sealing.py``).  Erasing the person deletes the key: the events stay, their
hash chain still verifies, and what they said can no longer be read by anyone — also not in a
backup of the store taken before, because backups of the store do not hold the keyring.

Where the keys live:

- SQLite: a database file of its own (``history-keys.db`` beside ``history.db``), not a part of
  ``switchboard store backup``; deleted rows are overwritten (``secure_delete``).
- PostgreSQL: tables of their own beside the history (``<prefix>_customer_keys``,
  ``<prefix>_erased_customers``), which ``store backup`` leaves out of its dump.

A key is made the first time a customer's events are written (``keys_for(create=True)``): an
``INSERT`` that does nothing if the key exists, then a read, so two processes racing to record
one new person's first contact use the same key.  A key made for events that were then rolled
back is harmless: it is the key the next attempt uses.

``erased_customers`` remembers who was erased (when, by whom, on what basis): no personal data,
and what stops a new key being made for an erased customer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.sql import SQL, Identifier

from channels.email.blobs import SEALED_BLOB, BlobNotFound

KEY_BYTES = 32  # AES-256-GCM
_CHUNK = 500

__all__ = [
    "Erasure",
    "Keyring",
    "KeyringBlobSealer",
    "PostgresKeyring",
    "SQLiteKeyring",
    "keyring_path",
    "new_key",
    "read_key_file",
    "write_key_file",
]


def keyring_path(history_db: Path) -> Path:
    """Where a SQLite history's keyring lives: a file of its own beside it, named after it."""
    return history_db.with_name(f"{history_db.stem}-keys.db")


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


@dataclass(frozen=True)
class Erasure:
    customer_id: UUID
    erased_at: datetime
    by: str
    basis: str


class Keyring(Protocol):
    def keys_for(self, customer_ids: Iterable[UUID], *, create: bool) -> dict[UUID, bytes]:
        """The keys of these customers; with ``create``, a new key for each that has none
        and was not erased.  Erased customers are left out."""

    def keys_by_bytes(self, raw_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """``keys_for`` without ``create``, the customers named by their ids' 16 bytes (as a
        sealed event's header names them): what reading the log asks, without a UUID made or
        hashed per customer."""

    def erase(self, customer_ids: Sequence[UUID], *, by: str, basis: str) -> None:
        """Delete the keys, and remember the erasure, in one transaction."""

    def erasures(self, customer_ids: Iterable[UUID] | None = None) -> dict[UUID, Erasure]:
        """The erasures of these customers (of all, with None)."""

    def all_keys(self) -> list[tuple[UUID, bytes]]:
        """Every key (for ``switchboard store backup-keys``)."""

    def add_keys(self, rows: Sequence[tuple[UUID, bytes]]) -> int:
        """Keys from a key backup, except those of erased customers; how many were new."""

    def blob_key(self, sha256: str, *, create: bool) -> bytes | None:
        """The key of one stored file (made with ``create``); None if it has none."""

    def forget_blob(self, sha256: str) -> None: ...

    def all_blob_keys(self) -> list[tuple[str, bytes]]: ...

    def add_blob_keys(self, rows: Sequence[tuple[str, bytes]]) -> int: ...


class KeyringBlobSealer:
    """Files in the blob store, each sealed with a key of its own from the keyring
    (AES-256-GCM, the file's SHA-256 as associated data): ``SBB1``, a 12-byte nonce, the
    ciphertext."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def seal(self, sha256: str, data: bytes) -> bytes:
        key = self.keyring.blob_key(sha256, create=True)
        assert key is not None
        nonce = os.urandom(12)
        return SEALED_BLOB + nonce + AESGCM(key).encrypt(nonce, data, sha256.encode())

    def open(self, sha256: str, stored: bytes) -> bytes:
        key = self.keyring.blob_key(sha256, create=False)
        if key is None:
            raise BlobNotFound(f"the file {sha256} was erased")
        start = len(SEALED_BLOB)
        nonce = stored[start : start + 12]
        return AESGCM(key).decrypt(nonce, stored[start + 12 :], sha256.encode())

    def forget(self, sha256: str) -> None:
        self.keyring.forget_blob(sha256)


def write_key_file(
    path: Path,
    keys: Sequence[tuple[UUID, bytes]],
    erased: list[Erasure],
    blob_keys: Sequence[tuple[str, bytes]] = (),
) -> None:
    """A keyring backup: a SQLite file of its own (the same on both stores)."""
    db = sqlite3.connect(path)
    try:
        db.execute("CREATE TABLE blob_keys (sha256 TEXT PRIMARY KEY, key BLOB NOT NULL)")
        db.executemany("INSERT INTO blob_keys VALUES (?, ?)", list(blob_keys))
        db.execute("CREATE TABLE customer_keys (customer_id TEXT PRIMARY KEY, key BLOB NOT NULL)")
        db.execute(
            "CREATE TABLE erased_customers (customer_id TEXT PRIMARY KEY, erased_at TEXT, "
            "by TEXT, basis TEXT)"
        )
        db.executemany("INSERT INTO customer_keys VALUES (?, ?)", [(i.hex, k) for i, k in keys])
        db.executemany(
            "INSERT INTO erased_customers VALUES (?, ?, ?, ?)",
            [(e.customer_id.hex, e.erased_at.isoformat(), e.by, e.basis) for e in erased],
        )
        db.commit()
    finally:
        db.close()


def read_key_file(
    path: Path,
) -> tuple[list[tuple[UUID, bytes]], list[Erasure], list[tuple[str, bytes]]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        keys = [(UUID(r[0]), bytes(r[1])) for r in db.execute("SELECT * FROM customer_keys")]
        blob_keys = [(r[0], bytes(r[1])) for r in db.execute("SELECT * FROM blob_keys")]
        erased = [
            Erasure(UUID(r[0]), datetime.fromisoformat(r[1]), r[2], r[3])
            for r in db.execute("SELECT * FROM erased_customers")
        ]
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path} is not a key backup (store backup-keys): {e}") from None
    finally:
        db.close()
    return keys, erased, blob_keys


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class SQLiteKeyring:
    """The keyring in a SQLite file of its own."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS customer_keys (customer_id TEXT PRIMARY KEY, "
            "key BLOB NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS erased_customers (customer_id TEXT PRIMARY KEY, "
            "erased_at TEXT NOT NULL, by TEXT NOT NULL, basis TEXT NOT NULL) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS blob_keys (sha256 TEXT PRIMARY KEY, key BLOB NOT NULL) "
            "WITHOUT ROWID"
        )

    def blob_key(self, sha256: str, *, create: bool) -> bytes | None:
        with self._lock:
            if create:
                self._db.execute(
                    "INSERT OR IGNORE INTO blob_keys VALUES (?, ?)", (sha256, new_key())
                )
            row = self._db.execute(
                "SELECT key FROM blob_keys WHERE sha256 = ?", (sha256,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def forget_blob(self, sha256: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM blob_keys WHERE sha256 = ?", (sha256,))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def all_blob_keys(self) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT sha256, key FROM blob_keys").fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    def add_blob_keys(self, rows: Sequence[tuple[str, bytes]]) -> int:
        with self._lock:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO blob_keys VALUES (?, ?)", list(rows))
            return self._db.total_changes - before

    def keys_by_bytes(self, raw_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        fromhex = bytes.fromhex
        with self._lock:
            rows = self._stored_keys([raw.hex() for raw in raw_ids])  # the stored text: hex
        found.update((fromhex(r[0]), bytes(r[1])) for r in rows)
        return found

    def _stored_keys(self, hex_ids: Sequence[str]) -> list[Any]:
        """(customer_id, key) rows of these customers, a chunk of ids a query (under the lock)."""
        rows: list[Any] = []
        for chunk in _chunks(hex_ids):
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(
                f"SELECT customer_id, key FROM customer_keys WHERE customer_id IN ({marks})",
                list(chunk),
            ).fetchall()
        return rows

    def keys_for(self, customer_ids: Iterable[UUID], *, create: bool) -> dict[UUID, bytes]:
        ids = list(dict.fromkeys(customer_ids))
        found: dict[UUID, bytes] = {}
        with self._lock:
            rows = self._stored_keys([i.hex for i in ids])
            found.update((UUID(r[0]), bytes(r[1])) for r in rows)
            missing = [i for i in ids if i not in found]
            if not create or not missing:
                return found
            erased = self._erased_ids(missing)
            wanted = [i for i in missing if i not in erased]
            if not wanted:
                return found
            now = datetime.now(UTC).isoformat()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO customer_keys VALUES (?, ?, ?)",
                    [(i.hex, new_key(), now) for i in wanted],
                )
                rows = self._stored_keys([i.hex for i in wanted])
                found.update((UUID(r[0]), bytes(r[1])) for r in rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return found

    def _erased_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        erased: set[UUID] = set()
        for chunk in _chunks([i.hex for i in ids]):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT customer_id FROM erased_customers WHERE customer_id IN ({marks})",
                list(chunk),
            ).fetchall()
            erased.update(UUID(r[0]) for r in rows)
        return erased

    def erase(self, customer_ids: Sequence[UUID], *, by: str, basis: str) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for i in customer_ids:
                    self._db.execute("DELETE FROM customer_keys WHERE customer_id = ?", (i.hex,))
                    self._db.execute(
                        "INSERT OR IGNORE INTO erased_customers VALUES (?, ?, ?, ?)",
                        (i.hex, now, by, basis),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # The deleted keys' pages are zeroed (secure_delete); the log of the change too.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def erasures(self, customer_ids: Iterable[UUID] | None = None) -> dict[UUID, Erasure]:
        with self._lock:
            if customer_ids is None:
                rows = self._db.execute("SELECT * FROM erased_customers").fetchall()
            else:
                rows = []
                for chunk in _chunks([i.hex for i in customer_ids]):
                    marks = ",".join("?" * len(chunk))
                    rows += self._db.execute(
                        f"SELECT * FROM erased_customers WHERE customer_id IN ({marks})",
                        list(chunk),
                    ).fetchall()
        return {
            UUID(r[0]): Erasure(UUID(r[0]), datetime.fromisoformat(r[1]), r[2], r[3]) for r in rows
        }

    def all_keys(self) -> list[tuple[UUID, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT customer_id, key FROM customer_keys").fetchall()
        return [(UUID(r[0]), bytes(r[1])) for r in rows]

    def add_keys(self, rows: Sequence[tuple[UUID, bytes]]) -> int:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO customer_keys SELECT ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM erased_customers WHERE customer_id = ?)",
                [(i.hex, k, now, i.hex) for i, k in rows],
            )
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresKeyring:
    """The keyring in tables of their own beside the history, on the history's pool."""

    def __init__(self, datastore: Any, prefix: str, *, owner: Any = None) -> None:
        self.datastore = datastore
        # The application whose pool this is: the pool closes when it is collected.
        self._owner = owner
        schema = Identifier(datastore.schema)
        self.keys_table = f"{prefix}_customer_keys"
        self.erased_table = f"{prefix}_erased_customers"
        keys = SQL("{0}.{1}").format(schema, Identifier(self.keys_table))
        erased = SQL("{0}.{1}").format(schema, Identifier(self.erased_table))
        self._keys, self._erased = keys, erased
        self._blobs = SQL("{0}.{1}").format(schema, Identifier(f"{prefix}_blob_keys"))
        with datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (customer_id uuid PRIMARY KEY, "
                    "key bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
                ).format(keys)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (customer_id uuid PRIMARY KEY, "
                    "erased_at timestamptz NOT NULL, by text NOT NULL, basis text NOT NULL)"
                ).format(erased)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (sha256 text PRIMARY KEY, key bytea NOT NULL)"
                ).format(self._blobs)
            )

    def blob_key(self, sha256: str, *, create: bool) -> bytes | None:
        with self.datastore.transaction(commit=True) as curs:
            if create:
                curs.execute(
                    SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                        self._blobs
                    ),
                    (sha256, new_key()),
                )
            curs.execute(
                SQL("SELECT key FROM {0} WHERE sha256 = %s").format(self._blobs), (sha256,)
            )
            row = curs.fetchone()
        return bytes(row["key"]) if row else None

    def forget_blob(self, sha256: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {0} WHERE sha256 = %s").format(self._blobs), (sha256,))

    def all_blob_keys(self) -> list[tuple[str, bytes]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT sha256, key FROM {0}").format(self._blobs))
            return [(r["sha256"], bytes(r["key"])) for r in curs.fetchall()]

    def add_blob_keys(self, rows: Sequence[tuple[str, bytes]]) -> int:
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self._blobs),
                list(rows),
            )
        return len(rows)

    def keys_by_bytes(self, raw_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        if not raw_ids:
            return found
        # The ids in and out as their 16 bytes (uuid_send): no UUID object either way.
        select = SQL(
            "SELECT uuid_send(customer_id) AS raw_id, key FROM {0} WHERE customer_id = ANY("
            "ARRAY(SELECT encode(raw, 'hex')::uuid FROM unnest(%b::bytea[]) AS raw))"
        ).format(self._keys)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            for chunk in _chunks(raw_ids):
                curs.execute(select, (list(chunk),), prepare=True)
                found.update((bytes(r["raw_id"]), bytes(r["key"])) for r in curs.fetchall())
        return found

    def keys_for(self, customer_ids: Iterable[UUID], *, create: bool) -> dict[UUID, bytes]:
        ids = list(dict.fromkeys(customer_ids))
        found: dict[UUID, bytes] = {}
        if not ids:
            return found
        # Arrays bound in binary (%b): psycopg's C dumpers, not its Python text ones.
        select = SQL("SELECT customer_id, key FROM {0} WHERE customer_id = ANY(%b::uuid[])").format(
            self._keys
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            for chunk in _chunks(ids):
                curs.execute(select, (list(chunk),), prepare=True)
                found.update((r["customer_id"], bytes(r["key"])) for r in curs.fetchall())
        missing = [i for i in ids if i not in found]
        if not create or not missing:
            return found
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("SELECT customer_id FROM {0} WHERE customer_id = ANY(%b::uuid[])").format(
                    self._erased
                ),
                (missing,),
            )
            erased = {r["customer_id"] for r in curs.fetchall()}
            wanted = [i for i in missing if i not in erased]
            if wanted:
                curs.execute(
                    SQL(
                        "INSERT INTO {0} (customer_id, key) "
                        "SELECT * FROM unnest(%b::uuid[], %b::bytea[]) "
                        "ON CONFLICT (customer_id) DO NOTHING"
                    ).format(self._keys),
                    (wanted, [new_key() for _ in wanted]),
                )
                curs.execute(select, (wanted,))
                found.update((r["customer_id"], bytes(r["key"])) for r in curs.fetchall())
        return found

    def erase(self, customer_ids: Sequence[UUID], *, by: str, basis: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {0} WHERE customer_id = ANY(%s)").format(self._keys),
                (list(customer_ids),),
            )
            curs.executemany(
                SQL(
                    "INSERT INTO {0} VALUES (%s, now(), %s, %s) "
                    "ON CONFLICT (customer_id) DO NOTHING"
                ).format(self._erased),
                [(i, by, basis) for i in customer_ids],
            )

    def erasures(self, customer_ids: Iterable[UUID] | None = None) -> dict[UUID, Erasure]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if customer_ids is None:
                curs.execute(SQL("SELECT * FROM {0}").format(self._erased))
            else:
                curs.execute(
                    SQL("SELECT * FROM {0} WHERE customer_id = ANY(%b::uuid[])").format(
                        self._erased
                    ),
                    (list(customer_ids),),
                )
            rows = curs.fetchall()
        return {
            r["customer_id"]: Erasure(r["customer_id"], r["erased_at"], r["by"], r["basis"])
            for r in rows
        }

    def all_keys(self) -> list[tuple[UUID, bytes]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT customer_id, key FROM {0}").format(self._keys))
            return [(r["customer_id"], bytes(r["key"])) for r in curs.fetchall()]

    def add_keys(self, rows: Sequence[tuple[UUID, bytes]]) -> int:
        added = 0
        with self.datastore.transaction(commit=True) as curs:
            for customer_id, key in rows:
                curs.execute(
                    SQL(
                        "INSERT INTO {0} (customer_id, key) SELECT %s, %s WHERE NOT EXISTS "
                        "(SELECT 1 FROM {1} WHERE customer_id = %s) "
                        "ON CONFLICT (customer_id) DO NOTHING"
                    ).format(self._keys, self._erased),
                    (customer_id, key, customer_id),
                )
                added += curs.rowcount
        return added

    def close(self) -> None:
        pass
