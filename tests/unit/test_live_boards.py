"""The gateway's live state, one event at a time: who holds what, what pops where, the floor's
figures, and the console's signed session."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

from contracts import (
    AgentPresenceChanged,
    CallAnswered,
    CallEnded,
    CallMissed,
    ContactRouted,
    dump_interaction,
)
from contracts.routing import RouteTarget
from services.gateway.floor import Floor
from services.gateway.pops import STREAM_QUEUE, PopBoard
from services.gateway.session import SessionCodec
from services.router.board import AgentBoard
from services.router.decide import Presence
from services.router.feed import RoutingFeed

NOW = datetime.now(UTC).replace(microsecond=0)
CALLER = "+4930123456789"


@pytest.fixture(autouse=True)
def _now(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOW is when the test runs, not when the module was imported: the boards ignore calls
    routed longer ago than a ring can last, and a long suite reaches these tests late."""
    monkeypatch.setattr(sys.modules[__name__], "NOW", datetime.now(UTC).replace(microsecond=0))


def routed(
    ref: str, *, agent: str | None = None, queue: str = "support", attempt: int = 1, at=None
) -> ContactRouted:
    target = RouteTarget(kind="agent" if agent else "queue", queue=queue, agent=agent)
    return ContactRouted(
        channel="voice",
        party=CALLER,
        contact_ref=ref,
        provider_ref=f"{ref}:routed:{attempt}",
        attempt=attempt,
        occurred_at=at or NOW,
        target=target,
        rule="skills" if agent else "queued",
        reason="because",
        customer_id=uuid4(),
    )


def presence(agent: str, state: str, at=None) -> AgentPresenceChanged:
    return AgentPresenceChanged(agent=agent, presence=state, occurred_at=at or NOW, by=agent)


def answered(ref: str, agent: str, at=None) -> CallAnswered:
    return CallAnswered(
        direction="inbound",
        party=CALLER,
        call_id=ref,
        provider_ref=f"{ref}:a",
        occurred_at=at or NOW,
        agent=agent,
    )


def ended(ref: str, seconds: float, at=None) -> CallEnded:
    return CallEnded(
        direction="inbound",
        party=CALLER,
        call_id=ref,
        provider_ref=f"{ref}:e",
        occurred_at=at or NOW,
        duration_s=seconds,
    )


def missed(ref: str, reason: str = "no-answer", at=None) -> CallMissed:
    return CallMissed(
        direction="inbound",
        party=CALLER,
        call_id=ref,
        provider_ref=f"{ref}:m",
        occurred_at=at or NOW,
        reason=reason,
    )


# -- the agents' board --------------------------------------------------------------------


def test_a_call_is_held_by_the_agent_it_was_routed_to_until_it_ends() -> None:
    board = AgentBoard()
    board.presence_changed(presence("ann", "available"))
    board.routed(routed("CA1", agent="ann"))
    assert board.state("ann").load == {"voice": 1}
    board.routed(routed("CA1", agent="ann"))  # read back from Kafka: no second hold
    assert board.state("ann").load == {"voice": 1}
    board.call_event(ended("CA1", 30))
    assert board.state("ann").load == {}


def test_routed_on_moves_the_hold_and_an_older_presence_does_not_win() -> None:
    board = AgentBoard()
    board.routed(routed("CA1", agent="ann"))
    board.routed(routed("CA1", agent="ben", attempt=2))
    assert (board.state("ann").load, board.state("ben").load) == ({}, {"voice": 1})
    board.presence_changed(presence("ann", "away", at=NOW))
    board.presence_changed(presence("ann", "available", at=NOW - timedelta(seconds=5)))
    assert board.state("ann").presence == Presence.away


