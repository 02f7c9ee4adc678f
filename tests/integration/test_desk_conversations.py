"""Contacts recorded in the customer history open and join conversations through the desk
follower: as the rules say, exactly once — with two followers at once, or after a restart.
On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import (
    CallRinging,
    Channel,
    DeliveryStatusChanged,
    Direction,
    MessageReceived,
    MessageSent,
    VoicemailRecorded,
)
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.desk.follower import TRACKING_NAME, DeskFollower
from services.domain import customer_id_for
from services.domain.desk import CustomerDesk, Status

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHONE = "+4930123456789"
MAIL = "ann@example.com"


@pytest.fixture
def hub(store_url: str, tmp_path: Path) -> Hub:
    return bootstrap(Settings(store=store_url, data_dir=tmp_path / "var"))


def sms(ref: str, at: datetime, *, party: str = PHONE) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms, party=party, provider_ref=ref, occurred_at=at, body=f"sms {ref}"
    )


def mail(ref: str, at: datetime, *refs: str) -> MessageReceived:
    return MessageReceived(
        channel=Channel.email,
        party=MAIL,
        provider_ref=ref,
        occurred_at=at,
        body="about my order",
        subject="Order 4711",
        thread_ref=refs[0] if refs else ref,
        in_reply_to=refs[-1] if refs else None,
        references=list(refs),
    )


def traffic() -> list:
    """A morning's contacts of two customers, in the order the recorder stored them."""
    return [
        sms("SM1", T0),
        sms("SM2", T0 + timedelta(hours=2)),
        MessageSent(
            channel=Channel.sms, party=PHONE, provider_ref="SM3", occurred_at=T0, body="on it"
        ),
        DeliveryStatusChanged(
            channel=Channel.sms,
            direction=Direction.outbound,
            party=PHONE,
            provider_ref="SM3-delivered",
            occurred_at=T0,
            message_ref="SM3",
            status="delivered",
        ),
        sms("SM4", T0 + timedelta(days=2)),  # after the quiet gap: a new chat
        CallRinging(
            direction=Direction.inbound,
            party=PHONE,
            provider_ref="CA1",
            call_id="CA1",
            occurred_at=T0,
        ),
        VoicemailRecorded(
            direction=Direction.inbound,
            party=PHONE,
            provider_ref="RE1",
            call_id="CA1",
            occurred_at=T0 + timedelta(minutes=1),
            recording_url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            duration_s=12,
        ),
        mail("<m1@example.com>", T0),
        mail("<m2@example.com>", T0 + timedelta(hours=1), "<m1@example.com>"),
        mail("<m3@example.com>", T0 + timedelta(hours=2), "<unknown@example.com>"),
    ]


def joins(hub: Hub) -> Counter[str]:
    """How often each contact joined a conversation, from the stored desk events."""
    history = hub.history(cached=False)
    rows = history.recorder.select_notifications(
        start=None, limit=100_000, topics=[CustomerDesk.ContactJoined.TOPIC]
    )
    return Counter(history.mapper.to_domain_event(n).contact_key for n in rows)


def test_recorded_contacts_open_and_join_conversations_as_the_rules_say(hub: Hub) -> None:
    hub.history().record_interactions(traffic())

    hub.desk_follower().catch_up()

    desk = hub.desk()
    by_kind = Counter(
        (c.channel, c.contact_count) for c in desk.conversations(customer_id_for(PHONE))
    )
    # SM1, SM2 and our SM3 in one chat; SM4 after the gap alone; the call with its voicemail.
    assert by_kind == Counter({("sms", 3): 1, ("sms", 1): 1, ("voice", 2): 1})
    threads = desk.conversations(customer_id_for(MAIL))
    assert sorted(c.contact_count for c in threads) == [1, 2]  # m1+m2, and m3 on its own
    assert all(c.status == Status.open for c in threads)
    assert "delivery.status.v1|sms|SM3-delivered" not in joins(hub)


