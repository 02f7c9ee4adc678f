"""Erasure by crypto-shredding (GDPR Art. 17), on SQLite and PostgreSQL.

A person with two merged customers (a phone and an e-mail address), contacts with bodies and
subjects, a name, a desk note and an attached file (its name too); a second person beside
them, who may have attached the same bytes under a name of their own.  A store
backup and a key backup are taken before the erasure.  After ``erase_person``: nothing of
the person's remains readable anywhere the hub wrote — every file on SQLite (history, keys,
views, blobs, logs of the write-ahead), the whole database on PostgreSQL — nor in the backup
taken before; the events remain as skeletons and the hash chain still verifies; the other
person is untouched; a rebuild from zero does not bring them back; a contact from their
number afterwards is a new, separate customer.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts import Channel, MessageReceived
from contracts.errors import NotFound
from projections.follower import TimelineFollower
from services.audit.erasure import erase_person
from services.audit.verify import verify_chain
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.cli import app
from services.bootstrap.settings import Settings
from services.bootstrap.store_cli import backup, backup_keys, pg_tool, rebuild_projections, restore
from services.domain import Customer, customer_id_for
from services.history.customers import AlreadyErased, CustomerNotFound
from services.history.keys import keyring_path
from services.history.sealing import CustomerErased, ErasedEvent, MissingKey
from tests.campaign_plans import planned_send

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
PHONE, EMAIL = "+493055501234", "petra.quell@example.org"
BOB = "+493055509999"
FILE_NAME = "Vertrag-Quellenberg-6620.pdf"
# What must not survive the erasure, in any file (the number also as the view keeps it).
SECRETS = [
    "3055501234",
    "petra.quell",
    "Zwiebelkuchen-7741",  # an SMS body
    "Kalibrierung-3390",  # an e-mail subject
    "Petra Quellenberg",  # the name on her profile
    "Notiz-Fuchsbau-1188",  # an agent's note
    "Anhang-Kranich-5512",  # a file she sent (its bytes)
    FILE_NAME,  # the name it was attached under
]
BOB_BODY = "Bob-Pfefferminz-2207"
PETRAS_FILE = b"%PDF-1.4\nAnhang-Kranich-5512\n%%EOF\n"


def sms(ref: str, party: str, body: str, minutes: int) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms,
        party=party,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=body,
    )


def follow(hub) -> None:
    for follower in (
        TimelineFollower(hub.history(), hub.timeline_view()),
        hub.reachability_follower(),
    ):
        while follower.run_once():
            pass


def files_with(root: Path, needles: list[str], *, skip: str = "backup") -> dict[str, list[str]]:
    """Which files under ``root`` hold which of ``needles`` (bytes, anywhere in the file);
    directories named ``skip…`` are left out."""
    found: dict[str, list[str]] = {}
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(skip)]
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            hits = [n for n in needles if n.encode() in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def pg_text(url: str) -> str:
    """The whole PostgreSQL database as SQL text (every table's rows)."""
    env = dict(os.environ)
    return subprocess.run(
        [pg_tool("pg_dump"), "--data-only", url],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout


def pg_backup_text(dump: Path) -> str:
    return subprocess.run(
        [pg_tool("pg_restore"), "--data-only", "--file=-", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(store=store_url, data_dir=tmp_path / "var")


def scripted_person(settings: Settings) -> tuple[object, object]:
    hub = bootstrap(settings)
    history = hub.history()
    history.record_interactions(
        [
            sms("SM-p1", PHONE, "Zwiebelkuchen-7741 bitte", 0),
            MessageReceived(
                channel=Channel.email,
                party=EMAIL,
                provider_ref="<p-1@example.org>",
                occurred_at=T0 + timedelta(minutes=1),
                subject="Kalibrierung-3390",
                body="see subject",
            ),
            sms("SM-b1", BOB, BOB_BODY, 2),
        ]
    )
    phone_id, email_id = customer_id_for(PHONE), customer_id_for(EMAIL)
    history.merge(phone_id, email_id, by="agent_7", reason="same person, says so")
    history.edit_profile(phone_id, {"name": "Petra Quellenberg"}, by="agent_7", expected_version=0)
    desk = hub.desk()
    desk.add_note("Notiz-Fuchsbau-1188", by="agent_7", customer_id=phone_id)
    desk.attach_file(
        PETRAS_FILE,
        filename=FILE_NAME,
        content_type="application/pdf",
        by="agent_7",
        customer_id=phone_id,
    )
    follow(hub)
    return hub, history


def test_an_erased_person_is_unreadable_everywhere_and_the_audit_trail_stays(
    settings: Settings, tmp_path: Path
) -> None:
    hub, _ = scripted_person(settings)
    phone_id, email_id = customer_id_for(PHONE), customer_id_for(EMAIL)
    view = hub.timeline_view()
    assert view.card(phone_id).name == "Petra Quellenberg"
    # Before: the views show her (the grep can find what it looks for).
    if not settings.is_postgres:
        assert files_with(tmp_path, SECRETS)
    else:
        assert "Zwiebelkuchen-7741" in pg_text(settings.store)
    store_backup = tmp_path / "backup-before"
    backup(settings, store_backup)

    done = erase_person(
        hub, email_id, by="admin_1", basis="consent-withdrawn", reason="asked by letter"
    )

    # The merge group: naming the absorbed customer erases the person (both customers).
    assert done.erasure.group == [phone_id, email_id]
    assert len(done.files_removed) == 1 and not done.files_kept
    # Nothing readable anywhere.
    if not settings.is_postgres:
        leftovers = files_with(tmp_path, SECRETS)  # the store, keys, views, blobs, logs
        assert not leftovers, leftovers
        assert not files_with(store_backup, SECRETS, skip="-")
    else:
        text = pg_text(settings.store)
        assert not [s for s in SECRETS if s in text]
        assert not [s for s in SECRETS if s in pg_backup_text(store_backup / "database.dump")]
        assert not files_with(tmp_path, SECRETS)
    # The views: she is gone; Bob is not.
    assert view.card(phone_id) is None and view.card(email_id) is None
    assert view.lookup(PHONE).card is None
    assert view.timeline(phone_id) == []
    bob = view.lookup(BOB).card
    assert bob is not None and BOB_BODY in str([e.payload for e in view.timeline(bob.customer_id)])
    # The history: skeletons, the erasure readable, the chain intact.
    fresh = bootstrap(settings).history(cached=False)
    with pytest.raises(CustomerErased):
        fresh.get_customer(phone_id)
    events = list(fresh.events.get(phone_id))
    assert all(isinstance(e, ErasedEvent) for e in events[:-1])
    erased = events[-1]
    assert isinstance(erased, Customer.Erased)
    assert (erased.by, erased.basis, erased.group) == (
        "admin_1",
        "consent-withdrawn",
        [phone_id, email_id],
    )
    skeleton = events[1]
    assert skeleton.channel == "sms" and skeleton.interaction_type == "message.received.v1"
    assert not hasattr(skeleton, "party") and not hasattr(skeleton, "payload")
    assert verify_chain(fresh.recorder.chain).intact
    # A rebuild from zero does not bring her back.
    rebuild_projections(bootstrap(settings))
    view = bootstrap(settings).timeline_view()
    assert view.card(phone_id) is None and view.lookup(BOB).card is not None
    # Her number again: a new customer, with nothing of the old one.
    fresh.record_interactions([sms("SM-p2", PHONE, "neu hier", 10)])
    follow(bootstrap(settings))
    again = view.lookup(PHONE).card
    assert again is not None and again.customer_id not in (phone_id, email_id)
    assert again.contact_count == 1 and again.name is None
    # Erasing her again, or someone who never was: clear errors.
    with pytest.raises(AlreadyErased):
        fresh.erase(phone_id, by="admin_1", basis="consent-withdrawn", reason="again")
    with pytest.raises(CustomerNotFound):
        fresh.erase(customer_id_for("+493000000000"), by="a", basis="objection", reason="x")


def test_a_store_backup_from_before_restores_without_her_when_the_keys_are_from_after(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    hub, _ = scripted_person(settings)
    store_backup = tmp_path / "backup-before"
    backup(settings, store_backup)
    erase_person(hub, customer_id_for(PHONE), by="admin_1", basis="objection", reason="objected")
    keys_after = tmp_path / "keys-after.db"
    backup_keys(settings, keys_after)
    # A new, empty store (a disaster: both the database and the keyring are gone).
    if settings.is_postgres:
        target_url = request.getfixturevalue("postgres_cluster").create_database()
    else:
        target_url = f"sqlite:///{tmp_path / 'restored' / 'history.db'}"
    target = Settings(store=target_url, data_dir=tmp_path / "restored")
    with pytest.raises(Exception, match="--keys FILE"):
        restore(target, store_backup)
    restore(target, store_backup, keys=keys_after)
    restored = bootstrap(target)
    rebuild_projections(restored)
    view = restored.timeline_view()
    assert view.card(customer_id_for(PHONE)) is None
    bob = view.lookup(BOB).card
    assert bob is not None and BOB_BODY in str([e.payload for e in view.timeline(bob.customer_id)])
    with pytest.raises(CustomerErased):
        restored.history(cached=False).get_customer(customer_id_for(PHONE))


def test_a_file_two_people_attached_keeps_the_others_name_and_loses_hers(
    settings: Settings, tmp_path: Path
) -> None:
    from services.audit.export import subject_access

    hub, _ = scripted_person(settings)
    bob = customer_id_for(BOB)
    desk = hub.desk()
    # The same bytes, attached to Bob under a name of his own: one blob, one StoredFile.
    bobs = desk.attach_file(
        PETRAS_FILE,
        filename="Bobs-Mietvertrag-3301.pdf",
        content_type="application/pdf",
        by="agent_7",
        customer_id=bob,
    )
    follow(hub)
    phone_id = customer_id_for(PHONE)
    assert desk.attached_file(phone_id, bobs.sha256).filename == FILE_NAME
    assert desk.attached_file(bob, bobs.sha256).filename == "Bobs-Mietvertrag-3301.pdf"

    done = erase_person(hub, phone_id, by="admin_1", basis="objection", reason="objected")

    assert done.files_kept == [bobs.sha256] and not done.files_removed
    # Her file's name is nowhere (its bytes stay, sealed under the file's own key: Bob's).
    if not settings.is_postgres:
        leftovers = files_with(tmp_path, [FILE_NAME, "Quellenberg"])
        assert not leftovers, leftovers
    else:
        text = pg_text(settings.store)
        assert FILE_NAME not in text and "Quellenberg" not in text
        assert not files_with(tmp_path, [FILE_NAME])
    # Bob's download, timeline and export name it as he attached it.
    desk = bootstrap(settings).desk()
    mine = desk.attached_file(bob, bobs.sha256)
    assert mine.filename == "Bobs-Mietvertrag-3301.pdf" and mine.content_type == "application/pdf"
    assert desk.blobs.get(mine.sha256) == PETRAS_FILE
    with pytest.raises(NotFound):  # hers is gone with her
        desk.attached_file(phone_id, bobs.sha256)
    view = hub.timeline_view()
    (entry,) = [e for e in view.timeline(bob) if e.type == "file.attached"]
    assert entry.payload["filename"] == "Bobs-Mietvertrag-3301.pdf"
    export = str(subject_access(desk.history, view, bob))
    assert "Bobs-Mietvertrag-3301.pdf" in export and FILE_NAME not in export


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_erase_command_needs_an_admin_a_basis_and_a_reason(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, _ = scripted_person(settings)
    users = hub.user_directory()
    users.register("ada", roles=["admin"])
    users.register("eve", roles=["agent"])
    monkeypatch.setenv("SWITCHBOARD_STORE", settings.store)
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()

    def erase(*args: str):
        return runner.invoke(app, ["customer", "erase", *args], catch_exceptions=False)

    base = [PHONE, "--basis", "consent-withdrawn", "--reason", "asked", "--yes"]
    for args, says in [
        (base, "needs --as USER"),
        ([*base, "--as", "eve"], "not an admin"),
        ([PHONE, "--basis", "whim", "--reason", "r", "--as", "ada", "--yes"], "unknown basis"),
        (["+493000000000", "--basis", "objection", "--reason", "r", "--as", "ada", "--yes"], "no "),
    ]:
        result = erase(*args)
        assert result.exit_code == 1, result.output
        assert says in result.output and "Traceback" not in result.output
    result = erase(*base, "--as", "ada")
    assert result.exit_code == 0, result.output
    assert "erased customer" in result.output and "1 merged into it" in result.output
    result = erase(str(customer_id_for(PHONE)), *base[1:], "--as", "ada")
    assert result.exit_code == 1 and "erased already" in result.output


def test_a_log_reader_gets_by_the_ids_bytes_the_keys_it_gets_by_id_and_none_of_the_erased(
    settings: Settings,
) -> None:
    """``keys_by_bytes`` (what the followers and a rebuild ask, by a sealed event's header)
    answers as ``keys_for`` does, and leaves out an erased customer and one it never saw."""
    hub, _ = scripted_person(settings)
    keyring = hub.history(cached=False).keyring
    people = [customer_id_for(PHONE), customer_id_for(EMAIL), customer_id_for(BOB)]
    by_id = keyring.keys_for(people, create=False)
    assert len(by_id) == 3
    stranger = customer_id_for("+493055500000")
    assert keyring.keys_by_bytes([p.bytes for p in [*people, stranger]]) == {
        p.bytes: key for p, key in by_id.items()
    }
    erase_person(hub, people[0], by="dpo", basis="art17", reason="asked in writing")
    left = keyring.keys_by_bytes([p.bytes for p in people])
    assert left == {people[2].bytes: by_id[people[2]]}  # both of hers are gone, Bob's stays
    assert keyring.keys_by_bytes([]) == {}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_keyring_without_the_keys_is_an_error_never_an_erasure(settings: Settings) -> None:
    scripted_person(settings)
    keys = keyring_path(settings.sqlite_path("history"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{keys}{suffix}").unlink(missing_ok=True)
    hub = bootstrap(settings)
    with pytest.raises(MissingKey, match="store restore --keys"):
        hub.history(cached=False).get_customer(customer_id_for(PHONE))
    # A rebuild stops with the same clear error rather than skipping every event.
    with pytest.raises(MissingKey):
        rebuild_projections(hub)
    assert hub.timeline_view().skipped() == []
    assert hub.history(cached=False).keyring.erasures() == {}  # nobody was taken for erased


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_store_written_before_sealing_reads_as_it_was_and_seals_what_comes_next(
    settings: Settings,
) -> None:
    import sqlite3

    from services.history.customers import CustomerHistory
    from services.history.sealing import SEALED

    # Before this release: events in the library's JSON, identities keyed by the address.
    before = CustomerHistory(env=settings.event_store_env(), seal=False)
    before.record_interactions([sms("SM-old", PHONE, "Zwiebelkuchen-7741 alt", 0)])
    before.close()
    db = sqlite3.connect(settings.sqlite_path("history"))
    db.execute("UPDATE identities SET key = ?", (PHONE,))  # as it was stored then
    db.execute("DELETE FROM identities_hashed")  # a table that store did not have
    db.commit()
    db.close()

    history = bootstrap(settings).history(cached=False)
    customer = history.get_customer(customer_id_for(PHONE))
    assert customer.addresses == [PHONE]
    history.record_interactions([sms("SM-new", PHONE, "neu", 1)])
    assert history.customer_for_address(PHONE) == customer_id_for(PHONE)  # hashed, still found
    states = [n.state for n in history.recorder.select_notifications(start=1, limit=10)]
    assert states[0][:1] == b"{" and states[-1][0] == SEALED
    events = list(history.events.get(customer.id))[1:]  # after the first contact
    assert [(e.interaction_type, e.payload["body"]) for e in events] == [
        ("message.received.v1", "Zwiebelkuchen-7741 alt"),
        ("message.received.v1", "neu"),
    ]
    db = sqlite3.connect(settings.sqlite_path("history"))
    assert db.execute("SELECT count(*) FROM identities WHERE key = ?", (PHONE,)).fetchone() == (0,)
    db.close()
    assert verify_chain(history.recorder.chain).intact


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_ended_campaigns_plan_loses_the_erased_person_and_a_running_one_is_named(
    settings: Settings,
) -> None:
    from services.campaigns.recipients import PlannedSend

    hub, _ = scripted_person(settings)
    service = hub.campaign_service()
    person, bob = customer_id_for(PHONE), customer_id_for(BOB)

    def plan_for(campaign_id) -> list[PlannedSend]:
        sends = []
        for cid, address in ((person, PHONE), (bob, BOB)):
            send = planned_send(campaign_id, 0)
            sends.append(
                dataclasses.replace(
                    send,
                    customer_id=cid,
                    address=address,
                    command=send.command.model_copy(update={"to": address}),
                )
            )
        return sends

    ended = service.store.create("Winter", by="mia")
    ended.cancel(by="mia", reason="done")
    service.store.save(ended)
    running = service.store.create("Spring", by="mia")
    service.store.save(running)  # a draft with a plan stands for one still to send
    for campaign in (ended, running):
        service.plans.save(campaign.id, plan_for(campaign.id))

    done = erase_person(hub, person, by="admin_1", basis="objection", reason="objected")

    assert done.plans_scrubbed == ["Winter"] and done.plans_running == ["Spring"]
    assert [s.customer_id for s in service.plans.load(ended.id)] == [bob]
    assert PHONE.encode() not in service.plans.path(ended.id).read_bytes()
    assert [s.customer_id for s in service.plans.load(running.id)] == [person, bob]


def test_the_erasure_api_is_for_admins_names_what_is_wrong_and_erases_once(
    settings: Settings,
) -> None:
    """``POST /v1/customers/{id}/erasure``: an agent is refused (403, and nothing erased); a
    bad basis or an empty reason is a 422 naming the field; an admin erases the person (both
    merged customers); the lookup no longer finds them; erasing again is a 409, an unknown
    customer a 404."""
    from fastapi.testclient import TestClient

    from channels.publishing import InteractionPublisher

    hub, _ = scripted_person(settings)
    users = hub.user_directory()
    users.register("ada", roles=["admin"])
    users.register("eve", roles=["agent"])
    admin = {"Authorization": f"Bearer {users.issue_token('ada').token}"}
    agent = {"Authorization": f"Bearer {users.issue_token('eve').token}"}
    phone_id, email_id = customer_id_for(PHONE), customer_id_for(EMAIL)
    url = f"/v1/customers/{phone_id}/erasure"
    body = {"basis": "consent-withdrawn", "reason": "asked by letter"}
    api = hub.api(view=hub.timeline_view(), publisher=InteractionPublisher("127.0.0.1:1"))
    with TestClient(api) as client:
        assert client.post(url, json=body, headers=agent).status_code == 403
        assert client.get(f"/v1/customers/{phone_id}", headers=admin).status_code == 200
        for bad, field in (
            ({**body, "basis": "whim"}, "basis"),
            ({**body, "reason": "  "}, "reason"),
            ({"basis": "objection"}, "reason"),
        ):
            answer = client.post(url, json=bad, headers=admin)
            assert answer.status_code == 422, answer.text
            assert field in answer.text
        answer = client.post(url, json=body, headers=admin)
        assert answer.status_code == 200, answer.text
        done = answer.json()
        assert done["erased"] == [str(phone_id), str(email_id)]
        assert done["files_removed"] == 1 and done["files_kept"] == 0
        lookup = client.get("/v1/lookup", params={"address": PHONE}, headers=admin).json()
        assert lookup["known"] is False
        assert client.post(url, json=body, headers=admin).status_code == 409
        unknown = f"/v1/customers/{customer_id_for('+493000000001')}/erasure"
        assert client.post(unknown, json=body, headers=admin).status_code == 404
    with pytest.raises(CustomerErased):
        hub.history(cached=False).get_customer(phone_id)