def test_an_agent_who_makes_themselves_available_holds_no_call_whose_end_was_lost() -> None:
    board = AgentBoard()
    board.routed(routed("CA-lost", agent="ann", at=NOW - timedelta(minutes=30)))
    assert board.state("ann").load == {"voice": 1}
    board.presence_changed(presence("ann", "available", at=NOW))  # by ann herself
    assert board.state("ann").load == {}
    # Read back out of order at a restart: the old decision still holds nothing ...
    board.routed(routed("CA-lost", agent="ann", attempt=2, at=NOW - timedelta(minutes=29)))
    assert board.state("ann").load == {}
    # ... while a call routed after she said so does, and a supervisor's change frees nothing.
    board.routed(routed("CA-new", agent="ann", at=NOW + timedelta(seconds=1)))
    by_supervisor = AgentPresenceChanged(
        agent="ann", presence="available", occurred_at=NOW + timedelta(seconds=2), by="sue"
    )
    board.presence_changed(by_supervisor)
    assert board.state("ann").load == {"voice": 1}


def test_a_decision_from_hours_ago_holds_nobody() -> None:
    board = AgentBoard()
    board.routed(routed("CA-old", agent="ann", at=NOW - timedelta(hours=5)))
    assert board.state("ann").load == {}


# -- screen pops --------------------------------------------------------------------------


def pops(queues: dict[str, list[str]] | None = None) -> PopBoard:
    async def card_of(customer_id) -> dict:
        return {"customer_id": str(customer_id), "name": "Anna Berg"}

    serving = queues or {"support": ["ann", "ben"]}
    return PopBoard(agents_of_queue=lambda q: serving.get(q, []), card_of=card_of)


def drain(stream) -> list[dict]:
    out = []
    while not stream.messages.empty():
        out.append(stream.messages.get_nowait())
    return out


async def test_a_pop_goes_to_the_routed_agent_only_and_its_updates_follow() -> None:
    board = pops()
    ann = board.connect("ann", {"kind": "hello"})
    ben = board.connect("ben", {"kind": "hello"})
    await board.routed(routed("CA1", agent="ann"))
    got = drain(ann)
    assert [m["kind"] for m in got] == ["hello", "pop"]
    assert got[1]["pop"]["card"]["name"] == "Anna Berg"
    assert [m["kind"] for m in drain(ben)] == ["hello"]
    board.call_event(answered("CA1", "ann"))
    assert [(m["kind"], m["pop"]["state"]) for m in drain(ann)] == [("pop.update", "answered")]
    assert drain(ben) == []


async def test_a_queued_call_pops_for_everyone_serving_the_queue_and_a_reroute_withdraws_it() -> (
    None
):
    board = pops()
    ann = board.connect("ann", {"kind": "hello"})
    ben = board.connect("ben", {"kind": "hello"})
    await board.routed(routed("CA1"))  # to the queue: both serve it
    assert [m["kind"] for m in drain(ann)] == ["hello", "pop"]
    assert [m["kind"] for m in drain(ben)] == ["hello", "pop"]
    await board.routed(routed("CA1", agent="ben", attempt=2))
    assert [(m["kind"], m["pop"]["state"]) for m in drain(ann)] == [("pop.update", "missed")]
    assert [(m["kind"], m["pop"]["state"]) for m in drain(ben)] == [("pop", "ringing")]


async def test_a_reconnecting_console_gets_what_still_rings_for_it_and_not_what_ended() -> None:
    board = pops()
    await board.routed(routed("CA1", agent="ann"))
    await board.routed(routed("CA2", agent="ann"))
    board.call_event(missed("CA2"))
    again = board.connect("ann", {"kind": "hello"})
    assert [(m["kind"], m.get("pop", {}).get("call_id")) for m in drain(again)] == [
        ("hello", None),
        ("pop", "CA1"),
    ]


async def test_a_console_that_stops_reading_is_cut_off_not_buffered_forever() -> None:
    board = pops()
    ann = board.connect("ann", {"kind": "hello"})
    for i in range(STREAM_QUEUE + 5):
        board.presence(presence("ann", "available", at=NOW + timedelta(seconds=i)))
    messages = drain(ann)
    assert messages[-1] is None and len(messages) == STREAM_QUEUE


# -- the floor ----------------------------------------------------------------------------


