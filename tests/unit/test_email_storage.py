"""The e-mail channel's local state: checkpoints and the attachment blob store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from channels.email.blobs import BlobNotFound, LocalBlobStore, sha256_hex
from channels.email.checkpoints import Checkpoint, SQLiteCheckpointStore
from contracts.errors import NotFound


def test_a_checkpoint_survives_reopening_and_never_moves_back(tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "cp.db")
    assert store.load("support") is None
    store.advance("support", Checkpoint(7, 100), ["<a@x>", "<b@x>"])
    store.advance("support", Checkpoint(7, 50), [])  # a stale writer
    store.close()
    reopened = SQLiteCheckpointStore(tmp_path / "cp.db")
    assert reopened.load("support") == Checkpoint(7, 100)
    assert reopened.seen_among("support", ["<a@x>", "<c@x>"]) == {"<a@x>"}
    assert reopened.seen_among("sales", ["<a@x>"]) == set()  # per mailbox


def test_a_new_uidvalidity_replaces_the_checkpoint_and_keeps_what_was_seen(
    tmp_path: Path,
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "cp.db")
    store.advance("support", Checkpoint(7, 100), ["<a@x>"])
    store.advance("support", Checkpoint(8, 3), ["<d@x>"])
    assert store.load("support") == Checkpoint(8, 3)
    assert store.seen_among("support", ["<a@x>", "<d@x>"]) == {"<a@x>", "<d@x>"}


def test_seen_lookup_handles_more_keys_than_sqlite_parameters(tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "cp.db")
    keys = [f"<{i}@x>" for i in range(2500)]
    store.advance("support", Checkpoint(1, 2500), keys[::2])
    assert store.seen_among("support", keys) == set(keys[::2])


def test_a_failed_advance_changes_nothing(tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "cp.db")
    store.advance("support", Checkpoint(7, 10), ["<a@x>"])

    def keys():
        yield "<b@x>"
        raise RuntimeError("crash half-way")

    with pytest.raises(RuntimeError):
        store.advance("support", Checkpoint(7, 20), keys())
    assert store.load("support") == Checkpoint(7, 10)
    assert store.seen_among("support", ["<b@x>"]) == set()


def test_blobs_are_stored_once_under_their_hash(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    digest = blobs.put(b"invoice")
    assert digest == sha256_hex(b"invoice")
    assert blobs.put(b"invoice") == digest
    assert blobs.get(digest) == b"invoice"
    assert blobs.exists(digest)
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [digest]


def test_concurrent_writers_of_one_blob_leave_one_whole_file(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = b"x" * 1_000_000
    threads = [threading.Thread(target=blobs.put, args=(data,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert blobs.get(sha256_hex(data)) == data
    assert len([p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]) == 1


def test_unknown_or_malformed_blob_keys_are_refused(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(BlobNotFound) as missing:
        blobs.get("0" * 64)
    assert isinstance(missing.value, NotFound)  # the project's one tree: a 404 at the API
    with pytest.raises(ValueError, match="not a SHA-256"):
        blobs.get("../../etc/passwd")


def test_the_first_mail_seen_with_a_message_id_holds_it_across_mailboxes_and_reopening(
    tmp_path: Path,
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "cp.db")
    held = store.claim_message_ids([("<a@x>", "digest-1"), ("<a@x>", "digest-2")])
    assert held == {"<a@x>": "digest-1"}  # the second claim, in the same batch, only learns it
    store.close()
    reopened = SQLiteCheckpointStore(tmp_path / "cp.db")
    assert reopened.claim_message_ids([("<a@x>", "digest-3"), ("<b@x>", "digest-4")]) == {
        "<a@x>": "digest-1",
        "<b@x>": "digest-4",
    }
    assert reopened.claim_message_ids([("<a@x>", "digest-1")]) == {"<a@x>": "digest-1"}
    reopened.close()
