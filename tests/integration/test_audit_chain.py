"""Tamper evidence on every store: the hash chain over the stored events, its verifier, and
signed checkpoints of its head.

Each tampering test writes a realistic history through ``CustomerHistory``, then changes the
tables under the hub's feet with raw SQL, as someone with database access would, and expects
``switchboard audit verify`` to name the first changed notification and exit 1.
"""

from __future__ import annotations

import inspect
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import Result
from eventsourcing.postgres import PostgresApplicationRecorder
from typer.testing import CliRunner

from contracts import Channel, MessageReceived
from services.audit.checkpoints import new_key_pair
from services.bootstrap.audit_cli import audit_app
from services.bootstrap.settings import Settings
from services.bootstrap.stores import open_history
from services.domain import customer_id_for
from services.history.chain import GENESIS, ChainFormatError, id_key, link_events
from services.history.customers import CustomerHistory

T0 = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
PARTIES = ["+493012345601", "+493012345602", "+493012345603", "+493012345604", "+493012345605"]
BROKEN = re.compile(r"^broken: notification (\d+) ", re.MULTILINE)


def sms(ref: str, party: str, at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms, party=party, provider_ref=ref, occurred_at=at, body=f"message {ref}"
    )


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(store=store_url, data_dir=tmp_path / "var")


def record_history(settings: Settings, *, batches: int = 4, tag: str = "") -> CustomerHistory:
    """Contacts from five people in a few batches, a merge and a profile edit."""
    history = open_history(settings)
    for b in range(batches):
        history.record_interactions(
            [
                sms(f"SM{tag}{b}-{i}", PARTIES[i % 5], T0 + timedelta(minutes=b * 10 + i))
                for i in range(10)
            ]
        )
    if not tag:
        first, second = customer_id_for(PARTIES[0]), customer_id_for(PARTIES[1])
        history.merge(first, second, by="agent:anna", reason="the same person, two phones")
        history.edit_profile(first, {"name": "Ada Lovelace"}, by="agent:anna", expected_version=0)
    return history


def audit(settings: Settings, *args: str, **keys: str) -> Result:
    env = settings.to_env()
    if "private" in keys:
        env["SWITCHBOARD_AUDIT_SIGNING_KEY"] = keys["private"]
    if "public" in keys:
        env["SWITCHBOARD_AUDIT_PUBLIC_KEY"] = keys["public"]
    return CliRunner().invoke(audit_app, list(args), env=env)


def broken_at(result: Result) -> int:
    assert result.exit_code == 1, result.output
    found = BROKEN.search(result.stdout)
    assert found, result.output
    return int(found.group(1))


class Tables:
    """The history's tables, reached past the hub: what a tamperer with database access has."""

    def __init__(self, settings: Settings) -> None:
        self.postgres = settings.is_postgres
        self.settings = settings
        self.events = "switchboard_events" if self.postgres else "stored_events"
        self.nid = "notification_id" if self.postgres else "rowid"
        self.chain = "switchboard_event_chain" if self.postgres else "event_chain"
        self.start = "switchboard_event_chain_start" if self.postgres else "event_chain_start"

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self.postgres:
            with psycopg.connect(self.settings.store, autocommit=True) as conn:
                yield conn
        else:
            db = sqlite3.connect(self.settings.sqlite_path("history"), isolation_level=None)
            try:
                yield db
            finally:
                db.close()

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        statement = statement.format(
            events=self.events, nid=self.nid, chain=self.chain, start=self.start
        )
        if not self.postgres:
            statement = statement.replace("%s", "?")
        with self._connection() as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def event(self, nid: int) -> tuple[Any, int, str, bytes]:
        ((oid, version, topic, state),) = self.sql(
            "SELECT originator_id, originator_version, topic, state FROM {events} WHERE {nid} = %s",
            (nid,),
        )
        return oid, version, topic, bytes(state)

    def stream(self, customer_id: UUID) -> list[int]:
        """The notification ids of one customer's events, in order."""
        oid = customer_id if self.postgres else customer_id.hex
        return [
            row[0]
            for row in self.sql(
                "SELECT {nid} FROM {events} WHERE originator_id = %s ORDER BY {nid}", (oid,)
            )
        ]

    def last(self) -> int:
        return self.sql("SELECT max({nid}) FROM {events}")[0][0]

    def rewrite_chain(self) -> None:
        """Recompute every chain row from the events as they are now (the chain has no secret:
        anyone who can write the database can do this)."""
        events = [
            (
                nid,
                id_key(oid if self.postgres else UUID(oid)),
                version,
                topic.encode(),
                bytes(state),
            )
            for nid, oid, version, topic, state in self.sql(
                "SELECT {nid}, originator_id, originator_version, topic, state FROM {events} "
                "ORDER BY {nid}"
            )
        ]
        rows = link_events(bytes(32), {}, events)
        self.sql("DELETE FROM {chain}")
        for nid, key, version, stream, head in rows:
            oid = UUID(key.decode()) if self.postgres else key.decode()
            self.sql(
                "INSERT INTO {chain} VALUES (%s, %s, %s, %s, %s)", (nid, oid, version, stream, head)
            )


