"""The customer directory over HTTP, as an agent uses it: look a caller up, see one card for a
person who used three channels, edit the profile, merge a duplicate, undo it — and every bad
request refused with a reason, nothing half-written.  On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from channels.publishing import InteractionPublisher
from contracts import CallRinging, Channel, MessageReceived
from projections.follower import TimelineFollower
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.domain.users import Role

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PHONE = "+493055501234"


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", store=store_url)


class Hub:
    def __init__(self, settings: Settings) -> None:
        hub = bootstrap(settings)
        self.history = hub.history()
        self.view = hub.timeline_view()
        self.follower = TimelineFollower(self.history, self.view)
        users = hub.user_directory()
        users.register("anna.agent", roles=[Role.agent])
        users.register("otto.auditor", roles=[Role.auditor])
        self.agent = {"Authorization": f"Bearer {users.issue_token('anna.agent').token}"}
        self.auditor = {"Authorization": f"Bearer {users.issue_token('otto.auditor').token}"}
        api = hub.api(view=self.view, publisher=InteractionPublisher("127.0.0.1:1"), users=users)
        self.client = TestClient(api, headers=self.agent)

    def record(self, *interactions) -> None:
        self.history.record_interactions(list(interactions))
        self.follower.catch_up()

    def lookup(self, address: str) -> dict:
        answer = self.client.get("/v1/lookup", params={"address": address})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    hub = Hub(settings)
    with hub.client:
        yield hub


def message(channel: Channel, party: str, ref: str, minutes: int) -> MessageReceived:
    return MessageReceived(
        channel=channel,
        party=party,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=f"{channel} message",
        subject="Order 4711" if channel == Channel.email else None,
    )


def test_an_agent_looks_up_a_caller_and_merges_a_duplicate_then_undoes_it(hub: Hub) -> None:
    hub.record(
        CallRinging(
            channel=Channel.voice,
            direction="inbound",
            party=PHONE,
            provider_ref="CA1",
            call_id="CA1",
            occurred_at=T0,
        ),
        message(Channel.sms, PHONE, "SM1", 1),
        message(Channel.whatsapp, f"whatsapp:{PHONE}", "wamid.1", 2),
        message(Channel.email, "Anna.Berg@Example.com", "<m1@example.com>", 3),
    )
    # One card for the person on three channels.
    card = hub.lookup(PHONE)["customer"]
    assert {r["channel"] for r in card["recent"]} == {"voice", "sms", "whatsapp"}
    assert hub.lookup(f"whatsapp:{PHONE}")["customer"]["customer_id"] == card["customer_id"]
    phone_customer = card["customer_id"]

    mail = hub.lookup("anna.berg@example.com")
    assert mail["known"] and mail["address"] == "anna.berg@example.com"
    mail_customer = mail["customer"]["customer_id"]
    assert mail_customer != phone_customer

    # The agent names the phone customer and merges the e-mail one into it.
    edit = hub.client.patch(
        f"/v1/customers/{phone_customer}",
        json={"expected_version": 0, "name": "Anna Berg", "tier": "gold", "language": "de"},
    )
    assert edit.status_code == 200, edit.text
    assert edit.json()["profile_version"] == 1
    merged = hub.client.post(
        f"/v1/customers/{phone_customer}/merge",
        json={"absorb": mail_customer, "reason": "same person, same order"},
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["addresses"] == ["anna.berg@example.com"]
    hub.follower.catch_up()

    card = hub.lookup("anna.berg@example.com")["customer"]
    assert card["customer_id"] == phone_customer
    assert card["name"] == "Anna Berg" and card["tier"] == "gold"
    assert card["contact_count"] == 4
    assert card["merged"] == [mail_customer]
    assert set(card["addresses"]) == {PHONE, f"whatsapp:{PHONE}", "anna.berg@example.com"}
    timeline = hub.client.get(f"/v1/customers/{phone_customer}/timeline").json()["items"]
    assert len(timeline) == 4
    absorbed = hub.client.get(f"/v1/customers/{mail_customer}").json()
    assert absorbed["merged_into"] == phone_customer

    undone = hub.client.post(
        f"/v1/customers/{phone_customer}/unmerge",
        json={"absorbed": mail_customer, "reason": "her sister, not her"},
    )
    assert undone.status_code == 200, undone.text
    assert undone.json()["addresses"] == ["anna.berg@example.com"]
    hub.follower.catch_up()
    assert hub.lookup("anna.berg@example.com")["customer"]["customer_id"] == mail_customer
    assert hub.lookup(PHONE)["customer"]["contact_count"] == 3

    # The history holds every decision with who made it and why.
    events = list(hub.history.events.get(uuid.UUID(phone_customer)))
    decisions = [(type(e).__name__, getattr(e, "by", None)) for e in events[-3:]]
    assert decisions == [
        ("ProfileChanged", "anna.agent"),
        ("Absorbed", "anna.agent"),
        ("Unmerged", "anna.agent"),
    ]


def test_an_unknown_address_is_an_explicit_unknown_card_and_a_malformed_one_is_422(
    hub: Hub,
) -> None:
    assert hub.lookup("+493055599999") == {
        "address": "+493055599999",
        "known": False,
        "customer": None,
        "candidates": [],
    }
    bad = hub.client.get("/v1/lookup", params={"address": "call me maybe"})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.address"]


def test_search_by_phone_email_or_name_prefix(hub: Hub) -> None:
    hub.record(
        message(Channel.sms, PHONE, "SM1", 0),
        message(Channel.email, "bob@example.org", "<b1>", 1),
    )
    cid = hub.lookup(PHONE)["customer"]["customer_id"]
    hub.client.patch(f"/v1/customers/{cid}", json={"expected_version": 0, "name": "Carla Diaz"})
    hub.follower.catch_up()

    def found(q: str) -> list[str]:
        answer = hub.client.get("/v1/customers", params={"q": q})
        assert answer.status_code == 200, answer.text
        return [c["customer_id"] for c in answer.json()["items"]]

    assert found("carla") == [cid]
    assert found("+49305550") == [cid]
    assert found(PHONE) == [cid]
    assert found("bob@") == [hub.lookup("bob@example.org")["customer"]["customer_id"]]
    assert found("nobody") == []


def test_bad_requests_are_refused_with_the_reason_and_change_nothing(hub: Hub) -> None:
    hub.record(
        message(Channel.sms, PHONE, "SM1", 0), message(Channel.sms, "+493055507777", "SM2", 1)
    )
    cid = hub.lookup(PHONE)["customer"]["customer_id"]
    other = hub.lookup("+493055507777")["customer"]["customer_id"]
    c = hub.client

    assert c.get("/v1/customers/not-a-uuid").status_code == 422
    assert c.get(f"/v1/customers/{uuid.uuid4()}").status_code == 404
    missing = c.post(f"/v1/customers/{uuid.uuid4()}/merge", json={"absorb": cid, "reason": "r"})
    assert missing.status_code == 404
    itself = c.post(f"/v1/customers/{cid}/merge", json={"absorb": cid, "reason": "r"})
    assert itself.status_code == 422 and itself.json()["errors"][0]["field"] == "body.absorb"
    never = c.post(f"/v1/customers/{cid}/unmerge", json={"absorbed": other, "reason": "r"})
    assert never.status_code == 409 and "never merged" in never.json()["detail"]
    taken = c.post(
        f"/v1/customers/{cid}/addresses", json={"address": "+493055507777", "reason": "r"}
    )
    assert taken.status_code == 409 and "merge the two customers" in taken.json()["detail"]
    garbled = c.post(f"/v1/customers/{cid}/addresses", json={"address": "?!", "reason": "r"})
    assert garbled.status_code == 422 and garbled.json()["errors"][0]["field"] == "body.address"
    zone = c.patch(
        f"/v1/customers/{cid}", json={"expected_version": 0, "time_zone": "Mars/Olympus"}
    )
    assert zone.status_code == 422 and zone.json()["errors"][0]["field"] == "body.time_zone"
    unknown_field = c.patch(f"/v1/customers/{cid}", json={"expected_version": 0, "shoe": 42})
    assert unknown_field.status_code == 422
    huge = c.patch(f"/v1/customers/{cid}", json={"expected_version": 0, "name": "x" * 201})
    assert huge.status_code == 422

    # Two agents edit the same card: the second, stale edit is a conflict, not a lost update.
    first = c.patch(f"/v1/customers/{cid}", json={"expected_version": 0, "tier": "gold"})
    assert first.status_code == 200
    second = c.patch(f"/v1/customers/{cid}", json={"expected_version": 0, "tier": "silver"})
    assert second.status_code == 409 and "changed meanwhile" in second.json()["detail"]

    # Merged customers cannot be merged again or edited.
    c.post(f"/v1/customers/{cid}/merge", json={"absorb": other, "reason": "same"})
    again = c.post(f"/v1/customers/{cid}/merge", json={"absorb": other, "reason": "same"})
    assert again.status_code == 409 and "was merged into" in again.json()["detail"]
    edit_absorbed = c.patch(f"/v1/customers/{other}", json={"expected_version": 0, "name": "X"})
    assert edit_absorbed.status_code == 409

    hub.follower.catch_up()
    card = hub.client.get(f"/v1/customers/{cid}").json()
    assert card["tier"] == "gold" and card["profile_version"] == 1


def test_auditors_read_cards_but_decide_nothing(hub: Hub) -> None:
    hub.record(message(Channel.sms, PHONE, "SM1", 0))
    cid = hub.lookup(PHONE)["customer"]["customer_id"]
    read = hub.client.get(f"/v1/customers/{cid}", headers=hub.auditor)
    assert read.status_code == 200
    edit = hub.client.patch(
        f"/v1/customers/{cid}", json={"expected_version": 0, "name": "X"}, headers=hub.auditor
    )
    assert (
        edit.status_code == 403 and "needs role agent, supervisor or admin" in edit.json()["detail"]
    )


def test_duplicates_are_suggested_with_reasons_and_a_dismissal_sticks(hub: Hub) -> None:
    hub.record(
        message(Channel.email, "anna@acme.example", "<a1>", 0),
        message(Channel.email, "anna+shop@acme.example", "<a2>", 1),
    )
    anna = hub.lookup("anna@acme.example")["customer"]["customer_id"]
    tagged = hub.lookup("anna+shop@acme.example")["customer"]["customer_id"]
    suggestions = hub.client.get(f"/v1/customers/{anna}/duplicates").json()
    assert [s["customer"]["customer_id"] for s in suggestions] == [tagged]
    assert "anna@acme.example" in suggestions[0]["reasons"][0]

    dismissed = hub.client.post(
        f"/v1/customers/{anna}/duplicates/{tagged}/dismiss", json={"reason": "shop account"}
    )
    assert dismissed.status_code == 204, dismissed.text
    hub.follower.catch_up()
    assert hub.client.get(f"/v1/customers/{anna}/duplicates").json() == []
