"""Attachment content, stored once under its SHA-256.

Events carry only an attachment's metadata and hash (``contracts.AttachmentRef``); the bytes live
here. Content addressing makes a store write-once and idempotent: the same file mailed a hundred
times, or one mail ingested twice after a crash, is stored once. ``BlobStore`` is the interface;
``LocalBlobStore`` keeps files in a folder. An S3-compatible store implements the same three
methods (key = the hash, ``If-None-Match: *`` on put).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from contracts.errors import NotFound

__all__ = [
    "SEALED_BLOB",
    "BlobNotFound",
    "BlobSealer",
    "BlobStore",
    "LocalBlobStore",
    "sha256_hex",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobNotFound(NotFound):
    """No blob is stored under this hash (a ``LookupError``, as ``NotFound`` is)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data`` durably (if not already there) and return its SHA-256, hex."""
        ...

    def get(self, sha256: str) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...


# The first bytes of a sealed blob (then the sealer's own format).
SEALED_BLOB = b"SBB1"


class BlobSealer(Protocol):
    """Encrypts a blob's bytes with a key of its own, kept apart from them (the hub's keyring:
    services/history/keys.py), so a copy of the folder, a backup, says nothing by itself, and
    deleting the key erases the file everywhere."""

    def seal(self, sha256: str, data: bytes) -> bytes: ...

    def open(self, sha256: str, stored: bytes) -> bytes:
        """The bytes; ``BlobNotFound`` when the blob's key is gone (erased)."""
        ...

    def forget(self, sha256: str) -> None:
        """Delete the blob's key."""
        ...


class LocalBlobStore:
    """Blobs as files ``<folder>/<ab>/<cd>/<sha256>``; safe for several writers at once.
    With a ``sealer`` (the hub's), new blobs are stored encrypted; blobs stored in clear
    before are still read."""

    def __init__(self, folder: Path, sealer: BlobSealer | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sealer = sealer

    def path_for(self, sha256: str) -> Path:
        key = sha256.lower()
        if not _HEX64.fullmatch(key):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        # Two levels of 256 folders keep directories small with millions of blobs.
        return self.folder / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.sealer is not None:
            data = self.sealer.seal(digest, data)
        # Write, fsync, then rename: a reader or a crash never sees a partial blob under the
        # final name, and the event that references it is published only after this returns.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            stored = self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob is stored under {sha256}") from None
        if not stored.startswith(SEALED_BLOB):
            return stored
        if self.sealer is None:
            raise BlobNotFound(f"the blob {sha256} is sealed and this store has no keyring")
        return self.sealer.open(sha256.lower(), stored)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def delete(self, sha256: str) -> bool:
        """Remove a blob (an erased person's): its key, its bytes overwritten, the file.
        False if there was none."""
        path = self.path_for(sha256)
        if self.sealer is not None:
            self.sealer.forget(sha256.lower())
        try:
            with open(path, "r+b") as f:
                f.write(b"\0" * path.stat().st_size)
                f.flush()
                os.fsync(f.fileno())
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
