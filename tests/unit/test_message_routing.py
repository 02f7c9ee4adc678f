"""Messages and e-mails given to agents, one piece at a time: what the router decides (the
conversation's agent first, capacity counted from the desk), how the desk assigns from a
recorded decision (also one recorded before its message), and what the agents' streams get."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import UUID, uuid4

import pytest

from contracts import AgentPresenceChanged, ContactRouted, MessageReceived, OfferAnswered
from contracts.routing import RouteTarget
from projections.directory import Card, OpenConversation
from services.domain.desk import Contact, CustomerDesk, Status
from services.gateway.pops import PopBoard
from services.router.board import AgentBoard
from services.router.config import parse_routing_config
from services.router.messages import MessageRouter
from services.router.service import Router

NOW = datetime.now(UTC).replace(microsecond=0)
PARTY = "whatsapp:+4930123456789"
GAP = timedelta(hours=24)
CONFIG = parse_routing_config(
    """
default_queue: support
queues:
  support: {}
agents:
  ann: {queues: [support], capacity: {whatsapp: 2}}
  ben: {queues: [support], capacity: {whatsapp: 2}}
"""
)


@pytest.fixture(autouse=True)
def _now(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOW is when the test runs, not when the module was imported: the boards ignore calls
    routed longer ago than a ring can last, and a long suite reaches these tests late."""
    monkeypatch.setattr(sys.modules[__name__], "NOW", datetime.now(UTC).replace(microsecond=0))


def message(
    ref: str = "wamid.1", *, party: str = PARTY, at: datetime | None = None
) -> MessageReceived:
    return MessageReceived(
        channel="whatsapp",
        party=party,
        provider_ref=ref,
        occurred_at=at or NOW,
        body="Hello, my parcel?",
    )


class Directory:
    """The view's two reads the router makes, answered from a dict."""

    def __init__(self, cards: dict[str, Card] | None = None) -> None:
        self.cards = cards or {}

    def customer_for_address(self, address: str) -> UUID | None:
        card = self.cards.get(address)
        return None if card is None else card.customer_id

    def card(self, customer_id: UUID) -> Card | None:
        return next((c for c in self.cards.values() if c.customer_id == customer_id), None)


def card_with(conversation: OpenConversation | None = None) -> Card:
    return Card(
        customer_id=uuid4(),
        addresses=[PARTY],
        first_address=PARTY,
        first_seen=NOW,
        contact_count=1,
        last_contact_at=NOW,
        last_channel="whatsapp",
        profile={},
        profile_version=0,
        consent={},
        last_agent=None,
        recent=[],
        conversations=[] if conversation is None else [conversation],
    )


def message_router(
    *,
    loads: dict | None = None,
    directory: Directory | None = None,
    available=("ann", "ben"),
    config=CONFIG,
    clock=None,
) -> tuple[MessageRouter, list[ContactRouted]]:
    board = AgentBoard()
    for i, agent in enumerate(available):
        board.presence_changed(
            AgentPresenceChanged(
                agent=agent,
                presence="available",
                occurred_at=NOW - timedelta(minutes=10 - i),
                by=agent,
            )
        )
    published: list[ContactRouted] = []

    async def publish(event: ContactRouted) -> None:
        published.append(event)

    router = MessageRouter(
        Router(config, board, directory or Directory()),
        consumer=lambda: None,  # type: ignore[arg-type,return-value]
        publish=publish,
        loads=lambda: loads or {},
        clock=clock or (lambda: datetime.now(UTC)),
    )
    return router, published


async def test_a_message_goes_to_the_longest_idle_agent_and_counts_against_their_capacity() -> None:
    router, _ = message_router()
    first = await router.decide(message("wamid.1", party="whatsapp:+4930000000001"))
    assert (first.target.kind, first.target.agent, first.attempt) == ("agent", "ann", 1)
    assert first.provider_ref == "wamid.1:routed:1"
    # ann's first is not in the desk's view yet: the router counts its own decisions meanwhile
    second = await router.decide(message("wamid.2", party="whatsapp:+4930000000002"))
    third = await router.decide(message("wamid.3", party="whatsapp:+4930000000003"))
    assert {second.target.agent, third.target.agent} == {"ann", "ben"}


async def test_a_full_desk_queues_the_message_with_the_reason() -> None:
    router, _ = message_router(loads={"ann": {"whatsapp": 2}, "ben": {"whatsapp": 2, "sms": 1}})
    decision = await router.decide(message())
    assert (decision.target.kind, decision.target.queue) == ("queue", "support")
    assert "capacity" in decision.reason