# -- an untouched history ---------------------------------------------------------------------


def test_an_untouched_history_verifies_intact(settings: Settings) -> None:
    record_history(settings)
    last = Tables(settings).last()
    result = audit(settings, "verify")
    assert result.exit_code == 0, result.output
    assert f"intact: {last} events up to notification {last}, head " in result.stdout


def test_an_empty_store_verifies_with_zero_events(settings: Settings) -> None:
    open_history(settings).close()
    result = audit(settings, "verify")
    assert result.exit_code == 0, result.output
    assert "intact: 0 events" in result.stdout


def test_verify_without_a_store_cannot_check(tmp_path: Path) -> None:
    missing = Settings(store=f"sqlite:///{tmp_path / 'nowhere.db'}", data_dir=tmp_path)
    result = audit(missing, "verify")
    assert result.exit_code == 2
    assert "no store at" in result.stderr


def test_a_stream_whose_versions_skip_still_chains(settings: Settings) -> None:
    from eventsourcing.persistence import StoredEvent

    from services.audit.verify import verify_chain

    history = open_history(settings)
    oid = UUID(int=7)
    for version in (1, 3, 4):  # the library allows gaps; our aggregates make none
        event = StoredEvent(oid, version, "tests:Gap", b'{"v": %d}' % version)
        history.recorder.insert_events([event])
    report = verify_chain(history.recorder.chain)
    assert report.intact and report.events == 3, report.first_break


# -- tampering: each is named by its notification id -----------------------------------------


