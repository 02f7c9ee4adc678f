"""``switchboard store backup|restore``: a backup taken while a writer appends is a consistent
snapshot; it restores into an empty store, and every projection rebuilt there (desk, timeline,
cards, directory) equals the original's.  On SQLite and PostgreSQL.  And every refusal of the
command is one line, leaving the store as it was."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from contracts import (
    CallRinging,
    Channel,
    ConsentChanged,
    DeliveryStatusChanged,
    Direction,
    MessageReceived,
    MessageSent,
    VoicemailRecorded,
)
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.bootstrap.store_cli import StoreBackupError, pg_tool, store_app
from services.domain import customer_id_for
from services.domain.desk import Status

runner = CliRunner()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHONES = [f"+49301234{i:04d}" for i in range(24)]
MAILS = [f"customer{i}@example.com" for i in range(8)]
FILE = b"order 4711: two chairs, one table\n"


def store(settings: Settings, *args: str) -> Result:
    env = {"SWITCHBOARD_STORE": settings.store, "SWITCHBOARD_DATA_DIR": str(settings.data_dir)}
    return runner.invoke(store_app, list(args), env=env)


def sms(party: str, ref: str, at: datetime) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms, party=party, provider_ref=ref, occurred_at=at, body=f"sms {ref}"
    )


@pytest.fixture
def original(store_url: str, tmp_path: Path) -> Settings:
    return Settings(store=store_url, data_dir=tmp_path / "original")


@pytest.fixture
def empty(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """A fresh store of the same kind: its own data dir and, on PostgreSQL, database."""
    if store_url.startswith("sqlite"):
        return Settings(store="sqlite", data_dir=tmp_path / "restored")
    database = request.getfixturevalue("postgres_cluster").create_database()
    return Settings(store=database, data_dir=tmp_path / "restored")


def a_week_of_contacts() -> list:
    """Chats, calls with voicemail, WhatsApp, mail threads, our replies, a STOP."""
    events: list = []
    for i, phone in enumerate(PHONES):
        at = T0 + timedelta(minutes=7 * i)
        events += [
            sms(phone, f"SM{i}a", at),
            MessageSent(
                channel=Channel.sms, party=phone, provider_ref=f"SM{i}b", occurred_at=at, body="ok"
            ),
            DeliveryStatusChanged(
                channel=Channel.sms,
                direction=Direction.outbound,
                party=phone,
                provider_ref=f"SM{i}b-delivered",
                occurred_at=at + timedelta(seconds=5),
                message_ref=f"SM{i}b",
                status="delivered",
            ),
            sms(phone, f"SM{i}c", at + timedelta(days=2)),  # after the quiet gap: a new chat
        ]
        if i % 3 == 0:
            events += [
                CallRinging(
                    direction=Direction.inbound,
                    party=phone,
                    provider_ref=f"CA{i}",
                    call_id=f"CA{i}",
                    occurred_at=at,
                ),
                VoicemailRecorded(
                    direction=Direction.inbound,
                    party=phone,
                    provider_ref=f"RE{i}",
                    call_id=f"CA{i}",
                    occurred_at=at + timedelta(minutes=1),
                    recording_url=f"https://api.twilio.com/2010-04-01/Recordings/RE{i}",
                    duration_s=12,
                ),
            ]
        if i % 4 == 0:
            events.append(
                MessageReceived(
                    channel=Channel.whatsapp,
                    party=f"whatsapp:{phone}",
                    provider_ref=f"wamid.{i}",
                    occurred_at=at + timedelta(hours=1),
                    body="on WhatsApp now",
                )
            )
    for i, mail in enumerate(MAILS):
        first, reply = f"<m{i}@example.com>", f"<r{i}@example.com>"
        for ref, refs in ((first, []), (reply, [first])):
            events.append(
                MessageReceived(
                    channel=Channel.email,
                    party=mail,
                    provider_ref=ref,
                    occurred_at=T0 + timedelta(hours=i, minutes=len(refs)),
                    body="about my order",
                    subject=f"Order {4700 + i}",
                    thread_ref=first,
                    in_reply_to=refs[-1] if refs else None,
                    references=refs,
                )
            )
    events.append(
        ConsentChanged(
            channel=Channel.sms,
            direction=Direction.inbound,
            party=PHONES[5],
            provider_ref="SM-stop",
            occurred_at=T0 + timedelta(days=3),
            purpose="marketing",
            granted=False,
            source="sms-keyword",
            keyword="STOP",
        )
    )
    return events


def record_history(hub: Hub) -> str:
    """Contacts as the recorder stores them, agents' decisions, the desk, users, a sent
    message; the followers caught up.  The sha256 of the attached file."""
    history = hub.history()
    contacts = a_week_of_contacts()
    for start in range(0, len(contacts), 40):  # batches, as the recorder commits them
        history.record_interactions(contacts[start : start + 40])
    anna, mail_anna = customer_id_for(PHONES[0]), customer_id_for(MAILS[0])
    history.edit_profile(anna, {"name": "Anna Berg", "tier": "gold"}, by="ops", expected_version=0)
    history.merge(anna, mail_anna, by="ops", reason="same person, same order")
    history.merge(customer_id_for(PHONES[1]), customer_id_for(MAILS[1]), by="ops", reason="r")
    history.unmerge(customer_id_for(PHONES[1]), customer_id_for(MAILS[1]), by="ops", reason="no")
    history.link_address(customer_id_for(PHONES[2]), "bert@example.org", by="ops", reason="card")
    history.link_address(
        customer_id_for(PHONES[9]), PHONES[8], by="ops", reason="her husband's", shared=True
    )
    for phone, mail, name in (
        (PHONES[6], MAILS[6], "Carla Diaz"),
        (PHONES[7], MAILS[7], "Dora Ek"),
    ):
        for address in (phone, mail):
            history.edit_profile(
                customer_id_for(address), {"name": name}, by="ops", expected_version=0
            )
    history.dismiss_duplicate(
        customer_id_for(PHONES[7]), customer_id_for(MAILS[7]), by="ops", reason="sisters"
    )

    hub.desk_follower().catch_up()
    desk = hub.desk()
    chat = desk.conversations(anna)[0]
    desk.change_status(
        chat.conversation_id, Status.assigned, by="lea", assignee="lea", expected_version=1
    )
    desk.add_note("called back, all fine", by="lea", conversation_id=chat.conversation_id)
    desk.add_note("prefers mornings", by="lea", customer_id=customer_id_for(PHONES[3]))
    resolved = desk.conversations(customer_id_for(PHONES[4]))[-1]
    desk.change_status(resolved.conversation_id, Status.resolved, by="lea", expected_version=1)
    attached = desk.attach_file(
        FILE, filename="order.txt", content_type="text/plain", by="lea", customer_id=anna
    )

    users = hub.user_directory()
    users.register("lea", roles=["agent"], password="correct horse battery")
    users.issue_token("lea")
    ledger = hub.outbound_ledger()
    ledger.record_sent(ledger.claim("cmd-1", channel="sms", to=PHONES[0]), provider_ref="SM-out")
    hub.timeline_follower().catch_up()
    return attached.sha256


class Writer(threading.Thread):
    """Keeps recording first contacts of new customers, one batch at a time, until stopped."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(daemon=True)
        self.hub = hub
        self.written: list[tuple[str, int, float]] = []  # party, its last event, when
        self.failed: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        history = self.hub.history()
        try:
            n = 0
            while not self.stopped.is_set():
                party = f"+49307770{n:04d}"
                outcome = history.record_interactions([sms(party, f"W{n}", T0)])
                self.written.append((party, max(outcome.notification_ids), time.monotonic()))
                n += 1
        except BaseException as e:
            self.failed = e

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.written) < count and self.failed is None:
            assert time.monotonic() < deadline, "the writer does not write"
            time.sleep(0.005)