async def test_a_follow_up_goes_to_the_agent_who_has_the_conversation_even_when_full() -> None:
    conversation = OpenConversation(uuid4(), "whatsapp", "assigned", "ben", NOW)
    router, _ = message_router(
        loads={"ben": {"whatsapp": 2}}, directory=Directory({PARTY: card_with(conversation)})
    )
    decision = await router.decide(message())
    assert (decision.target.agent, decision.rule) == ("ben", "conversation")
    assert decision.customer_id is not None


async def test_a_follow_up_whose_agent_went_offline_is_routed_again() -> None:
    conversation = OpenConversation(uuid4(), "whatsapp", "assigned", "cid", NOW)
    router, _ = message_router(directory=Directory({PARTY: card_with(conversation)}))
    decision = await router.decide(message())
    assert decision.target.agent == "ann" and decision.rule != "conversation"


async def test_old_messages_unreadable_records_and_automatic_replies_are_not_routed() -> None:
    router, published = message_router()

    def record(value: bytes) -> SimpleNamespace:
        return SimpleNamespace(value=value, topic="t", partition=0, offset=1)

    old = message(at=NOW - timedelta(days=3))
    await router._handle(record(old.model_dump_json().encode()))
    auto = message().model_copy(update={"auto_reply": True})
    await router._handle(record(auto.model_dump_json().encode()))
    await router._handle(record(b'{"type":"message.received.v1","party":'))
    assert published == []
    assert (router.stats.too_old, router.stats.unreadable) == (1, 1)
    await router._handle(record(message().model_dump_json().encode()))
    assert len(published) == 1


# -- the desk -------------------------------------------------------------------------------


def contact(ref: str, *, at: datetime | None = None) -> Contact:
    return Contact(
        key=f"message.received.v1|whatsapp|{ref}",
        notification_id=1,
        interaction_type="message.received.v1",
        channel="whatsapp",
        direction="inbound",
        party=PARTY,
        provider_ref=ref,
        occurred_at=at or NOW,
    )


def test_a_decision_assigns_the_conversation_of_its_message_with_the_reason() -> None:
    desk = CustomerDesk(customer_id=uuid4())
    cid = desk.record_contact(contact("wamid.1"), quiet_gap=GAP)
    assert desk.assign_routed(contact("wamid.1").key, "ann", by="router", reason="longest idle")
    changed = desk.pending_events[-1]
    assert isinstance(changed, CustomerDesk.ConversationStatusChanged)
    assert (changed.assignee, changed.by, changed.reason) == ("ann", "router", "longest idle")
    # the same decision again, or a follow-up kept with ann: nothing changes
    events = len(desk.pending_events)
    desk.assign_routed(contact("wamid.1").key, "ann", by="router", reason="again")
    assert len(desk.pending_events) == events
    assert desk.conversation(cid).assignee == "ann"


def test_a_decision_recorded_before_its_message_assigns_when_the_message_joins() -> None:
    desk = CustomerDesk(customer_id=uuid4())
    assert desk.assign_routed(contact("wamid.9").key, "ben", by="router", reason="r") is None
    cid = desk.record_contact(contact("wamid.9"), quiet_gap=GAP)
    assert cid is not None
    got = desk.conversation(cid)
    assert (got.status, got.assignee) == (Status.assigned, "ben")
    # taken once: a later contact of the conversation does not assign again
    events = len(desk.pending_events)
    desk.record_contact(contact("wamid.10", at=NOW + timedelta(minutes=1)), quiet_gap=GAP)
    assert not any(
        isinstance(e, CustomerDesk.ConversationStatusChanged) for e in desk.pending_events[events:]
    )


def test_a_decision_on_a_resolved_conversation_does_not_reopen_it() -> None:
    desk = CustomerDesk(customer_id=uuid4())
    cid = desk.record_contact(contact("wamid.1"), quiet_gap=GAP)
    assert cid is not None
    desk.change_status(cid, Status.resolved, by="ann")
    desk.assign_routed(contact("wamid.1").key, "ann", by="router", reason="late")
    assert desk.conversation(cid).status == Status.resolved


def test_a_desk_snapshot_from_before_awaited_assignments_still_loads_and_assigns() -> None:
    desk = CustomerDesk(customer_id=uuid4())
    desk.record_contact(contact("wamid.1"), quiet_gap=GAP)
    state = dict(desk.__dict__)
    state.pop("awaited", None)
    for conversation in state["_conversations"].values():
        conversation.pop("contact_keys", None)
    old = object.__new__(CustomerDesk)
    old.__dict__.update(state)
    assert old.assign_routed(contact("wamid.2").key, "ann", by="router", reason="r") is None
    cid = old.record_contact(contact("wamid.2"), quiet_gap=GAP)
    assert cid is not None and old.conversation(cid).assignee == "ann"


