"""A campaign manager's API on the real store and view (SQLite and PostgreSQL): create →
audience → template → preview → start, and every bad input of issue 15 refused clearly with
nothing started, planned or sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from channels.publishing import InteractionPublisher
from contracts import (
    Channel,
    ConsentChanged,
    DeliveryStatus,
    DeliveryStatusChanged,
    Direction,
    MessageReceived,
)
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.campaigns.plans import PlanArchive
from services.domain import customer_id_for
from services.domain.outbound import OutboundCommand

PHONES = [f"+4930500000{i:02d}" for i in range(4)]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", store=store_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """Four customers who wrote by SMS; three opted in to marketing, one has the tag vip."""
    hub = bootstrap(settings)
    history = hub.history()
    events: list = [
        MessageReceived(
            channel=Channel.sms, party=p, provider_ref=f"SM{i}", occurred_at=T0, body="hi"
        )
        for i, p in enumerate(PHONES)
    ]
    events += [
        ConsentChanged(
            channel=Channel.sms,
            direction=Direction.inbound,
            party=p,
            provider_ref=f"web{i}",
            occurred_at=T0,
            purpose="marketing",
            granted=True,
            source="web-form",
        )
        for i, p in enumerate(PHONES[:3])
    ]
    history.record_interactions(events)
    history.edit_profile(
        customer_id_for(PHONES[0]),
        {"name": "Anna Berg", "tags": ["vip"]},
        by="agent",
        expected_version=0,
    )
    hub.timeline_follower().catch_up()
    api = hub.api(view=hub.timeline_view(), publisher=InteractionPublisher("127.0.0.1:1"))
    with TestClient(api) as client:
        yield client


@pytest.fixture
def manager(settings: Settings) -> dict[str, str]:
    users = bootstrap(settings).user_directory()
    users.register("carla", roles=["campaign_manager"])
    return {"Authorization": f"Bearer {users.issue_token('carla').token}"}


def ready_campaign(client: TestClient, manager: dict[str, str], **segment: object) -> str:
    """A draft with an audience, an SMS template, a window and a rate: ready to start."""
    answer = client.post("/v1/campaigns", json={"name": "Spring sale"}, headers=manager)
    assert answer.status_code == 201, answer.text
    cid = answer.json()["campaign_id"]
    answer = client.put(
        f"/v1/campaigns/{cid}/audience",
        json={"segment": segment, "channels": ["sms"]},
        headers=manager,
    )
    assert answer.status_code == 200, answer.text
    answer = client.put(
        f"/v1/campaigns/{cid}/templates/sms/en",
        json={"body": "Hi {{ first_name | default('there') }}, 20% off!"},
        headers=manager,
    )
    assert answer.status_code == 200, answer.text
    end = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    answer = client.put(
        f"/v1/campaigns/{cid}/schedule",
        json={
            "ends_at": end,
            "rate_limits": {"sms": 5},
            "allowed_from": "00:00",
            "allowed_until": "23:59",
        },
        headers=manager,
    )
    assert answer.status_code == 200, answer.text
    return cid


def nothing_started(settings: Settings, client: TestClient, manager: dict, cid: str) -> None:
    assert not PlanArchive(settings.data_dir / "campaigns").has(UUID(cid))
    assert client.get(f"/v1/campaigns/{cid}", headers=manager).json()["started_at"] is None


def test_a_campaign_is_created_targeted_previewed_and_started(
    client: TestClient, manager: dict[str, str], settings: Settings
) -> None:
    cid = ready_campaign(client, manager)
    preview = client.get(f"/v1/campaigns/{cid}/preview", params={"sample": 5}, headers=manager)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["matched"], body["sends"], body["skipped"]) == (4, 3, {"no_consent": 1})
    assert "no marketing opt-in on sms" in body["skip_reasons"]["no_consent"]
    texts = {r["address"]: r["body"] for r in body["sample"]}
    assert texts[PHONES[0]] == "Hi Anna, 20% off!"
    assert texts[PHONES[1]] == "Hi there, 20% off!"
    assert {r["channel"] for r in body["sample"]} == {"sms"}

    started = client.post(f"/v1/campaigns/{cid}/start", headers=manager)
    assert started.status_code == 200, started.text
    assert started.json()["sends"] == 3
    shown = client.get(f"/v1/campaigns/{cid}", headers=manager).json()
    assert shown["state"] == "running"
    assert shown["tracking"]["queued"] == 3
    assert shown["tracking"]["sent"] == 0
    assert PlanArchive(settings.data_dir / "campaigns").has(UUID(cid))
    listed = client.get("/v1/campaigns", headers=manager).json()
    assert [(c["name"], c["state"]) for c in listed] == [("Spring sale", "running")]

    assert client.post(f"/v1/campaigns/{cid}/pause", headers=manager).json()["state"] == "paused"
    assert client.post(f"/v1/campaigns/{cid}/resume", headers=manager).json()["state"] == "running"


def test_an_unknown_template_field_is_refused_naming_it(
    client: TestClient, manager: dict[str, str]
) -> None:
    cid = ready_campaign(client, manager)
    answer = client.put(
        f"/v1/campaigns/{cid}/templates/sms/en",
        json={"body": "Hi {{ nickname }}, {{ first_name }}"},
        headers=manager,
    )
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["errors"][0]["field"] == "body.body"
    assert "unknown field(s) nickname" in problem["detail"]
    assert "known fields: address, campaign" in problem["detail"]


def test_a_segment_matching_nobody_is_not_started(
    client: TestClient, manager: dict[str, str], settings: Settings
) -> None:
    cid = ready_campaign(client, manager, tags=["vip"], tiers=["platinum"])
    answer = client.post(f"/v1/campaigns/{cid}/start", headers=manager)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "no customer matches this segment (4 customers looked at" in detail
    assert "tags ['vip']: 1" in detail and "tier in ['platinum']: 0" in detail
    nothing_started(settings, client, manager, cid)


def test_a_list_with_bad_numbers_is_refused_row_by_row_and_changes_nothing(
    client: TestClient, manager: dict[str, str]
) -> None:
    cid = ready_campaign(client, manager, tags=["vip"])
    csv = f"phone\n{PHONES[1]}\n+49 30 12\nabc\n+4930999999999\n"
    answer = client.post(
        f"/v1/campaigns/{cid}/audience/csv",
        content=csv.encode(),
        headers={**manager, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [
        "body.row 3.phone",
        "body.row 4.phone",
        "body.row 5.phone",
    ]
    assert "bad phone number" in errors[0]["message"]
    assert "unknown customer" in errors[2]["message"]
    segment = client.get(f"/v1/campaigns/{cid}", headers=manager).json()["segment"]
    assert segment["tags"] == ["vip"] and segment["customer_ids"] == []

    good = client.post(
        f"/v1/campaigns/{cid}/audience/csv",
        content=f"phone\n{PHONES[1]}\n{PHONES[2]}\n".encode(),
        headers={**manager, "Content-Type": "text/csv"},
    )
    assert good.status_code == 200, good.text
    assert good.json()["customers"] == 2


def test_a_schedule_in_the_past_and_a_zero_rate_are_refused(
    client: TestClient, manager: dict[str, str]
) -> None:
    cid = ready_campaign(client, manager)
    past = client.put(
        f"/v1/campaigns/{cid}/schedule",
        json={"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-01-02T00:00:00Z"},
        headers=manager,
    )
    assert past.status_code == 422
    assert past.json()["errors"][0]["field"] == "body.ends_at"
    assert "in the past" in past.json()["detail"]
    zero = client.put(
        f"/v1/campaigns/{cid}/schedule", json={"rate_limits": {"sms": 0}}, headers=manager
    )
    assert zero.status_code == 422
    assert zero.json()["errors"][0]["field"] == "body.rate_limits.sms"


def test_a_cancelled_campaign_cannot_be_started_and_unknown_ones_are_not_found(
    client: TestClient, manager: dict[str, str], settings: Settings
) -> None:
    cid = ready_campaign(client, manager)
    assert client.post(f"/v1/campaigns/{cid}/cancel", headers=manager).status_code == 200
    answer = client.post(f"/v1/campaigns/{cid}/start", headers=manager)
    assert answer.status_code == 409
    assert "a cancelled campaign cannot be started" in answer.json()["detail"]
    nothing_started(settings, client, manager, cid)
    assert client.get(f"/v1/campaigns/{uuid4()}", headers=manager).status_code == 404
    assert client.post(f"/v1/campaigns/{uuid4()}/pause", headers=manager).status_code == 404


def test_only_campaign_managers_and_admins_run_campaigns(
    client: TestClient, settings: Settings
) -> None:
    users = bootstrap(settings).user_directory()
    users.register("ann", roles=["agent"])
    agent = {"Authorization": f"Bearer {users.issue_token('ann').token}"}
    answer = client.post("/v1/campaigns", json={"name": "Mine"}, headers=agent)
    assert answer.status_code == 403
    assert "campaign_manager or admin" in answer.json()["detail"]
    assert client.get("/v1/campaigns").status_code == 401


def test_the_funnel_over_time_counts_each_stage_at_the_moment_it_was_reached(
    client: TestClient, manager: dict[str, str], settings: Settings
) -> None:
    cid = ready_campaign(client, manager)
    assert client.post(f"/v1/campaigns/{cid}/start", headers=manager).status_code == 200
    started = datetime.fromisoformat(
        client.get(f"/v1/campaigns/{cid}", headers=manager).json()["started_at"]
    )
    sends = {
        c: command for c, _, command in PlanArchive(settings.data_dir / "campaigns").keys(UUID(cid))
    }
    anna, ben, cleo = (sends[customer_id_for(p)] for p in PHONES[:3])
    # The dispatcher's outcomes, at known moments after the start.
    hub = bootstrap(settings)
    ledger = hub.outbound_ledger()
    at = {"anna sent": 30, "ben sent": 70, "cleo failed": 130, "delivered": 95, "reply": 150}
    moment = {what: started + timedelta(seconds=s) for what, s in at.items()}
    for command_id, to, ref, when in (
        (anna, PHONES[0], "SM-anna", moment["anna sent"]),
        (ben, PHONES[1], "SM-ben", moment["ben sent"]),
    ):
        record = ledger.claim(command_id, channel="sms", to=to)
        record.trigger_event(OutboundCommand.Sent, provider_ref=ref, timestamp=when)
        ledger.save(record)
    record = ledger.claim(cleo, channel="sms", to=PHONES[2])
    record.trigger_event(
        OutboundCommand.Failed,
        reason="blocked",
        code="30004",
        kind="rejected",
        timestamp=moment["cleo failed"],
    )
    ledger.save(record)
    hub.history().record_interactions(
        [
            DeliveryStatusChanged(
                channel=Channel.sms,
                party=PHONES[0],
                provider_ref="SM-anna:delivered",
                occurred_at=moment["delivered"],
                status=DeliveryStatus.delivered,
                message_ref="SM-anna",
            ),
            MessageReceived(
                channel=Channel.sms,
                party=PHONES[0],
                provider_ref="SM-anna-reply",
                occurred_at=moment["reply"],
                body="Blue, please",
            ),
        ]
    )
    hub.timeline_follower().catch_up()

    answer = client.get(f"/v1/campaigns/{cid}/funnel", headers=manager)
    assert answer.status_code == 200, answer.text
    funnel = answer.json()
    assert (funnel["state"], funnel["queued"], funnel["step_seconds"]) == ("running", 3, 60)
    points = funnel["points"]
    first = started.replace(second=0, microsecond=0)
    assert datetime.fromisoformat(points[0]["at"]) == first
    assert datetime.fromisoformat(points[-1]["at"]) >= moment["reply"]

    def so_far(point: dict, *whats: str) -> int:
        return sum(moment[w] <= datetime.fromisoformat(point["at"]) for w in whats)

    for point in points:  # each point counts what happened up to it, minute by minute
        assert point["sent"] == so_far(point, "anna sent", "ben sent"), point
        assert point["failed"] == so_far(point, "cleo failed"), point
        assert point["delivered"] == so_far(point, "delivered"), point
        assert point["replied"] == so_far(point, "reply"), point
        assert point["opted_out"] == 0
    last = {k: v for k, v in points[-1].items() if k != "at"}
    tracking = client.get(f"/v1/campaigns/{cid}", headers=manager).json()["tracking"]
    assert (
        last
        == {k: tracking[k] for k in last}
        == {
            "sent": 2,
            "failed": 1,
            "delivered": 1,
            "replied": 1,
            "opted_out": 0,
        }
    )

    bounded = client.get(f"/v1/campaigns/{cid}/funnel", params={"points": 2}, headers=manager)
    assert len(bounded.json()["points"]) <= 2
    assert bounded.json()["points"][-1]["sent"] == 2
    assert (
        client.get(
            f"/v1/campaigns/{cid}/funnel", params={"points": 201}, headers=manager
        ).status_code
        == 422
    )
