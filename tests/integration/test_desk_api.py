"""The desk over HTTP (``/v1``): conversations and their status, notes and files, with the
refusals a client gets, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.domain import customer_id_for

PHONE = "+4930123456789"
PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\ntrailer\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
MAX_FILE = 4096


@pytest.fixture
def hub(store_url: str, tmp_path: Path) -> Hub:
    return bootstrap(
        Settings(store=store_url, data_dir=tmp_path / "var", desk_max_file_bytes=MAX_FILE)
    )


@pytest.fixture
def headers(hub: Hub) -> dict[str, dict[str, str]]:
    """A bearer header per role, of a user with only that role (named like ``agent-1``)."""
    users = hub.user_directory()
    found = {}
    for role in ("agent", "auditor", "campaign_manager"):
        name = f"{role.replace('_', '-')}-1"
        users.register(name, roles=[role])
        found[role] = {"Authorization": f"Bearer {users.issue_token(name).token}"}
    return found


@pytest.fixture
def client(hub: Hub, headers: dict) -> Iterator[TestClient]:
    api = hub.api(view=hub.timeline_view(), publisher=InteractionPublisher("127.0.0.1:1"))
    with TestClient(api) as client:
        yield client


@pytest.fixture
def customer(hub: Hub) -> UUID:
    """A customer with one SMS, placed in its chat by the desk follower."""
    hub.history().record_interactions(
        [
            MessageReceived(
                channel=Channel.sms,
                party=PHONE,
                provider_ref="SM1",
                occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
                body="where is my order?",
            )
        ]
    )
    hub.desk_follower().catch_up()
    return customer_id_for(PHONE)


def the_conversation(client: TestClient, customer: UUID, agent: dict) -> dict:
    answer = client.get(f"/v1/customers/{customer}/conversations", headers=agent)
    assert answer.status_code == 200, answer.text
    (conversation,) = answer.json()["items"]
    return conversation


def timeline(hub: Hub, customer: UUID) -> list:
    hub.timeline_follower().catch_up()
    return hub.timeline_view().timeline(customer)


def test_an_agent_assigns_sets_pending_and_resolves_a_conversation(
    client: TestClient, customer: UUID, headers: dict, hub: Hub
) -> None:
    agent = headers["agent"]
    conversation = the_conversation(client, customer, agent)
    url = f"/v1/conversations/{conversation['conversation_id']}"
    assert conversation["status"] == "open" and conversation["version"] == 1
    assert client.get(url, headers=agent).headers["ETag"] == '"1"'

    steps = [
        ({"status": "assigned", "assignee": "anna", "expected_version": 1}, "assigned", "anna"),
        (
            {"status": "pending", "reason": "waiting for invoice", "expected_version": 2},
            "pending",
            "anna",
        ),
        ({"status": "resolved", "expected_version": 3}, "resolved", "anna"),
    ]
    for body, status, assignee in steps:
        answer = client.post(f"{url}/status", json=body, headers=agent)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["assignee"]) == (status, assignee)
    assert client.get(url, headers=agent).json()["version"] == 4

    entries = [e for e in timeline(hub, customer) if e.type == "conversation.status_changed"]
    assert [e.payload["to"] for e in entries] == ["resolved", "pending", "assigned"]
    assert {e.party for e in entries} == {"agent-1"}  # who did it
    assert "waiting for invoice" in entries[1].summary


def test_a_stale_version_or_a_change_the_status_does_not_allow_is_refused(
    client: TestClient, customer: UUID, headers: dict
) -> None:
    agent = headers["agent"]
    url = f"/v1/conversations/{the_conversation(client, customer, agent)['conversation_id']}"
    first = client.post(
        f"{url}/status", json={"status": "pending", "expected_version": 1}, headers=agent
    )
    assert first.status_code == 200

    stale = client.post(
        f"{url}/status", json={"status": "resolved", "expected_version": 1}, headers=agent
    )
    assert stale.status_code == 409
    assert stale.headers["content-type"] == "application/problem+json"
    assert "at version 2, not 1" in stale.json()["detail"]

    invalid = client.post(
        f"{url}/status", json={"status": "pending", "expected_version": 2}, headers=agent
    )
    assert invalid.status_code == 409 and "not pending" in invalid.json()["detail"]

    no_assignee = client.post(
        f"{url}/status", json={"status": "assigned", "expected_version": 2}, headers=agent
    )
    assert no_assignee.status_code == 422
    assert [e["field"] for e in no_assignee.json()["errors"]] == ["body.assignee"]

    unknown_status = client.post(
        f"{url}/status", json={"status": "closed", "expected_version": 2}, headers=agent
    )
    assert unknown_status.status_code == 422
    assert unknown_status.json()["errors"][0]["field"] == "body.status"
    assert client.get(url, headers=agent).json()["status"] == "pending"  # nothing half-done


def test_unknown_or_malformed_ids_are_refused(
    client: TestClient, customer: UUID, headers: dict
) -> None:
    agent = headers["agent"]
    unknown = uuid4()
    assert client.get(f"/v1/customers/{unknown}/conversations", headers=agent).status_code == 404
    assert client.get(f"/v1/conversations/{unknown}", headers=agent).status_code == 404
    # A customer's id is no conversation's.
    assert client.get(f"/v1/conversations/{customer}", headers=agent).status_code == 404
    note = client.post(f"/v1/customers/{unknown}/notes", json={"text": "hi"}, headers=agent)
    assert note.status_code == 404 and str(unknown) in note.json()["detail"]
    malformed = client.get("/v1/conversations/not-a-uuid", headers=agent)
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "path.conversation_id"
    assert client.get(f"/v1/files/{'0' * 64}", headers=agent).status_code == 404
    assert client.get("/v1/files/not-a-hash", headers=agent).status_code == 422
    never = client.get(f"/v1/customers/{customer}/files/{'0' * 64}", headers=agent)
    assert never.status_code == 404 and str(customer) in never.json()["detail"]


def test_notes_on_a_customer_and_a_conversation_are_on_the_timeline_with_their_author(
    client: TestClient, customer: UUID, headers: dict, hub: Hub
) -> None:
    agent = headers["agent"]
    conversation = the_conversation(client, customer, agent)["conversation_id"]
    on_customer = client.post(
        f"/v1/customers/{customer}/notes", json={"text": "VIP, be quick"}, headers=agent
    )
    on_conversation = client.post(
        f"/v1/conversations/{conversation}/notes",
        json={"text": "Promised a call back"},
        headers=agent,
    )
    assert on_customer.status_code == on_conversation.status_code == 201
    assert on_conversation.json()["conversation_id"] == conversation
    assert on_customer.json()["by"] == "agent-1"

    notes = [e for e in timeline(hub, customer) if e.type == "note.added"]
    assert [n.summary for n in notes] == [
        "Note by agent-1: Promised a call back",
        "Note by agent-1: VIP, be quick",
    ]
    assert hub.timeline_view().summary(customer).contact_count == 1  # notes are no contacts


def test_an_oversize_or_empty_note_is_refused_naming_the_field(
    client: TestClient, customer: UUID, headers: dict
) -> None:
    for text in ("x" * 10_001, ""):
        answer = client.post(
            f"/v1/customers/{customer}/notes", json={"text": text}, headers=headers["agent"]
        )
        assert answer.status_code == 422
        assert [e["field"] for e in answer.json()["errors"]] == ["body.text"]
    blank = client.post(
        f"/v1/customers/{customer}/notes", json={"text": "   "}, headers=headers["agent"]
    )
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "body.text"


def test_a_file_is_attached_listed_on_the_timeline_and_downloaded_by_a_reader(
    client: TestClient, customer: UUID, headers: dict, hub: Hub
) -> None:
    conversation = the_conversation(client, customer, headers["agent"])["conversation_id"]
    answer = client.post(
        f"/v1/conversations/{conversation}/files",
        files={"file": ("../invoice 4711.pdf", PDF, "application/pdf")},
        headers=headers["agent"],
    )
    assert answer.status_code == 201, answer.text
    attached = answer.json()
    assert attached["filename"] == "invoice 4711.pdf"
    assert attached["content_type"] == "application/pdf" and attached["size"] == len(PDF)
    assert (hub.settings.data_dir / "blobs").is_dir()  # the e-mail attachments' store

    (entry,) = [e for e in timeline(hub, customer) if e.type == "file.attached"]
    assert entry.payload["download_path"] == attached["download_path"]
    assert entry.payload["conversation_id"] == conversation

    assert attached["download_path"] == f"/v1/customers/{customer}/files/{attached['sha256']}"
    download = client.get(attached["download_path"], headers=headers["auditor"])
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == (
        "attachment; filename*=utf-8''invoice%204711.pdf"
    )
    assert download.headers["x-content-type-options"] == "nosniff"
    assert client.get(attached["download_path"]).status_code == 401
    assert (
        client.get(attached["download_path"], headers=headers["campaign_manager"]).status_code
        == 403
    )


def test_a_file_too_big_of_a_refused_type_or_not_what_it_claims_is_not_stored(
    client: TestClient, customer: UUID, headers: dict, hub: Hub
) -> None:
    url = f"/v1/customers/{customer}/files"
    agent = headers["agent"]
    too_big = client.post(
        url, files={"file": ("big.pdf", PDF + b"0" * MAX_FILE, "application/pdf")}, headers=agent
    )
    assert too_big.status_code == 413 and "at most 4096" in too_big.json()["detail"]
    # A body far beyond the limit is refused from its Content-Length, before it is read.
    huge = client.post(
        url, files={"file": ("big.pdf", PDF + b"0" * 200_000, "application/pdf")}, headers=agent
    )
    assert huge.status_code == 413 and "the body has" in huge.json()["detail"]
    lying = client.post(url, files={"file": ("x.pdf", PNG, "application/pdf")}, headers=agent)
    assert lying.status_code == 422
    assert lying.json()["errors"][0]["field"] == "body.file.content_type"
    assert "its bytes are image/png" in lying.json()["detail"]
    zipped = client.post(
        url, files={"file": ("a.zip", b"PK\x03\x04" + b"\0" * 30, "application/zip")}, headers=agent
    )
    assert zipped.status_code == 415
    missing = client.post(url, headers=agent)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "body.file"

    assert not [e for e in timeline(hub, customer) if e.type == "file.attached"]
    blobs = hub.settings.data_dir / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))


def test_an_auditor_reads_the_desk_but_changes_nothing(
    client: TestClient, customer: UUID, headers: dict
) -> None:
    auditor = headers["auditor"]
    conversation = the_conversation(client, customer, auditor)
    url = f"/v1/conversations/{conversation['conversation_id']}"
    assert client.get(url, headers=auditor).status_code == 200
    refused = client.post(
        f"{url}/status", json={"status": "resolved", "expected_version": 1}, headers=auditor
    )
    assert refused.status_code == 403 and "agent, supervisor or admin" in refused.json()["detail"]
    assert client.post(f"{url}/notes", json={"text": "x"}, headers=auditor).status_code == 403


def test_the_same_bytes_attached_to_two_people_keep_each_ones_name(
    client: TestClient, customer: UUID, headers: dict, hub: Hub
) -> None:
    other = customer_id_for("+4930999888777")
    hub.history().record_interactions(
        [
            MessageReceived(
                channel=Channel.sms,
                party="+4930999888777",
                provider_ref="SM2",
                occurred_at=datetime(2026, 3, 2, 10, tzinfo=UTC),
                body="hello",
            )
        ]
    )
    agent, auditor = headers["agent"], headers["auditor"]
    names = {customer: "mueller-contract.pdf", other: "schmidt-invoice.pdf"}
    paths = {}
    for who, name in names.items():
        answer = client.post(
            f"/v1/customers/{who}/files",
            files={"file": (name, PDF, "application/pdf")},
            headers=agent,
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["filename"] == name
        paths[who] = answer.json()["download_path"]
    assert paths[customer] != paths[other]  # one file, one path per person
    sha256 = paths[customer].rsplit("/", 1)[1]

    for who, name in names.items():
        # The download, the timeline and the export each name the file as it was attached
        # to this person.
        download = client.get(paths[who], headers=auditor)
        assert download.status_code == 200 and download.content == PDF
        assert download.headers["content-disposition"] == f'attachment; filename="{name}"'
        (entry,) = [e for e in timeline(hub, who) if e.type == "file.attached"]
        assert entry.payload["filename"] == name and name in entry.summary
        assert entry.payload["download_path"] == paths[who]
        export = client.get(f"/v1/audit/customers/{who}/export", headers=auditor).json()
        (row,) = [e for e in export["timeline"] if e["type"] == "file.attached"]
        assert row["payload"]["filename"] == name
        (event,) = [e for e in export["events"] if e["type"].endswith("FileAttached")]
        assert event["data"]["filename"] == name
        assert names[other if who == customer else customer] not in str(export)

    # The shared index of stored files names no one; by the hash alone, the file is served
    # under a name made of its hash (the links of timelines built before).
    desk = hub.desk()
    stored = desk.stored_file(sha256)
    assert (stored.content_type, stored.size) == ("application/pdf", len(PDF))
    assert not hasattr(stored, "filename")
    (record,) = [
        n
        for n in desk.history.recorder.select_notifications(start=1, limit=1000)
        if n.topic == "switchboard:StoredFile.Stored"
    ]
    assert b"contract" not in record.state and b"invoice" not in record.state
    by_hash = client.get(f"/v1/files/{sha256}", headers=auditor)
    assert by_hash.status_code == 200 and by_hash.content == PDF
    assert by_hash.headers["content-disposition"] == (
        f'attachment; filename="file-{sha256[:12]}.pdf"'
    )
    # A file attached to one person is not downloaded through another who never had it.
    stranger = customer_id_for("+4930555000111")
    never = client.get(f"/v1/customers/{stranger}/files/{sha256}", headers=auditor)
    assert never.status_code == 404


def test_a_stored_file_recorded_with_its_name_still_loads_without_it(hub: Hub) -> None:
    """Stores written before keep the name of the first attachment in clear in their
    ``StoredFile.Stored`` events (the log is append-only and hash-chained); it is dropped
    when such an event is read."""
    from dataclasses import replace

    from services.domain.desk import StoredFile

    mapper = hub.history().mapper
    new = StoredFile(sha256="ab" * 32, content_type="application/pdf", size=3)
    (event,) = new.collect_events()
    stored = mapper.to_stored_event(event)
    state = mapper.transcoder.decode(stored.state)
    assert state.pop("class_version") == 2 and "filename" not in state
    state["filename"] = "anna-mueller-contract.pdf"  # as version 1 wrote it
    old = replace(stored, state=mapper.transcoder.encode(state))
    loaded = mapper.to_domain_event(old)
    assert not hasattr(loaded, "filename")
    aggregate = loaded.mutate(None)
    assert (aggregate.sha256, aggregate.content_type, aggregate.size) == (
        "ab" * 32,
        "application/pdf",
        3,
    )