# -- the agents' streams ----------------------------------------------------------------------


def routed(
    ref: str,
    agent: str | None,
    *,
    rule: str = "skills",
    attempt: int = 1,
    from_agent: str | None = None,
) -> ContactRouted:
    return ContactRouted(
        channel="whatsapp",
        party=PARTY,
        contact_ref=ref,
        provider_ref=f"{ref}:routed:{attempt}",
        attempt=attempt,
        occurred_at=NOW,
        target=RouteTarget(kind="agent" if agent else "queue", queue="support", agent=agent),
        rule=rule,
        reason="because",
        customer_id=uuid4(),
        from_agent=from_agent,
    )


def drain(stream) -> list[dict]:
    out = []
    while not stream.messages.empty():
        out.append(stream.messages.get_nowait())
    return out


@pytest.fixture
def pops() -> PopBoard:
    async def card_of(customer_id: UUID) -> dict:
        return {"customer_id": str(customer_id), "name": "Anna Berg"}

    return PopBoard(agents_of_queue=lambda q: ["ann", "ben"], card_of=card_of)


async def test_an_assigned_message_reaches_its_agent_once_with_the_card(pops: PopBoard) -> None:
    ann = pops.connect("ann", {"kind": "hello"})
    ben = pops.connect("ben", {"kind": "hello"})
    await pops.routed(routed("wamid.1", "ann"))
    await pops.routed(routed("wamid.1", "ben"))  # a second decision of attempt 1: passed over
    got = drain(ann)[1:]
    assert [m["kind"] for m in got] == ["assigned"]
    assert got[0]["item"]["card"]["name"] == "Anna Berg"
    assert got[0]["item"]["contact_ref"] == "wamid.1"
    assert drain(ben)[1:] == []


async def test_follow_ups_queues_and_hand_overs_say_so(pops: PopBoard) -> None:
    ann = pops.connect("ann", {"kind": "hello"})
    ben = pops.connect("ben", {"kind": "hello"})
    await pops.routed(routed("wamid.2", "ann", rule="conversation"))
    await pops.routed(routed("wamid.3", None, rule="queued"))
    await pops.routed(routed(str(uuid4()), "ben", rule="handed-over", attempt=4, from_agent="ann"))
    assert [m["kind"] for m in drain(ann)[1:]] == ["message", "queued", "unassigned"]
    assert [m["kind"] for m in drain(ben)[1:]] == ["queued", "assigned"]


# -- offers ---------------------------------------------------------------------------------

OFFERING = parse_routing_config(
    """
default_queue: support
message_offer_timeout_s: 30
queues:
  support: {}
agents:
  ann: {queues: [support]}
  ben: {queues: [support]}
"""
)


def answer(decision: ContactRouted, agent: str, *, accepted: bool) -> OfferAnswered:
    return OfferAnswered(
        channel=decision.channel,
        party=decision.party,
        contact_ref=decision.contact_ref,
        provider_ref=f"{decision.contact_ref}:answered:{decision.attempt}",
        occurred_at=NOW,
        attempt=decision.attempt,
        agent=agent,
        accepted=accepted,
    )


async def test_an_offer_not_taken_in_time_goes_to_the_next_agent_and_a_decline_at_once() -> None:
    later = [timedelta(0)]
    router, published = message_router(config=OFFERING, clock=lambda: datetime.now(UTC) + later[0])
    router.assigned = {0}  # one partition: every contact is this router's
    record = SimpleNamespace(
        value=message().model_dump_json().encode(), topic="t", partition=0, offset=1
    )
    await router._handle(record)
    (first,) = published
    assert (first.target.agent, first.attempt) == ("ann", 1)
    assert first.offer_expires_at is not None
    assert (first.offer_expires_at - first.occurred_at).total_seconds() == 30

    # a follow-up of the customer while the offer is open waits with it
    await router._handle(
        SimpleNamespace(
            value=message("wamid.2").model_dump_json().encode(), topic="t", partition=0, offset=2
        )
    )
    assert len(published) == 1 and router.stats.waiting == 1

    await router.offer_again(1)
    assert len(published) == 1  # not run out yet
    later[0] = timedelta(seconds=31)
    await router.offer_again(1)
    assert len(published) == 1  # run out, but an answer given at the last moment may be coming
    later[0] = timedelta(seconds=33)
    await router.offer_again(1)
    second = published[-1]
    assert (second.target.agent, second.attempt, second.contact_ref) == ("ben", 2, "wamid.1")
    assert "ben is the only agent free" in second.reason  # ann is left out

    router.offers.answered(answer(second, "ben", accepted=False))
    await router.offer_again(1)
    third = published[-1]
    assert third.attempt == 3 and third.target.kind == "queue"  # nobody left: it waits
    await router.offer_again(1)
    assert len(published) == 3  # a queued contact is no offer any more