def notifications(settings: Settings, upto: int) -> list[tuple]:
    history = bootstrap(settings).history(cached=False)  # held: its pool closes with it
    rows = history.recorder.select_notifications(start=1, limit=upto + 1, stop=upto)
    return [(n.id, str(n.originator_id), n.originator_version, n.topic, n.state) for n in rows]


def test_a_backup_taken_while_writing_restores_into_an_empty_store_with_equal_projections(
    original: Settings, empty: Settings, tmp_path: Path
) -> None:
    sha256 = record_history(bootstrap(original))
    backup = tmp_path / "backup"

    writer = Writer(bootstrap(original))
    writer.start()
    writer.wait_for(5)
    began = time.monotonic()
    taken = store(original, "backup", str(backup))
    ended = time.monotonic()
    writer.wait_for(len(writer.written) + 5)
    writer.stopped.set()
    writer.join(10)
    assert writer.failed is None
    assert taken.exit_code == 0, taken.output
    assert "backed up" in taken.output and "1 file" in taken.output

    # Online: the writer went on committing while the backup ran, and its snapshot is exact:
    # the restored store holds the original's events up to one moment, none after it.
    assert any(began < at < ended for _, _, at in writer.written), "the backup blocked writes"
    manifest = json.loads((backup / "manifest.json").read_text())
    upto = manifest["parts"]["history"]["max_notification_id"]
    assert manifest["store"] == ("postgresql" if original.is_postgres else "sqlite")
    kept = [(party, last) for party, last, _ in writer.written if last <= upto]
    assert kept and len(kept) < len(writer.written)

    nothing = store(empty, "backup", str(tmp_path / "of-nothing"))
    assert nothing.exit_code == 1 and "nothing to back up: there is no store in" in nothing.output
    # The keys are not in it (an erasure after the backup must reach it): they have a backup
    # of their own, and a restore into a store without them says so.
    keys = tmp_path / "keys.db"
    assert store(original, "backup-keys", str(keys)).exit_code == 0
    assert not any(FILE in f.read_bytes() for f in backup.rglob("*") if f.is_file())
    refused = store(empty, "restore", str(backup))
    assert refused.exit_code == 1 and "--keys FILE" in refused.output
    restored = store(empty, "restore", str(backup), "--keys", str(keys))
    assert restored.exit_code == 0, restored.output
    assert "projections rebuilt" in restored.output
    assert notifications(empty, upto) == notifications(original, upto)

    before, after = bootstrap(original), bootstrap(empty)
    view_before, view_after = before.timeline_view(), after.timeline_view()
    assert view_after.skipped() == []
    customers = [customer_id_for(a) for a in PHONES + MAILS]
    for cid in customers:
        assert view_after.timeline(cid, limit=500) == view_before.timeline(cid, limit=500)
        assert view_after.card(cid) == view_before.card(cid)
        assert after.desk().conversations(cid) == before.desk().conversations(cid)
        assert view_after.duplicates(cid) == view_before.duplicates(cid)
    for address in [*PHONES, *MAILS, f"whatsapp:{PHONES[0]}", "bert@example.org"]:
        assert view_after.lookup(address) == view_before.lookup(address)
    assert view_after.search("Anna") == view_before.search("Anna")
    anna = view_after.card(customer_id_for(PHONES[0]))
    assert anna is not None and anna.name == "Anna Berg" and anna.merged
    assert view_after.duplicates(customer_id_for(PHONES[6]))  # so the comparisons mean something
    assert view_after.lookup(PHONES[8]).candidates

    # The writer's customers up to the snapshot are there, placed on the desk by the rebuild.
    for party, _ in kept:
        card = view_after.lookup(party).card
        assert card is not None and card.contact_count == 1
        assert len(after.desk().conversations(card.customer_id)) == 1
    assert view_after.lookup(writer.written[-1][0]).card is None

    users_before, users_after = before.user_directory(), after.user_directory()
    assert [(u.username, u.roles, u.tokens) for u in users_after.users()] == [
        (u.username, u.roles, u.tokens) for u in users_before.users()
    ]
    assert users_after.password_matches("lea", "correct horse battery")
    sent = after.outbound_ledger().find("cmd-1")
    assert sent is not None and sent.state == "sent"  # and so not sent twice
    assert after.blobs().get(sha256) == FILE


