"""A view never stops on one event, on SQLite and PostgreSQL.

An agent's timeline that silently stops updating is worse than one with a gap that says so:
an event the view cannot apply is recorded as skipped, with its reason, and everything after
it still shows.  When the view's database does not answer, nothing is skipped: the batch
waits and is applied once it answers again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import Channel, MessageReceived
from projections.follower import TimelineFollower
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PARTY = "+493055501234"


def sms(ref: str, body: str, minutes: int = 0) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms,
        party=PARTY,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=body,
    )


def test_a_body_stored_with_nul_shows_on_the_timeline_with_a_replacement_character(
    hub_settings: Settings,
) -> None:
    history = bootstrap(hub_settings).history()
    # Stored before the contracts replaced NUL: the store holds it, PostgreSQL's text cannot.
    legacy = sms("SM-nul", "x").model_copy(update={"body": "order\x00 4711"})
    history.record_interactions([legacy, sms("SM-after", "thanks", minutes=1)])
    view = bootstrap(hub_settings).timeline_view()
    TimelineFollower(history, view).catch_up()

    entries = view.timeline(view.customer_for_address(PARTY))
    assert [e.summary for e in entries] == ["thanks", "order\ufffd 4711"]
    assert entries[1].payload["body"] == "order\ufffd 4711"
    assert view.skipped() == []


def test_an_event_the_view_cannot_apply_is_skipped_with_its_reason_and_later_ones_show(
    hub_settings: Settings,
) -> None:
    history = bootstrap(hub_settings).history()
    history.record_interactions(
        [sms("SM-1", "first"), sms("SM-poison", "cannot be shown", 1), sms("SM-3", "third", 2)]
    )
    view = bootstrap(hub_settings).timeline_view()
    apply = view.apply

    def apply_unless_poisoned(changes, tracking):
        if any(e.provider_ref == "SM-poison" for e in changes.entries):
            raise ValueError("this view has a bug for this event")
        apply(changes, tracking)

    view.apply = apply_unless_poisoned  # type: ignore[method-assign]
    follower = TimelineFollower(history, view)
    follower.catch_up()

    customer = view.customer_for_address(PARTY)
    assert [e.summary for e in view.timeline(customer)] == ["third", "first"]
    (skipped,) = view.skipped()
    assert "this view has a bug for this event" in skipped.reason
    assert follower.position == history.recorder.max_notification_id()
    # the skip is durable: a restarted follower does not try it again
    assert TimelineFollower(history, view).position == follower.position


def test_a_view_that_does_not_answer_is_retried_not_skipped(hub_settings: Settings) -> None:
    history = bootstrap(hub_settings).history()
    history.record_interactions([sms("SM-a", "hello")])
    view = bootstrap(hub_settings).timeline_view()
    follower = TimelineFollower(history, view)
    apply, answers = view.apply, view.max_tracking_id

    def down(*args, **kwargs):
        raise ConnectionError("database is down")

    view.apply = down  # type: ignore[method-assign]
    view.max_tracking_id = down  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        follower.run_once()
    view.apply, view.max_tracking_id = apply, answers  # type: ignore[method-assign]

    follower.run_once()
    assert follower.position == history.recorder.max_notification_id()
    assert view.skipped() == []
    assert [e.summary for e in view.timeline(view.customer_for_address(PARTY))] == ["hello"]


def test_two_followers_of_one_view_neither_skip_nor_double(hub_settings: Settings) -> None:
    """A second follower on the same view (a second hub process, a test's own catch-up)
    finds its batch already applied by the other: it continues after it, skipping nothing."""
    history = bootstrap(hub_settings).history()
    history.record_interactions([sms(f"SM-{i}", f"message {i}", i) for i in range(30)])
    first = TimelineFollower(history, bootstrap(hub_settings).timeline_view(), batch_size=7)
    late = TimelineFollower(history, bootstrap(hub_settings).timeline_view(), batch_size=5)
    assert first.position == late.position == 0
    first.run_once()  # applies 1..7; late still believes the view is empty
    late.catch_up()
    first.catch_up()

    view = bootstrap(hub_settings).timeline_view()
    entries = view.timeline(view.customer_for_address(PARTY))
    assert sorted(e.summary for e in entries) == sorted(f"message {i}" for i in range(30))
    assert view.skipped() == []
    assert first.position == late.position == history.recorder.max_notification_id()


def test_a_commit_in_this_process_wakes_the_follower_instead_of_waiting_for_its_poll(
    hub_settings: Settings,
) -> None:
    """The card is current within milliseconds of a commit: the follower sleeps until the hub's
    store parts say they saved something (here it would otherwise poll only every 30 s)."""
    import threading

    hub = bootstrap(hub_settings)
    follower = TimelineFollower(
        hub.history(), hub.timeline_view(), idle_wait=30.0, new_events=hub.new_events
    )
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for ref in ("SM-first", "SM-wake"):  # the second finds the follower asleep
            outcome = hub.history().record_interactions([sms(ref, "ring ring")])
            assert follower.wait_for(outcome.notification_ids[-1], timeout=10), "not woken"
    finally:
        stop.set()
        hub.new_events.notify()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_older_view_is_rebuilt_and_a_newer_one_is_left_alone(hub_settings: Settings) -> None:
    """After an upgrade the view rebuilds itself from the store; a process of an older release
    that opens the upgraded view refuses to touch it instead of undoing the upgrade."""
    from projections.timeline import ViewFromTheFuture
    from projections.timeline_sqlite import SQLiteTimelineView

    hub = bootstrap(hub_settings)
    history = hub.history()
    history.record_interactions([sms("SM-1", "hello")])
    TimelineFollower(history, hub.timeline_view()).catch_up()
    table = (
        "view_schema"
        if isinstance(hub.timeline_view(), SQLiteTimelineView)
        else ("timeline_view_schema")
    )

    def set_version(version: int) -> None:
        with hub.timeline_view().datastore.transaction(commit=True) as c:
            c.execute(f"UPDATE {table} SET version = {version}")

    set_version(1)  # built by an older release
    view = hub.timeline_view()
    assert view.customer_for_address(PARTY) is None and view.max_tracking_id("switchboard") is None
    TimelineFollower(history, view).catch_up()
    assert view.customer_for_address(PARTY) is not None

    set_version(99)  # built by a newer one
    with pytest.raises(ViewFromTheFuture, match="newer Switchboard"):
        hub.timeline_view()