def test_a_contact_on_a_resolved_conversation_reopens_it_as_the_system(hub: Hub) -> None:
    history, follower, desk = hub.history(), hub.desk_follower(), hub.desk()
    history.record_interactions([sms("SM1", T0)])
    follower.catch_up()
    (chat,) = desk.conversations(customer_id_for(PHONE))
    desk.change_status(chat.conversation_id, Status.resolved, by="anna", expected_version=1)

    history.record_interactions([sms("SM2", T0 + timedelta(hours=3))])
    follower.catch_up()

    reopened = desk.conversation(chat.conversation_id)
    assert (reopened.status, reopened.contact_count, reopened.version) == (Status.open, 2, 3)
    stored = hub.history(cached=False)
    changes = [
        stored.mapper.to_domain_event(n)
        for n in stored.recorder.select_notifications(
            start=None, limit=100, topics=[CustomerDesk.ConversationStatusChanged.TOPIC]
        )
    ]
    assert [(c.to_status, c.by) for c in changes] == [("resolved", "anna"), ("open", "system")]


def test_two_followers_at_once_join_each_contact_exactly_once(hub: Hub) -> None:
    contacts = [sms(f"SM{i}", T0 + timedelta(minutes=i)) for i in range(60)]
    contacts += [sms(f"OT{i}", T0, party=f"+49301111{i:04d}") for i in range(60)]
    hub.history().record_interactions(contacts)
    followers = [
        DeskFollower(hub.history(cached=False), quiet_gap=timedelta(hours=24), batch_size=7)
        for _ in range(2)
    ]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def follow(follower: DeskFollower) -> None:
        start.wait()
        try:
            follower.catch_up()
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=follow, args=(f,)) for f in followers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    counted = joins(hub)
    assert len(counted) == 120 and set(counted.values()) == {1}
    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    assert chat.contact_count == 60


def test_a_restarted_follower_continues_where_the_stored_position_is(hub: Hub) -> None:
    hub.history().record_interactions([sms(f"SM{i}", T0 + timedelta(minutes=i)) for i in range(10)])
    first = DeskFollower(hub.history(cached=False), quiet_gap=timedelta(hours=24), batch_size=4)
    first.run_once()  # then "killed"

    again = hub.desk_follower()
    assert again.position == first.position == hub.history().recorder.max_tracking_id(TRACKING_NAME)
    again.catch_up()
    again.catch_up()

    assert set(joins(hub).values()) == {1} and len(joins(hub)) == 10


def test_concurrent_status_changes_from_one_version_keep_one_and_refuse_the_other(
    hub: Hub,
) -> None:
    from services.desk.service import ConversationChanged

    hub.history().record_interactions([sms("SM1", T0)])
    hub.desk_follower().catch_up()
    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    desks = {agent: hub.desk() for agent in ("anna", "ben")}  # two API processes, say
    for desk in desks.values():
        assert desk.history is not None  # opened before the race: the race is the change
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def assign(agent: str) -> None:
        start.wait()
        try:
            desks[agent].change_status(
                chat.conversation_id, Status.assigned, by=agent, assignee=agent, expected_version=1
            )
            outcomes.append(agent)
        except ConversationChanged:
            outcomes.append("refused")

    threads = [threading.Thread(target=assign, args=(a,)) for a in ("anna", "ben")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sorted(outcomes)[-1] == "refused" and len(outcomes) == 2
    winner = next(o for o in outcomes if o != "refused")
    now = hub.desk().conversation(chat.conversation_id)
    assert (now.assignee, now.version) == (winner, 2)


def test_a_busy_desk_is_snapshotted_once_and_its_follower_never_conflicts(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """A customer with hundreds of contacts: its desk crosses the snapshot interval inside a
    batch, and the history's save snapshots it (once: a second snapshot of the same version
    was a unique-key failure after the commit, logged as a conflict)."""
    import logging

    from services.domain.desk import desk_id_for

    caplog.set_level(logging.INFO)
    history = hub.history()
    follower = hub.desk_follower()
    for start in range(0, 250, 50):
        history.record_interactions(
            [sms(f"SM-busy-{i}", T0 + timedelta(minutes=i)) for i in range(start, start + 50)]
        )
        follower.run_once()
    follower.catch_up()
    assert "conflicted" not in caplog.text
    desk_id = desk_id_for(customer_id_for(PHONE))
    assert list(history.snapshots.get(desk_id))  # loads from a snapshot
    (chat,) = hub.desk().conversations(customer_id_for(PHONE))
    assert chat.contact_count == 250
