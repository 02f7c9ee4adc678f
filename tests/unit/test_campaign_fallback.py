"""Fallback after a hard failure: which failures are hard, the route kept with the plan, and
the follower's decisions (which failures it follows, what it holds, when nothing is left)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from channels.outbound import PermanentSendError, SendRefused, TransientSendError
from services.campaigns.fallback import (
    Failure,
    FallbackFollower,
    FallbackIndex,
    FallbackProgress,
    next_send,
    settled,
)
from services.campaigns.limits import RateLimits
from services.campaigns.plan import CampaignPlanner
from services.campaigns.recipients import PlannedSend, send_id
from services.campaigns.recipients_io import dump_planned, load_planned
from services.campaigns.runner import RunnerKafka
from services.campaigns.tracking import CampaignSend, funnel_moments
from services.domain.outbound import HARD_FAILURES, OutboundCommand
from services.history.ledger import OutboundLedger
from services.outbound.dispatcher import failure_kind
from tests.unit.test_campaign_plan import NOW, ChannelReach, campaign, customer

THREE = ("sms", "email", "whatsapp")


def popo_ledger() -> OutboundLedger:
    return OutboundLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def planned(channels=("sms", "email"), *, fallback=True, start=NOW, end=None, **profile):
    c = campaign(channels, fallback=fallback, start=start, end=end)
    row = customer("+4930901820", "ann@example.com", "whatsapp:+4930901820", **profile)
    ranking = [ChannelReach(ch, None, True, 1.0 - i / 10) for i, ch in enumerate(channels)]
    planner = CampaignPlanner(c, now=start)
    plan = planner.plan([row], {row.customer_id: ranking}, {})
    return c, planner, plan.sends[0]


class Control:
    def __init__(self, state: str = "running") -> None:
        self.current = state

    def state(self, campaign_id):
        return self.current


def follower(c, sends, ledger, *, now=lambda: datetime.now(UTC)) -> FallbackFollower:
    c.schedule(now=c.starts_at, by="carla")
    c.start(now=c.starts_at, by="carla")
    return FallbackFollower(
        c,
        sends,
        ledger=ledger,
        control=Control(),
        limits=RateLimits(),
        kafka=RunnerKafka(bootstrap="127.0.0.1:1"),  # never started here
        now=now,
    )


def fail(
    ledger: OutboundLedger, send: PlannedSend, kind: str, step: int = 0, channel: str = ""
) -> None:
    command_id = send_id(send.campaign_id, send.customer_id, step)
    claimed = ledger.claim(command_id, channel=channel or send.channel, to=send.address)
    ledger.record_failed(claimed, "no", None, kind=kind)  # type: ignore[arg-type]


# -- which failures are hard -------------------------------------------------------------


def test_a_rejection_or_retries_used_up_are_hard_failures_a_refusal_is_not() -> None:
    assert failure_kind(PermanentSendError("invalid number", code="21211")) == "rejected"
    assert failure_kind(TransientSendError("gave up after 6 attempts")) == "gave_up"
    assert failure_kind(SendRefused("opted out of SMS (STOP)")) == "refused"
    assert {"rejected", "gave_up", "no_sender"} == HARD_FAILURES
    assert "refused" not in HARD_FAILURES and "unknown" not in HARD_FAILURES


def test_a_failure_recorded_before_kinds_existed_loads_as_unknown() -> None:
    ledger = popo_ledger()
    command = ledger.claim("c-1", channel="sms", to="+4930901820")
    command.mark_failed(reason="invalid number", code="21211", kind="rejected")
    event = command.pending_events[-1]
    stored = ledger.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    assert state.pop("kind") == "rejected" and state.pop("class_version") == 2
    old = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=json.dumps(state).encode(),
    )
    loaded = ledger.mapper.to_domain_event(old)
    assert isinstance(loaded, OutboundCommand.Failed)
    assert (loaded.kind, loaded.code, loaded.reason) == ("unknown", "21211", "invalid number")


# -- the route kept with the plan --------------------------------------------------------


def test_the_route_is_kept_in_the_plan_file_and_names_the_same_fallback() -> None:
    c, planner, first = planned(THREE)
    assert first.route is not None
    assert [ch for ch, _ in first.route.options] == ["email", "whatsapp"]
    again = load_planned(dump_planned(first))
    assert again.route == first.route and again == first

    later = NOW + timedelta(minutes=5)
    fresh = CampaignPlanner(c, now=NOW)  # another process, after a restart
    one = planner.fallback(first, "sms", now=later)
    two = fresh.fallback(again, "sms", now=later)
    assert one is not None and two is not None
    assert (one.step, one.channel, one.command) == (two.step, two.channel, two.command)
    assert one.command.command_id == send_id(c.id, first.customer_id, 1)
    # Step 2 follows step 1, on the channel after it.
    after_email = fresh.fallback(two, "email", now=later)
    assert after_email is not None
    assert (after_email.step, after_email.channel) == (2, "whatsapp")
    assert fresh.fallback(after_email, "whatsapp", now=later) is None


def test_a_plan_line_written_before_routes_were_kept_has_no_fallback() -> None:
    _c, planner, first = planned()
    line = json.loads(dump_planned(first))
    del line["fallback"]
    old = load_planned(json.dumps(line))
    assert old.route is None
    assert planner.fallback(old, "sms") is None


def test_without_fallback_no_route_is_planned() -> None:
    _, _, first = planned(fallback=False)
    assert first.route is None and "fallback" not in dump_planned(first)


def test_a_fallback_in_the_recipients_quiet_hours_waits_for_the_morning() -> None:
    _c, planner, first = planned(time_zone="Europe/Berlin")
    night = datetime(2026, 5, 4, 21, 30, tzinfo=UTC)  # 23:30 in Berlin
    nxt = planner.fallback(first, "sms", now=night)
    assert nxt is not None and nxt.not_before == datetime(2026, 5, 5, 6, 0, tzinfo=UTC)


def test_no_fallback_after_the_schedule_window_ends() -> None:
    _c, planner, first = planned(end=NOW + timedelta(hours=2))
    assert planner.fallback(first, "sms", now=NOW + timedelta(hours=3)) is None


# -- the follower's decisions ------------------------------------------------------------


def test_the_follower_follows_hard_failures_of_its_own_sends_only() -> None:
    # The ledger stamps failures with the real time: a window around it.
    c, _, first = planned(THREE, start=datetime.now(UTC))
    others = [replace(first, customer_id=uuid4()) for _ in range(3)]
    others = [
        replace(
            s,
            command=s.command.model_copy(update={"command_id": send_id(c.id, s.customer_id, 0)}),
        )
        for s in others
    ]
    refused, sent, foreign = others
    ledger = popo_ledger()
    f = follower(c, [first, refused, sent], ledger)
    index = FallbackIndex(f.plan)
    fail(ledger, first, "rejected")
    fail(ledger, refused, "refused")
    ledger.record_sent(ledger.claim(sent.command.command_id, channel="sms", to=sent.address), "SM1")
    fail(ledger, replace(foreign, campaign_id=uuid4()), "rejected")  # another campaign's
    fail(ledger, first, "rejected", step=1, channel="email")  # its e-mail fallback failed too

    failures, position, full = f._read_failures(index, 0)

    assert position == ledger.recorder.max_notification_id() and not full
    assert [(x.command_id, x.channel) for x in failures] == [
        (first.command.command_id, "sms"),
        (send_id(c.id, first.customer_id, 1), "email"),  # the channel from the ledger
    ]
    steps = [next_send(f.planner, index, x) for x in failures]
    assert [(s.step, s.channel) for s in steps if s] == [(1, "email"), (2, "whatsapp")]
    # Read from where it left off: nothing more.
    assert f._read_failures(index, position)[0] == []


def test_a_fallback_not_due_is_held_and_the_next_due_one_is_not_held_back() -> None:
    c, _, first = planned()
    ledger = popo_ledger()
    clock = [datetime(2026, 5, 4, 12, 0, tzinfo=UTC)]
    f = follower(c, [first], ledger, now=lambda: clock[0])
    index = FallbackIndex([first])
    morning = next_send(
        f.planner, index, Failure(first.command.command_id, "sms", clock[0] + timedelta(hours=10))
    )
    noon = next_send(f.planner, index, Failure(first.command.command_id, "sms", clock[0]))
    assert morning is not None and noon is not None and morning.not_before > clock[0]
    held = [(Failure("a", "sms", clock[0]), morning), (Failure("b", "sms", clock[0]), noon)]
    throttle = RateLimits().buckets(0.0)

    due, wait = f._due(held, throttle)

    assert [s for _, s in due] == [noon] and [s for _, s in held] == [morning]
    assert wait == pytest.approx((morning.not_before - clock[0]).total_seconds())
    clock[0] = morning.not_before
    due, _ = f._due(held, throttle)
    assert [s for _, s in due] == [morning] and held == []


def test_settled_once_every_recipient_was_sent_refused_or_has_nothing_left() -> None:
    _c, planner, first = planned(start=datetime.now(UTC))  # the ledger's times are real
    ledger = popo_ledger()
    index = FallbackIndex([first])
    step0, step1 = index.steps[0]

    def outcomes():
        return ledger.outcomes(index.steps[0])

    assert not settled(planner, index, outcomes())  # not dispatched yet
    claimed = ledger.claim(step0, channel="sms", to=first.address)
    assert not settled(planner, index, outcomes())  # being sent
    ledger.record_failed(claimed, "invalid number", "21211", kind="rejected")
    assert not settled(planner, index, outcomes())  # its e-mail is to come
    ledger.record_sent(ledger.claim(step1, channel="email", to="ann@example.com"), "<m@x>")
    assert settled(planner, index, outcomes())


def test_a_refused_send_settles_the_recipient() -> None:
    _c, planner, first = planned(start=datetime.now(UTC))
    ledger = popo_ledger()
    index = FallbackIndex([first])
    fail(ledger, first, "refused")
    assert settled(planner, index, ledger.outcomes(index.steps[0]))


def test_the_progress_record_round_trips() -> None:
    cid = uuid4()
    progress = FallbackProgress(cid, 42, 7, [Failure("c-1", "sms", NOW)], "following")
    again = FallbackProgress.load(progress.dump())
    assert again == progress
    assert FallbackProgress.key_of(cid) == f"{cid}:fallback".encode()


# -- tracking ----------------------------------------------------------------------------


def test_a_recipient_reached_by_a_fallback_counts_as_sent_not_failed() -> None:
    ann, bob, cy = uuid4(), uuid4(), uuid4()
    t = NOW
    sends = [
        CampaignSend(ann, "sms", "ann-0"),
        CampaignSend(ann, "email", "ann-1", 1),
        CampaignSend(bob, "sms", "bob-0"),
        CampaignSend(bob, "email", "bob-1", 1),
        CampaignSend(cy, "sms", "cy-0"),
    ]
    outcomes = {
        "ann-0": ("failed", t, None),
        "ann-1": ("sent", t + timedelta(minutes=1), "<m1>"),
        "bob-0": ("failed", t, None),
        "bob-1": ("failed", t + timedelta(minutes=1), None),
        "cy-0": ("sent", t, "SM1"),
    }
    moments = funnel_moments(
        uuid4(), sends, outcomes=outcomes, statuses={}, inbound=[], campaign_messages=[]
    )
    figures = moments.figures(produced=3)
    assert (figures.queued, figures.sent, figures.failed) == (3, 2, 1)
    assert moments.failed == [t + timedelta(minutes=1)]  # bob, when his last step failed