def test_a_modified_event_is_named(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    target = tables.stream(customer_id_for(PARTIES[2]))[3]
    tables.sql("UPDATE {events} SET state = %s WHERE {nid} = %s", (b"{}", target))
    result = audit(settings, "verify")
    assert broken_at(result) == target
    assert "modified" in result.stdout
    assert str(customer_id_for(PARTIES[2])) in result.stdout


def test_the_first_of_two_changes_is_the_one_named(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    later, earlier = tables.last() - 2, 5
    for nid in (later, earlier):
        _, _, _, state = tables.event(nid)
        tables.sql("UPDATE {events} SET state = %s WHERE {nid} = %s", (state + b" ", nid))
    assert broken_at(audit(settings, "verify")) == earlier


def test_a_deleted_event_is_named(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    target = tables.stream(customer_id_for(PARTIES[3]))[1]
    tables.sql("DELETE FROM {events} WHERE {nid} = %s", (target,))
    result = audit(settings, "verify")
    assert broken_at(result) == target
    assert "deleted" in result.stdout


def test_a_deleted_event_and_its_chain_row_break_the_next_link(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    target = 7
    tables.sql("DELETE FROM {events} WHERE {nid} = %s", (target,))
    tables.sql("DELETE FROM {chain} WHERE notification_id = %s", (target,))
    result = audit(settings, "verify")
    assert broken_at(result) == target + 1
    assert f"does not continue from notification {target - 1}" in result.stdout


def test_an_inserted_event_is_named(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    stream = tables.stream(customer_id_for(PARTIES[4]))
    oid, version, topic, state = tables.event(stream[-1])
    tables.sql(
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s)",
        (oid, version + 1, topic, state),
    )
    forged = tables.last()
    result = audit(settings, "verify")
    assert broken_at(result) == forged
    assert "not in the chain" in result.stdout


def test_a_null_in_an_event_is_a_modification(settings: Settings) -> None:
    record_history(settings)
    Tables(settings).sql("UPDATE {events} SET state = NULL WHERE {nid} = %s", (9,))
    result = audit(settings, "verify")
    assert broken_at(result) == 9
    assert "modified" in result.stdout


@pytest.mark.parametrize(
    "change",
    [
        "state = 'forged, as text'",
        "topic = CAST(x'ff' AS TEXT)",  # not UTF-8
        "originator_version = 'two'",
        "originator_id = x'00'",
    ],
)
def test_sqlite_values_of_another_type_are_found_without_failing(
    change: str, tmp_path: Path
) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'history.db'}", data_dir=tmp_path)
    record_history(settings)
    Tables(settings).sql(f"UPDATE stored_events SET {change} WHERE rowid = 12")
    result = audit(settings, "verify")
    assert broken_at(result) == 12


def test_two_events_of_a_stream_exchanged_are_named(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    first, second = tables.stream(customer_id_for(PARTIES[2]))[2:4]
    a, b = tables.event(first)[3], tables.event(second)[3]
    tables.sql("UPDATE {events} SET state = %s WHERE {nid} = %s", (b, first))
    tables.sql("UPDATE {events} SET state = %s WHERE {nid} = %s", (a, second))
    assert broken_at(audit(settings, "verify")) == first


def test_renumbered_events_are_named(settings: Settings) -> None:
    record_history(settings)
    tables = Tables(settings)
    first, second = tables.stream(customer_id_for(PARTIES[1]))[1:3]
    for old, new in ((first, -1), (second, first), (-1, second)):
        tables.sql("UPDATE {events} SET {nid} = %s WHERE {nid} = %s", (new, old))
    result = audit(settings, "verify")
    assert broken_at(result) == first
    assert "renumbered or moved" in result.stdout


TAMPERINGS = {
    "modified": "UPDATE {events} SET state = %s WHERE {nid} = 23",
    "deleted": "DELETE FROM {events} WHERE {nid} = 23",
    "chain row deleted": "DELETE FROM {chain} WHERE notification_id = 23",
    "chain row renamed": "UPDATE {chain} SET originator_version = 99 WHERE notification_id = 23",
    "stream hash rewritten": "UPDATE {chain} SET stream_hash = %s WHERE notification_id = 23",
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_break_after_intact_pages_is_named_as_with_one_page(
    tampering: str, settings: Settings
) -> None:
    """Pages that hold are checked in one pass, the first that does not row by row: the break
    and the checkpoint heads before it come out the same whatever the page size."""
    from services.audit.verify import verify_chain

    history = record_history(settings)
    intact = verify_chain(history.recorder.chain, heads_at=range(0, 50))
    statement = TAMPERINGS[tampering]
    Tables(settings).sql(statement, (b"{}",) if "%s" in statement else ())
    reports = [
        verify_chain(history.recorder.chain, heads_at=range(0, 50), page=size)
        for size in (1, 2, 5, 22, 10_000)
    ]
    assert {str(r.first_break) for r in reports} == {str(reports[-1].first_break)}
    first_break = reports[-1].first_break
    assert first_break is not None and first_break.notification_id == 23
    for report in reports:
        assert report.events == reports[-1].events
        assert report.heads_at == {n: intact.heads_at[n] for n in range(0, 23)}


def _same(a: Any, b: Any) -> None:
    assert str(a.first_break) == str(b.first_break)
    assert (a.events, a.head, a.last_notification_id) == (b.events, b.head, b.last_notification_id)
    assert a.heads_at == b.heads_at


@pytest.mark.parametrize("tampering", [None, *TAMPERINGS])
def test_ranges_checked_side_by_side_say_what_one_walk_says(
    tampering: str | None, settings: Settings
) -> None:
    """``audit verify`` on a big store checks ranges in worker processes: intact, it reports
    what the one walk reports (events, head, checkpoint heads); broken anywhere, the same
    first break — whichever range the break falls in."""
    from services.audit.verify import verify_chain

    history = record_history(settings)
    if tampering is not None:
        statement = TAMPERINGS[tampering]
        Tables(settings).sql(statement, (b"{}",) if "%s" in statement else ())
    chain = history.recorder.chain
    one = verify_chain(chain, heads_at=range(0, 50), page=4)
    for workers in (2, 3):
        side_by_side = verify_chain(
            chain, heads_at=range(0, 50), page=4, workers=workers, parallel_from=0
        )
        _same(side_by_side, one)
        # Intact: the ranges said so; broken: the one walk named it.
        assert side_by_side.processes == (workers if tampering is None else 1)
    assert one.intact == (tampering is None)


def test_a_stream_taken_up_mid_way_must_join_where_the_ranges_before_left_it() -> None:
    """A range starts a stream from the store's word (the stored hash of its last event
    before the range); the join accepts that only if it is the head the ranges before it
    computed — or, for a stream they never had, the beginning."""
    from services.audit.verify_ranges import RangeResult, join_ranges

    a, b, g1, g2 = b"a" * 32, b"b" * 32, b"1" * 32, b"2" * 32
    first = RangeResult(0, 10, events=10, head=g1, ended={b"k1": a})
    fine = RangeResult(10, 20, events=10, start=g1, head=g2, started={b"k1": a, b"k2": GENESIS})
    assert join_ranges([first, fine])
    # k1 taken up from another head than the one the first range ended with
    assert not join_ranges([first, RangeResult(10, 20, start=g1, head=g2, started={b"k1": b})])
    # k1 begun afresh although the first range had it (e.g. a forged first event)
    assert not join_ranges(
        [first, RangeResult(10, 20, start=g1, head=g2, started={b"k1": GENESIS})]
    )
    # a stream nobody had, taken up from a stored head: nothing computed it
    assert not join_ranges([first, RangeResult(10, 20, start=g1, head=g2, started={b"k9": b})])
    # the global chain taken up from another head
    assert not join_ranges([first, RangeResult(10, 20, start=g2, head=g2)])
    assert not join_ranges([first, RangeResult(10, 20, start=g1, holds=False)])


# -- checkpoints ---------------------------------------------------------------------------------


def test_a_signed_checkpoint_is_checked_and_holds(settings: Settings, tmp_path: Path) -> None:
    private, public = new_key_pair()
    record_history(settings)
    made = audit(settings, "checkpoint", "--out", str(tmp_path / "cp.json"), private=private)
    assert made.exit_code == 0, made.output
    record_history(settings, batches=1, tag="later")  # the hub goes on recording
    result = audit(settings, "verify", "--checkpoint", str(tmp_path / "cp.json"), public=public)
    assert result.exit_code == 0, result.output
    assert "holds: the chain at notification" in result.stdout


def test_a_rewritten_chain_verifies_but_the_checkpoint_refuses_it(
    settings: Settings, tmp_path: Path
) -> None:
    private, public = new_key_pair()
    record_history(settings)
    made = audit(settings, "checkpoint", "--out", str(tmp_path / "cp.json"), private=private)
    assert made.exit_code == 0, made.output
    tables = Tables(settings)
    _, _, _, state = tables.event(4)
    tables.sql("UPDATE {events} SET state = %s WHERE {nid} = %s", (state + b" ", 4))
    tables.rewrite_chain()
    assert audit(settings, "verify").exit_code == 0  # a consistent forgery...
    result = audit(settings, "verify", "--checkpoint", str(tmp_path / "cp.json"), public=public)
    assert result.exit_code == 1, result.output  # ... that the checkpoint exposes
    assert "refused" in result.stdout and "was rewritten" in result.stdout


def test_a_checkpoint_with_an_altered_head_is_refused(settings: Settings, tmp_path: Path) -> None:
    private, public = new_key_pair()
    record_history(settings)
    path = tmp_path / "cp.json"
    assert audit(settings, "checkpoint", "--out", str(path), private=private).exit_code == 0
    text = path.read_text()
    head = re.search(r'"head": "([0-9a-f]{64})"', text)
    assert head
    path.write_text(text.replace(head.group(1), "00" * 32))
    result = audit(settings, "verify", "--checkpoint", str(path), public=public)
    assert result.exit_code == 1
    assert "signature does not match" in result.stdout


def test_a_checkpoint_signed_with_another_key_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    private, _ = new_key_pair()
    _, configured = new_key_pair()
    record_history(settings)
    path = tmp_path / "cp.json"
    assert audit(settings, "checkpoint", "--out", str(path), private=private).exit_code == 0
    result = audit(settings, "verify", "--checkpoint", str(path), public=configured)
    assert result.exit_code == 1
    assert f"not the configured audit key {configured}" in result.stdout


def test_events_removed_after_a_checkpoint_are_found(settings: Settings, tmp_path: Path) -> None:
    private, public = new_key_pair()
    record_history(settings)
    path = tmp_path / "cp.json"
    assert audit(settings, "checkpoint", "--out", str(path), private=private).exit_code == 0
    tables = Tables(settings)
    last = tables.last()
    tables.sql("DELETE FROM {events} WHERE {nid} = %s", (last,))
    tables.sql("DELETE FROM {chain} WHERE notification_id = %s", (last,))
    assert audit(settings, "verify").exit_code == 0  # the tail is gone without a trace ...
    result = audit(settings, "verify", "--checkpoint", str(path), public=public)
    assert result.exit_code == 1  # ... but for the checkpoint
    assert f"the store ends at notification {last - 1}" in result.stdout


def test_signing_needs_the_right_key(settings: Settings, tmp_path: Path) -> None:
    record_history(settings, batches=1)
    path = str(tmp_path / "cp.json")
    unset = audit(settings, "checkpoint", "--out", path)
    assert unset.exit_code == 1 and "SWITCHBOARD_AUDIT_SIGNING_KEY" in unset.stderr
    private, _ = new_key_pair()
    _, other = new_key_pair()
    mismatched = audit(settings, "checkpoint", "--out", path, private=private, public=other)
    assert mismatched.exit_code == 1 and "not the private half" in mismatched.stderr
    garbled = audit(settings, "checkpoint", "--out", path, private="not a key")
    assert garbled.exit_code == 1 and "not an Ed25519 private key" in garbled.stderr
    assert not Path(path).exists()


def test_an_unreadable_checkpoint_cannot_be_checked(settings: Settings, tmp_path: Path) -> None:
    _, public = new_key_pair()
    record_history(settings, batches=1)
    (tmp_path / "cp.json").write_text("{not json")
    result = audit(settings, "verify", "--checkpoint", str(tmp_path / "cp.json"), public=public)
    assert result.exit_code == 2
    assert "cannot be read as a checkpoint" in result.stderr


def test_keygen_prints_a_pair_that_signs_and_verifies(settings: Settings, tmp_path: Path) -> None:
    made = CliRunner().invoke(audit_app, ["keygen", "--private-key-file", str(tmp_path / "k")])
    assert made.exit_code == 0, made.output
    lines = dict(line.split("=", 1) for line in made.stdout.split())
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0
    record_history(settings, batches=1)
    env = {**settings.to_env(), **lines}
    path = str(tmp_path / "cp.json")
    assert CliRunner().invoke(audit_app, ["checkpoint", "--out", path], env=env).exit_code == 0
    checked = CliRunner().invoke(audit_app, ["verify", "--checkpoint", path], env=env)
    assert checked.exit_code == 0, checked.output


def test_a_restored_backup_still_holds_its_checkpoint(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from services.bootstrap.store_cli import backup, backup_keys, restore

    private, public = new_key_pair()
    record_history(settings).close()
    path = str(tmp_path / "cp.json")
    assert audit(settings, "checkpoint", "--out", path, private=private).exit_code == 0
    backup(settings, tmp_path / "backup")
    if settings.is_postgres:
        elsewhere = request.getfixturevalue("postgres_cluster").create_database()
    else:
        elsewhere = f"sqlite:///{tmp_path / 'restored' / 'history.db'}"
    restored = Settings(store=elsewhere, data_dir=tmp_path / "restored")
    backup_keys(settings, tmp_path / "keys.db")
    restore(restored, tmp_path / "backup", keys=tmp_path / "keys.db")
    result = audit(restored, "verify", "--checkpoint", path, public=public)
    assert result.exit_code == 0, result.output
    assert "holds" in result.stdout


# -- a store written before the chain --------------------------------------------------------


def test_a_store_from_before_the_chain_is_chained_once_when_opened(settings: Settings) -> None:
    record_history(settings).close()
    tables = Tables(settings)
    events = tables.last()
    # The store as the release before the chain left it: no chain tables.
    tables.sql("DROP TABLE {chain}")
    tables.sql("DROP TABLE {start}")
    open_history(settings).close()
    began = tables.sql("SELECT backfilled_events, backfilled_through, began_at FROM {start}")
    assert began[0][:2] == (events, events)
    open_history(settings).close()  # idempotent: opened again, nothing changes
    assert tables.sql("SELECT backfilled_events, backfilled_through, began_at FROM {start}") == (
        began
    )
    record_history(settings, batches=1, tag="after").close()
    result = audit(settings, "verify")
    assert result.exit_code == 0, result.output
    assert f"intact: {tables.last()} events" in result.stdout
    assert f"the {events} events up to notification {events} were stored before" in result.stdout


def test_a_chain_of_another_format_is_refused_when_the_store_is_opened(
    settings: Settings,
) -> None:
    record_history(settings, batches=1).close()
    Tables(settings).sql("UPDATE {start} SET format_version = 2")
    with pytest.raises(ChainFormatError, match="format 2"):
        open_history(settings)


# -- several writers at once (PostgreSQL: the recorders of a scaled-out hub) --------------------


@pytest.mark.postgres
def test_concurrent_writers_make_one_chain(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(store=postgres_url, data_dir=tmp_path)
    open_history(settings).close()
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        history = open_history(settings)  # a connection pool of its own: a recorder process
        try:
            for b in range(15):
                history.record_interactions(
                    [sms(f"W{writer}-{b}-{i}", f"+4930123{writer}{i:04d}") for i in range(40)]
                )
        except BaseException as e:
            failures.append(e)
        finally:
            history.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    result = audit(settings, "verify")
    assert result.exit_code == 0, result.output
    tables = Tables(settings)
    # every writer's events are in the one chain: 40 new customers, 15 contacts each
    assert tables.sql("SELECT count(*) FROM {chain}") == [(3 * 40 * (1 + 15),)]


def test_the_library_locks_before_the_chain_reads_its_heads() -> None:
    """PostgreSQL: the chain is appended from ``_fetch_ids_after_insert_events``, which the
    library must call inside the transaction, after ``_insert_stored_events`` took the table
    lock: only then do concurrent writers read one head each, in turn."""
    insert = inspect.getsource(PostgresApplicationRecorder.insert_events)
    transaction = insert.find("conn.transaction()")
    stored = insert.find("self._insert_stored_events(")
    fetched = insert.find("self._fetch_ids_after_insert_events(")
    assert -1 < transaction < stored < fetched, "re-check PostgresEventChain.append's caller"
    locked = inspect.getsource(PostgresApplicationRecorder._insert_stored_events)
    assert locked.find("self._lock_table(curs)") < locked.find("super()._insert_stored_events")