async def test_an_accepted_offer_is_not_routed_again_and_another_partitions_is_left_alone() -> None:
    later = [timedelta(0)]
    router, published = message_router(config=OFFERING, clock=lambda: datetime.now(UTC) + later[0])
    router.assigned = set()  # the contact's partition is another router's
    decision = await router.decide(message())
    assert decision is not None
    router.offers.routed(decision)
    later[0] = timedelta(minutes=5)
    await router.offer_again(1)
    assert published == []
    router.assigned = {0}
    router.offers.answered(answer(decision, "ann", accepted=True))
    await router.offer_again(1)
    assert published == []


def test_the_desk_assigns_an_accepted_offer_and_not_the_offer_itself() -> None:
    from services.desk.contacts import routed_to_agent
    from services.domain.customer import Customer

    def recorded(event) -> Customer.InteractionRecorded:
        fields = event.model_dump(mode="json", exclude_none=True)
        return SimpleNamespace(  # type: ignore[return-value]
            interaction_type=event.type, channel=str(event.channel), payload=fields
        )

    offer = routed("wamid.5", "ann").model_copy(update={"offer_expires_at": NOW})
    assert routed_to_agent(recorded(offer)) is None
    took = routed_to_agent(recorded(answer(offer, "ann", accepted=True)))
    assert took is not None
    assert (took.contact_key, took.agent, took.by) == (
        "message.received.v1|whatsapp|wamid.5",
        "ann",
        "ann",
    )
    assert routed_to_agent(recorded(answer(offer, "ann", accepted=False))) is None


async def test_an_offer_pops_for_its_agent_moves_on_and_is_given_again_on_reconnect(
    pops: PopBoard,
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=1)
    ann = pops.connect("ann", {"kind": "hello"})
    ben = pops.connect("ben", {"kind": "hello"})
    first = routed("wamid.7", "ann").model_copy(update={"offer_expires_at": soon})
    await pops.routed(first)
    got = drain(ann)[1:]
    assert [m["kind"] for m in got] == ["offer"]
    assert got[0]["item"]["card"]["name"] == "Anna Berg"
    assert pops.offer_for("ann", "wamid.7", 1) is not None
    assert pops.offer_for("ben", "wamid.7", 1) is None
    again = pops.connect("ann", {"kind": "hello"})
    assert [m["kind"] for m in drain(again)] == ["hello", "offer"]

    second = routed("wamid.7", "ben", attempt=2).model_copy(update={"offer_expires_at": soon})
    await pops.routed(second)
    assert [m["kind"] for m in drain(ann)] == ["offer.over"]
    assert [m["kind"] for m in drain(ben)[1:]] == ["offer"]
    pops.answered(answer(second, "ben", accepted=True))
    over = drain(ben)
    assert [m["kind"] for m in over] == ["offer.over"] and over[0]["item"]["accepted"] is True
    assert pops.offer_for("ben", "wamid.7", 2) is None


def test_a_decision_recorded_after_a_hand_over_does_not_take_the_conversation_back() -> None:
    desk = CustomerDesk(customer_id=uuid4())
    cid = desk.record_contact(contact("wamid.1"), quiet_gap=GAP)
    assert cid is not None
    desk.assign_routed(contact("wamid.1").key, "ann", by="router", reason="longest idle")
    # the router moves it on when its agent went offline (its own assignment)...
    desk.record_contact(contact("wamid.2", at=NOW + timedelta(minutes=1)), quiet_gap=GAP)
    desk.assign_routed(contact("wamid.2").key, "ben", by="router", reason="ann is offline")
    assert desk.conversation(cid).assignee == "ben"
    # ...but not from where a person put it
    desk.change_status(cid, Status.assigned, by="boss", assignee="cem")
    desk.record_contact(contact("wamid.3", at=NOW + timedelta(minutes=2)), quiet_gap=GAP)
    desk.assign_routed(contact("wamid.3").key, "ben", by="router", reason="ben has it")
    assert desk.conversation(cid).assignee == "cem"
