"""The reachability view on SQLite and PostgreSQL: contacts recorded through the customer
history are followed into rankings, a merge combines two customers' and an unmerge separates
them again, a rebuild from zero gives the same rankings, and the card shows them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from channels.publishing import InteractionPublisher
from contracts import (
    Channel,
    ConsentChanged,
    DeliveryStatusChanged,
    Direction,
    InteractionEvent,
    MessageReceived,
    MessageSent,
)
from projections.reachability_store import (
    ReachabilityFollower,
    ReachabilityView,
    rebuild_reachability,
)
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.domain import customer_id_for
from services.domain.users import Role
from services.history.customers import CustomerHistory

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PHONE = "+493055501234"
WHATSAPP = f"whatsapp:{PHONE}"
MAIL = "anna.berg@example.com"
ANNA, MAIL_ANNA = customer_id_for(PHONE), customer_id_for(MAIL)


@pytest.fixture
def hub(store_url: str, tmp_path: Path) -> Hub:
    return bootstrap(Settings(store=store_url, data_dir=tmp_path / "var"))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sent(channel: Channel, to: str, ref: str, minutes: float) -> MessageSent:
    return MessageSent(
        channel=channel, party=to, provider_ref=ref, occurred_at=at(minutes), body="hello"
    )


def report(
    channel: Channel, to: str, ref: str, status: str, minutes: float, code: str | None = None
) -> DeliveryStatusChanged:
    return DeliveryStatusChanged(
        channel=channel,
        party=to,
        provider_ref=f"{ref}:{status}",
        occurred_at=at(minutes),
        message_ref=ref,
        status=status,
        error_code=code,
    )


def received(channel: Channel, party: str, ref: str, minutes: float) -> MessageReceived:
    return MessageReceived(
        channel=channel,
        party=party,
        provider_ref=ref,
        occurred_at=at(minutes),
        body="thanks",
        subject="Re: hello" if channel == Channel.email else None,
    )


def anna_on_two_numbers_and_a_mailbox() -> list[InteractionEvent]:
    """WhatsApp answered fast 3 times of 4, SMS undelivered twice; her e-mail address (another
    customer until merged) wrote once and then bounced."""
    contacts: list[InteractionEvent] = []
    for i in range(4):
        contacts += [
            sent(Channel.whatsapp, WHATSAPP, f"wamid.{i}", i * 600),
            report(Channel.whatsapp, WHATSAPP, f"wamid.{i}", "delivered", i * 600 + 1),
        ]
        if i != 2:
            contacts.append(received(Channel.whatsapp, WHATSAPP, f"wamid.in.{i}", i * 600 + 9))
    contacts += [
        sent(Channel.sms, PHONE, "SM1", 3000),
        report(Channel.sms, PHONE, "SM1", "undelivered", 3001, "30003"),
        sent(Channel.sms, PHONE, "SM2", 3100),
        report(Channel.sms, PHONE, "SM2", "undelivered", 3101, "30003"),
        received(Channel.email, MAIL, "<m1@example.com>", 10),
        sent(Channel.email, MAIL, "<out1@hub.example>", 20),
        report(Channel.email, MAIL, "<out1@hub.example>", "failed", 21, "5.1.1"),
    ]
    return contacts


def follow(history: CustomerHistory, view: ReachabilityView) -> ReachabilityFollower:
    follower = ReachabilityFollower(history, view)
    follower.catch_up()
    return follower


def shown(view: ReachabilityView, customer_id: UUID) -> list[str]:
    return [
        f"{r.channel}{'' if r.reachable else ' (not reachable)'}: {', '.join(r.reasons)}"
        for r in view.ranking(customer_id)
    ]


def test_following_merging_unmerging_and_rebuilding_give_the_expected_rankings(hub: Hub) -> None:
    history, view = hub.history(), hub.reachability_view()
    history.record_interactions(anna_on_two_numbers_and_a_mailbox())
    follow(history, view)

    assert shown(view, ANNA) == [
        "whatsapp: replies within an hour (3 of 4), wrote to us 3 times",
        "sms: undelivered twice",
    ]
    assert shown(view, MAIL_ANNA) == ["email (not reachable): bounced, wrote to us"]

    history.merge(ANNA, MAIL_ANNA, by="agent", reason="same person")
    history.record_interactions(  # she opts out of marketing by SMS; the survivor records it
        [
            ConsentChanged(
                channel=Channel.sms,
                direction=Direction.inbound,
                party=PHONE,
                provider_ref="SM-stop",
                occurred_at=at(4000),
                purpose="marketing",
                granted=False,
                source="sms-keyword",
            )
        ]
    )
    follow(history, view)
    merged = [
        "whatsapp: replies within an hour (3 of 4), wrote to us 3 times",
        "email (not reachable): bounced, wrote to us",  # the not reachable: by name
        "sms (not reachable): opted out of marketing, undelivered twice",
    ]
    assert shown(view, ANNA) == merged
    assert shown(view, MAIL_ANNA) == merged  # a merged customer answers as its survivor

    # Rebuilt from zero, in one transaction: the same answers, at the same position.
    position = view.max_tracking_id(history.name)
    before = view.rankings([ANNA, MAIL_ANNA, customer_id_for("+49309999")])
    assert rebuild_reachability(history, view, batch_size=7) == position
    assert view.rankings([ANNA, MAIL_ANNA, customer_id_for("+49309999")]) == before
    assert before[customer_id_for("+49309999")] == []  # nobody: nothing known

    history.unmerge(ANNA, MAIL_ANNA, by="agent", reason="her sister's address")
    follow(history, view)
    assert shown(view, ANNA) == [merged[0], merged[2]]
    assert shown(view, MAIL_ANNA) == [merged[1]]
    assert view.skipped() == []


def test_a_running_follower_keeps_the_view_current_and_a_restart_goes_on_from_its_position(
    hub: Hub,
) -> None:
    history, view = hub.history(), hub.reachability_view()
    follower = hub.reachability_follower()
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    try:
        history.record_interactions(anna_on_two_numbers_and_a_mailbox()[:6])
        assert follower.wait_for(history.recorder.max_notification_id(), timeout=10)
        assert shown(view, ANNA) == ["whatsapp: replies within an hour (2 of 2), wrote to us twice"]
    finally:
        stop.set()
        hub.new_events.notify()
        thread.join(timeout=10)
    assert not thread.is_alive()

    history.record_interactions(anna_on_two_numbers_and_a_mailbox()[6:])
    again = follow(history, hub.reachability_view())  # a restarted process
    assert again.position == history.recorder.max_notification_id()
    assert shown(view, ANNA)[0] == "whatsapp: replies within an hour (3 of 4), wrote to us 3 times"


def test_an_event_the_view_cannot_apply_is_skipped_with_its_reason(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    history, view = hub.history(), hub.reachability_view()
    history.record_interactions(anna_on_two_numbers_and_a_mailbox()[:3])
    history.record_interactions([received(Channel.sms, PHONE, "SM-poison", 5)])
    poison = history.recorder.max_notification_id()
    history.record_interactions([received(Channel.sms, PHONE, "SM-fine", 6)])

    import projections.reachability as rules

    real = rules._contact

    def failing(state, event) -> None:
        if event.provider_ref == "SM-poison":
            raise ValueError("cannot read this one")
        real(state, event)

    monkeypatch.setattr(rules, "_contact", failing)
    follow(history, view)

    assert view.skipped() == [(poison, "ValueError: cannot read this one")]
    assert shown(view, ANNA) == [
        "whatsapp: replies within an hour (1 of 1), wrote to us",
        "sms: wrote to us",  # the fine one, after the skipped one
    ]


@pytest.fixture
def api(hub: Hub) -> Iterator[TestClient]:
    users = hub.user_directory()
    users.register("anna.agent", roles=[Role.agent])
    token = users.issue_token("anna.agent").token
    app = hub.api(
        view=hub.timeline_view(), publisher=InteractionPublisher("127.0.0.1:1"), users=users
    )
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def test_the_card_ranks_the_customers_channels(hub: Hub, api: TestClient) -> None:
    history = hub.history()
    history.record_interactions(anna_on_two_numbers_and_a_mailbox())
    anna = history.get_customer(ANNA)
    history.edit_profile(
        ANNA, {"preferred_channel": "sms"}, by="agent", expected_version=anna.profile_version
    )
    hub.timeline_follower().catch_up()
    follow(history, hub.reachability_view())

    card = api.get(f"/v1/customers/{ANNA}")

    assert card.status_code == 200, card.text
    reach = card.json()["reachability"]
    assert [(r["channel"], r["address"], r["reachable"]) for r in reach] == [
        ("sms", PHONE, True),  # her stated preference: first, as it is reachable
        ("whatsapp", WHATSAPP, True),
    ]
    assert reach[0]["reasons"] == ["preferred channel", "undelivered twice"]
    assert reach[1]["reasons"] == ["replies within an hour (3 of 4)", "wrote to us 3 times"]
    assert 0 <= reach[0]["score"] < reach[1]["score"] <= 1
    lookup = api.get("/v1/lookup", params={"address": PHONE}).json()
    assert lookup["customer"]["reachability"] is None  # on the card only


def test_the_profile_api_takes_a_written_channel_as_preferred_and_refuses_others(
    hub: Hub, api: TestClient
) -> None:
    hub.history().record_interactions([received(Channel.sms, PHONE, "SM-in", 0)])

    refused = api.patch(
        f"/v1/customers/{ANNA}", json={"expected_version": 0, "preferred_channel": "pigeon"}
    )
    taken = api.patch(
        f"/v1/customers/{ANNA}", json={"expected_version": 0, "preferred_channel": "whatsapp"}
    )

    assert refused.status_code == 422
    assert "preferred_channel" in refused.text
    assert taken.status_code == 200, taken.text
    assert taken.json()["profile"]["preferred_channel"] == "whatsapp"