def test_a_restore_refuses_a_store_with_events_another_kind_and_a_missing_or_damaged_backup(
    tmp_path: Path,
) -> None:
    settings = Settings(store="sqlite", data_dir=tmp_path / "var")
    history = bootstrap(settings).history()
    history.record_interactions([sms(PHONES[0], "SM1", T0)])
    backup = tmp_path / "backup"
    assert store(settings, "backup", str(backup)).exit_code == 0
    history.record_interactions([sms(PHONES[1], "SM2", T0)])

    empty = Settings(store="sqlite", data_dir=tmp_path / "empty")
    not_a_backup = tmp_path / "photos"
    not_a_backup.mkdir()
    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    with (damaged / "history.db").open("r+b") as db:
        db.seek(5000)
        db.write(b"\xff" * 16)
    postgres = Settings(store="postgresql://sb:s3cret@127.0.0.1:1/sb", data_dir=tmp_path / "pg")

    refusals = [
        (settings, ["restore", str(backup)], "already has events (history "),
        (postgres, ["restore", str(backup)], "is a backup of a SQLite store, but SWITCHBOARD_"),
        (empty, ["restore", str(tmp_path / "nowhere")], "no backup at"),
        (empty, ["restore", str(not_a_backup)], "holds no manifest.json: not a (complete)"),
        (empty, ["restore", str(damaged)], "history.db is missing or damaged"),
        (settings, ["backup", str(backup)], "exists and is not an empty directory"),
        (empty, ["backup", str(tmp_path / "backup2")], "nothing to back up: there is no store"),
    ]
    for target, args, reason in refusals:
        result = store(target, *args)
        assert result.exit_code == 1, (args, result.output)
        assert reason in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "Traceback" not in result.output and "s3cret" not in result.output
    assert not empty.data_dir.exists()  # nothing was written anywhere
    assert store(settings, "restore").exit_code == 2  # no PATH: a usage error

    # --force replaces the events: the customer recorded after the backup is gone.
    forced = store(settings, "restore", str(backup), "--force")
    assert forced.exit_code == 0, forced.output
    view = bootstrap(settings).timeline_view()
    assert view.lookup(PHONES[0]).card is not None and view.lookup(PHONES[1]).card is None


def test_a_missing_pg_tool_is_a_clear_error() -> None:
    with pytest.raises(StoreBackupError, match="pg_nonesuch is not installed: install the"):
        pg_tool("pg_nonesuch")