def test_the_floor_counts_today_per_agent_and_channel_and_shows_the_queue() -> None:
    board = AgentBoard()
    clock = [NOW]
    floor = Floor(
        board,
        agents_of_queue=lambda queue: ["ann", "ben"],
        queues=lambda: ["support"],
        agents=lambda: ["ann", "ben"],
        capacity=lambda agent, channel: 1,
        clock=lambda: clock[0],
    )
    board.presence_changed(presence("ann", "available"))
    board.presence_changed(presence("ben", "available"))
    for event in (routed("CA1", agent="ann"), routed("CA2"), routed("CA3", agent="ben")):
        board.routed(event)
        floor.routed(event)
    floor.call_event(answered("CA1", "ann", at=NOW + timedelta(seconds=8)))
    floor.call_event(ended("CA1", 120, at=NOW + timedelta(seconds=130)))
    routed_on = routed("CA3", agent="ann", attempt=2)  # ben did not take it
    board.routed(routed_on)
    floor.routed(routed_on)
    floor.call_event(missed("CA3", "no-answer"))
    clock[0] = NOW + timedelta(seconds=45)
    snapshot = floor.snapshot()
    assert snapshot["queues"] == [
        {"queue": "support", "waiting": 1, "longest_wait_s": 45.0, "agents_available": 1}
    ]
    by_agent = {a["agent"]: a for a in snapshot["agents"]}
    assert (by_agent["ann"]["contacts_today"], by_agent["ann"]["answered"]) == (2, 1)
    assert (by_agent["ann"]["avg_answer_s"], by_agent["ann"]["avg_handle_s"]) == (8.0, 120.0)
    assert (by_agent["ann"]["missed"], by_agent["ben"]["missed"]) == (1, 1)
    assert snapshot["channels"] == [
        {"channel": "voice", "contacts": 3, "answered": 1, "missed": 1, "abandoned": 0}
    ]


# -- the console's session ----------------------------------------------------------------


def test_a_session_cookie_reads_back_until_it_expires_and_not_once_altered() -> None:
    codec = SessionCodec(b"k" * 32, hours=1)
    cookie = codec.issue("ann", now=1_000_000)
    assert codec.read(cookie, now=1_000_100).username == "ann"
    assert codec.read(cookie, now=1_000_000 + 3600) is None  # expired
    version, name, expires, signature = cookie.split(".")
    longer = f"{version}.{name}.{int(expires) + 86400}.{signature}"
    assert codec.read(longer, now=1_000_100) is None  # the expiry is signed
    assert SessionCodec(b"x" * 32).read(cookie, now=1_000_100) is None  # another key
    assert codec.csrf_matches(cookie, codec.csrf_token(cookie))
    assert not codec.csrf_matches(cookie, codec.csrf_token(longer))
    with pytest.raises(ValueError, match="32 bytes"):
        SessionCodec(b"short")


# -- the feed: a call's end read before its decision ----------------------------------------


async def test_a_calls_end_read_before_its_decision_still_ends_its_pop_and_frees_its_agent() -> (
    None
):
    """At a start the feed reads the day back from two topics side by side: a call's end may
    come before its decision.  The end is given again once the decision is in."""
    feed = RoutingFeed("127.0.0.1:9", presence_topic="p", routing_topic="r", interactions_topic="i")
    board, popboard = AgentBoard(), pops()
    floor = Floor(
        board,
        agents_of_queue=lambda queue: ["ann", "ben"],
        queues=lambda: ["support"],
        agents=lambda: ["ann"],
        capacity=lambda agent, channel: 1,
    )
    feed.handlers.routed += [board.routed, popboard.routed, floor.routed]
    feed.handlers.calls += [board.call_event, popboard.call_event, floor.call_event]

    def record(topic: str, event) -> SimpleNamespace:
        return SimpleNamespace(topic=topic, partition=0, offset=0, value=dump_interaction(event))

    await feed._handle(record("i", missed("CA1")))
    await feed._handle(record("r", routed("CA1", agent="ann")))
    assert popboard.pops["CA1"].state == "missed"
    assert board.state("ann").load == {}
    assert floor.snapshot()["channels"][0]["missed"] == 1
