"""Campaigns in the store, and the audience read from a real timeline view (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from contracts import Channel, ConsentChanged, Direction, MessageReceived
from projections.audience import audience_rows
from projections.follower import TimelineFollower
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.bootstrap.stores import open_campaign_store
from services.campaigns.audience import Segment, parse_audience_csv, preview
from services.campaigns.campaign import InvalidTransition
from services.campaigns.plan import plan_campaign
from services.campaigns.store import (
    CampaignChanged,
    CampaignNotFound,
    CampaignStore,
)
from services.campaigns.templates import ChannelTemplate
from services.domain import customer_id_for

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", store=store_url)


@pytest.fixture
def store(settings: Settings) -> CampaignStore:
    return open_campaign_store(settings)


def test_a_campaign_is_stored_and_its_state_followed_by_the_runner(
    store: CampaignStore, settings: Settings
) -> None:
    now = datetime.now(UTC)
    campaign = store.create("Spring sale", by="carla")
    campaign.set_audience(Segment(tags=["newsletter"]), ["sms"])
    campaign.set_template(ChannelTemplate("sms", "en", "Hi {{ first_name | default('') }}"))
    campaign.set_schedule_window(now + timedelta(hours=1), now + timedelta(days=1))
    campaign.set_rate_limits({"sms": 5})
    campaign.schedule(now=now, by="carla")
    store.save(campaign)

    other = open_campaign_store(settings)  # another process: the runner
    assert other.state(campaign.id) == "scheduled"
    loaded = other.get(campaign.id)
    assert loaded.segment == Segment(tags=["newsletter"])
    assert loaded.templates["sms:en"].body == "Hi {{ first_name | default('') }}"
    assert loaded.starts_at == campaign.starts_at
    loaded.start(now=now + timedelta(hours=1), by="runner")
    loaded.pause(by="carla", reason="check the text")
    other.save(loaded)
    assert store.state(campaign.id) == "paused"
    assert [c.name for c in store.list()] == ["Spring sale"]

    stale = campaign  # still the scheduled one this process saved
    with pytest.raises(InvalidTransition, match="a scheduled campaign cannot be resumed"):
        stale.resume(by="carla")
    stale.cancel(by="carla")
    with pytest.raises(CampaignChanged, match="changed meanwhile"):
        store.save(stale)
    assert store.state(campaign.id) == "paused"
    assert [c.campaign_id for c in store.recent_campaigns(now - timedelta(days=7))] == [campaign.id]


def test_an_unknown_campaign_is_not_found(store: CampaignStore) -> None:
    with pytest.raises(CampaignNotFound):
        store.state(uuid4())


def test_the_audience_is_read_from_the_view_without_merged_customers(settings: Settings) -> None:
    hub = bootstrap(settings)
    history, view = hub.history(), hub.timeline_view()
    follower = TimelineFollower(history, view)
    ann, bob, dup = "+4930901820", "bob@example.com", "+4930901821"
    history.record_interactions(
        [
            MessageReceived(
                channel=Channel.whatsapp,
                party=f"whatsapp:{ann}",
                provider_ref="wa1",
                occurred_at=T0,
                body="hello",
            ),
            MessageReceived(
                channel=Channel.sms, party=ann, provider_ref="sm1", occurred_at=T0, body="hi"
            ),
            MessageReceived(
                channel=Channel.email,
                party=bob,
                provider_ref="<m1@example.com>",
                occurred_at=T0 + timedelta(hours=1),
                body="question",
                subject="Order",
            ),
            MessageReceived(
                channel=Channel.sms, party=dup, provider_ref="sm2", occurred_at=T0, body="me too"
            ),
            ConsentChanged(
                channel=Channel.sms,
                direction=Direction.inbound,
                party=ann,
                provider_ref="web1",
                occurred_at=T0,
                purpose="marketing",
                granted=True,
                source="web-form",
            ),
        ]
    )
    ann_id = customer_id_for(ann)
    history.edit_profile(
        ann_id, {"name": "Ann Lee", "tags": ["newsletter"]}, by="agent", expected_version=0
    )
    history.merge(ann_id, customer_id_for(dup), by="agent", reason="same person")
    follower.catch_up()

    rows = {r.customer_id: r for r in audience_rows(view, page=1)}  # pages of one: keyset
    assert set(rows) == {ann_id, customer_id_for(bob)}
    ann_row = rows[ann_id]
    assert set(ann_row.addresses) >= {ann, f"whatsapp:{ann}", dup}
    assert ann_row.profile["tags"] == ["newsletter"]
    assert ann_row.consent == {"sms:marketing": True}
    assert ann_row.last_inbound_at == {"whatsapp": T0}
    assert rows[customer_id_for(bob)].last_inbound_at == {}
    assert rows[customer_id_for(bob)].last_contact_at == T0 + timedelta(hours=1)

    found = preview(audience_rows(view), Segment(tags=["newsletter"]))
    assert [r.customer_id for r in found.sample] == [ann_id]

    # The explicit list resolves numbers through the same view.
    listed = parse_audience_csv(
        "phone\n+49 30 901821\n+49 30 999\n",
        find_customer=view.customer_for_address,
        customer_exists=lambda c: view.summary(c) is not None,
    )
    assert listed.customer_ids == [ann_id]  # the merged number leads to the survivor
    assert [(e.row, e.column) for e in listed.errors] == [(3, "phone")]

    # And the plan over the real rows: Ann has an SMS opt-in, Bob none.
    now = datetime.now(UTC)
    store = open_campaign_store(settings)
    campaign = store.create("Spring sale", by="carla")
    campaign.set_audience(Segment(), ["sms", "email"])
    for channel in ("sms", "email"):
        campaign.set_template(
            ChannelTemplate(
                channel,
                "en",
                "Hi {{ first_name | default('there') }}",
                subject="Sale" if channel == "email" else None,
            )
        )
    campaign.set_schedule_window(now, now + timedelta(days=2))
    campaign.set_rate_limits({"sms": 1, "email": 1})
    store.save(campaign)

    class NoRankings:
        def rankings(self, ids: list) -> dict:
            return {}

    _, plan = plan_campaign(
        campaign,
        audience_rows(view),
        reachability=NoRankings(),
        contacts=lambda ids, since: {},
        now=now,
    )
    assert [(p.customer_id, p.channel, p.command.body) for p in plan.sends] == [
        (ann_id, "sms", "Hi Ann")
    ]
    assert [(s.customer_id, s.code) for s in plan.skips] == [(customer_id_for(bob), "no_consent")]
