"""The desk never stops on one event, on SQLite and PostgreSQL.

A contact the desk cannot place (a bug in placing it, a decision it cannot apply) is skipped
with a record of why, saved with the follower's position in one transaction; every contact
after it is still placed.  While the store does not answer, nothing is skipped: the batch waits.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import OperationalError

import services.desk.follower as desk_follower
from contracts import Channel, ContactRouted, MessageReceived, RouteTarget
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.desk.follower import TOPICS, DeskFollower
from services.domain import customer_id_for
from services.domain.desk import CustomerDesk

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHONE = "+4930123456789"


@pytest.fixture
def hub(store_url: str, tmp_path: Path) -> Hub:
    return bootstrap(Settings(store=store_url, data_dir=tmp_path / "var"))


def sms(ref: str, minutes: int) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms,
        party=PHONE,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=f"sms {ref}",
    )


def routed(ref: str, agent: str, minutes: int) -> ContactRouted:
    return ContactRouted(
        channel=Channel.sms,
        party=PHONE,
        contact_ref=ref,
        provider_ref=f"{ref}:routed:{agent}",
        occurred_at=T0 + timedelta(minutes=minutes),
        target=RouteTarget(kind="agent", queue="support", agent=agent),
        rule="skills",
        reason=f"{agent} speaks German",
    )


def contacts_stored(hub: Hub) -> list[int]:
    """The notification ids of the recorded contacts, in order (what the desk follows)."""
    history = hub.history(cached=False)
    rows = history.recorder.select_notifications(start=None, limit=1000, topics=TOPICS)
    return [n.id for n in rows]


def follower(hub: Hub, **kwargs) -> DeskFollower:
    return DeskFollower(hub.history(cached=False), quiet_gap=timedelta(hours=24), **kwargs)


@pytest.fixture
def poisoned_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The desk has a bug for the contact ``SM-poison``: turning it into a contact fails."""
    contact_of = desk_follower.contact_of

    def contact_of_unless_poisoned(notification_id, recorded):
        if recorded.provider_ref == "SM-poison":
            raise ValueError("this desk has a bug for this contact")
        return contact_of(notification_id, recorded)

    monkeypatch.setattr(desk_follower, "contact_of", contact_of_unless_poisoned)


def test_a_contact_the_desk_cannot_place_is_skipped_with_its_reason_and_later_ones_are_placed(
    hub: Hub, poisoned_contact: None, caplog: pytest.LogCaptureFixture
) -> None:
    history = hub.history()
    history.record_interactions(
        [sms("SM-1", 0), routed("SM-1", "ann", 1), sms("SM-poison", 2), sms("SM-3", 3)]
    )
    poison_id = contacts_stored(hub)[2]

    desk = follower(hub)
    with caplog.at_level(logging.ERROR, logger="services.desk.follower"):
        desk.catch_up()

    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    assert chat.contact_count == 2  # SM-1 and SM-3: the poison is not in it
    assert chat.assignee == "ann"  # the routing decision in the same batch still applied
    (skipped,) = desk.skipped()
    assert skipped.notification_id == poison_id
    assert "ValueError: this desk has a bug for this contact" in skipped.reason
    assert desk.skips == 1
    assert any(f"skipped stored event {poison_id}" in r.message for r in caplog.records)
    assert desk.position == contacts_stored(hub)[-1]
    # durable: a restarted follower neither tries it again nor places anything twice
    again = follower(hub)
    assert again.position == desk.position
    assert again.catch_up() == 0
    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    assert chat.contact_count == 2


def test_a_routing_decision_the_desk_cannot_apply_is_skipped_and_the_rest_placed(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    assign_routed = CustomerDesk.assign_routed

    def assign_unless_broken(self, contact_key, agent, **kwargs):
        if agent == "broken":
            raise KeyError("contact_ref")
        return assign_routed(self, contact_key, agent, **kwargs)

    monkeypatch.setattr(CustomerDesk, "assign_routed", assign_unless_broken)
    history = hub.history()
    history.record_interactions(
        [sms("SM-1", 0), routed("SM-1", "broken", 1), sms("SM-2", 2), routed("SM-1", "ann", 3)]
    )

    desk = follower(hub, batch_size=3)  # the failing batch is placed again event by event
    desk.catch_up()

    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    assert chat.contact_count == 2 and chat.assignee == "ann"
    (skipped,) = desk.skipped()
    assert "KeyError" in skipped.reason
    assert desk.position == contacts_stored(hub)[-1]


def test_while_the_store_does_not_answer_nothing_is_skipped(
    hub: Hub, poisoned_contact: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = hub.history()
    history.record_interactions([sms("SM-1", 0), sms("SM-poison", 1), sms("SM-3", 2)])
    desk = follower(hub)
    recorder = desk.history.recorder

    def down(*args, **kwargs):
        raise OperationalError("the database is down")

    with monkeypatch.context() as patched:
        patched.setattr(recorder, "max_tracking_id", down)
        with pytest.raises(OperationalError):
            desk.run_once()
    assert desk.position == 0 and desk.skipped() == [] and desk.skips == 0

    desk.catch_up()  # it answers again: only the poison is skipped
    assert [s.notification_id for s in desk.skipped()] == [contacts_stored(hub)[1]]
    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    assert chat.contact_count == 2


def test_a_stored_nul_in_the_reason_is_recorded_on_every_store(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception's text may quote the event; PostgreSQL's text cannot hold NUL."""
    contact_of = desk_follower.contact_of

    def contact_of_quoting(notification_id, recorded):
        if recorded.provider_ref == "SM-poison":
            raise ValueError("cannot read 'order\x00 4711'")
        return contact_of(notification_id, recorded)

    monkeypatch.setattr(desk_follower, "contact_of", contact_of_quoting)
    hub.history().record_interactions([sms("SM-poison", 0), sms("SM-2", 1)])
    desk = follower(hub)
    desk.catch_up()
    (skipped,) = desk.skipped()
    assert "order\ufffd 4711" in skipped.reason
