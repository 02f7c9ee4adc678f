"""Messages are given to agents by the router service, exactly once, through the real broker.

Two router instances share the consumer group (one router per partition) while the gateway
records, follows the desk and serves the agents' consoles over real WebSockets.  Every message
is decided once in the customer's history, every conversation assigned once by the router —
also when a router stops half-way and when a second decision of the same contact (a router
killed between publish and commit) comes after the first.  A follow-up goes to the agent who
has the conversation; a hand-over at the desk is pushed to both agents.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.publishing import InteractionPublisher
from contracts import Channel, ContactRouted, MessageReceived, identity_of
from contracts.routing import RouteTarget
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.domain import customer_id_for
from services.domain.customer import Customer
from services.domain.desk import CustomerDesk
from tests.gateways import free_port, gateway
from tests.helpers import eventually
from tests.integration.test_screen_pops import console, set_presence

ROUTING = """
default_queue: support
queues:
  support: {}
agents:
  ann: {queues: [support], capacity: {whatsapp: 50}}
  ben: {queues: [support], capacity: {whatsapp: 50}}
"""
GATEWAY = ("recorder", "timeline", "desk", "api")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
def settings(hub_settings: Settings, tmp_path: Path) -> Settings:
    config = tmp_path / "routing.yaml"
    config.write_text(ROUTING)
    return hub_settings.model_copy(update={"routing_config": config})


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    users = bootstrap(settings).user_directory()
    out = {}
    for name, role in (("boss", "supervisor"), ("ann", "agent"), ("ben", "agent")):
        users.register(name, roles=[role], password=f"{name}-password-long-enough")
        out[name] = users.issue_token(name).token
    users.register("root", roles=["admin"])
    return out


@asynccontextmanager
async def router_instance(settings: Settings) -> AsyncIterator[Hub]:
    """A process running only the router service (no API)."""
    hub = bootstrap(settings.model_copy(update={"http_port": free_port()}))
    stop = asyncio.Event()
    running = asyncio.create_task(run_hub(hub, stop, services=("router",)))
    try:
        yield hub
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)


async def work_list(client: httpx.AsyncClient, token: str, *, count: int) -> list[str]:
    """The agent's conversations (ids) once their list shows ``count`` of them."""
    found: list[str] = []

    async def shown() -> bool:
        answer = await client.get(
            "/v1/agents/me/conversations", headers={"Authorization": f"Bearer {token}"}
        )
        found[:] = [i["conversation_id"] for i in answer.json()["items"]]
        return len(found) == count

    await eventually(shown, timeout=30, what=f"a work list of {count}")
    return found


def text(ref: str, party: str) -> MessageReceived:
    return MessageReceived(
        channel=Channel.whatsapp,
        party=party,
        provider_ref=ref,
        occurred_at=datetime.now(UTC),
        body=f"Hello ({ref})",
    )


def recorded(hub: Hub) -> tuple[list[Any], list[Any]]:
    """The routing decisions in the customers' histories, and the desk's assignments."""
    history = hub.history(cached=False)
    notifications = history.recorder.select_notifications(
        start=0,
        limit=100_000,
        topics=[Customer.InteractionRecorded.TOPIC, CustomerDesk.ConversationStatusChanged.TOPIC],
    )
    events = [history.mapper.to_domain_event(n) for n in notifications]
    decisions = [
        e
        for e in events
        if isinstance(e, Customer.InteractionRecorded) and e.interaction_type == "contact.routed.v1"
    ]
    assignments = [e for e in events if isinstance(e, CustomerDesk.ConversationStatusChanged)]
    return decisions, assignments


async def both_available(client: httpx.AsyncClient, tokens: dict[str, str], *hubs: Hub) -> None:
    for agent in ("ann", "ben"):
        await set_presence(client, tokens[agent], "available")

    def seen() -> bool:
        return all(
            h._routing is not None
            and str(h._routing.board.presence_of("ann")[0]) == "available"
            and str(h._routing.board.presence_of("ben")[0]) == "available"
            for h in hubs
        )

    await eventually(seen, timeout=60, what="every router to see ann and ben available")
    await routing_partitions(*hubs)


async def routing_partitions(*hubs: Hub) -> None:
    """Wait until every router holds partitions (a group's first join takes seconds)."""
    await eventually(
        lambda: all(h.message_routers and h.message_routers[-1].assigned for h in hubs),
        timeout=60,
        what="every router to hold partitions",
    )


async def test_two_routers_assign_every_message_once_and_the_first_decision_stands(
    settings: Settings, tokens: dict[str, str]
) -> None:
    await ensure_topics(settings, settings.kafka_bootstrap)
    people = [f"whatsapp:+49301000{i:04d}" for i in range(24)]
    async with (
        gateway(settings, GATEWAY) as url,
        httpx.AsyncClient(base_url=url) as client,
        InteractionPublisher(
            settings.kafka_bootstrap, topic=settings.interactions_topic
        ) as publisher,
    ):
        view = bootstrap(settings).timeline_view()
        async with router_instance(settings) as first:
            async with router_instance(settings) as second:
                await both_available(client, tokens, first, second)
                async with console(url, tokens["ann"]) as ann, console(url, tokens["ben"]) as ben:
                    for i, party in enumerate(people[:12]):
                        await publisher.publish(text(f"wamid.{i}", party))

                    def assigned(n: int) -> bool:
                        return sum(sum(v.values()) for v in view.assigned_load().values()) >= n

                    await eventually(lambda: assigned(12), timeout=60, what="12 assignments")
                    told = [await ann.next("assigned")]  # the consoles hear of it
                    told.append(await ben.next("assigned"))
                    assert {m["item"]["channel"] for m in told} == {"whatsapp"}
            # the second router stopped: the first takes every partition and goes on
            for i, party in enumerate(people[12:], start=12):
                await publisher.publish(text(f"wamid.{i}", party))
            await eventually(lambda: assigned(24), timeout=60, what="24 assignments")

            # A router killed after its publish, before its commit: its successor decides the
            # same contact again, differently. The first decision stands everywhere.
            decisions, _ = recorded(first)
            kept = next(d for d in decisions if d.payload["contact_ref"] == "wamid.0")
            other = "ben" if kept.payload["target"]["agent"] == "ann" else "ann"
            await publisher.publish(
                ContactRouted(
                    channel=Channel.whatsapp,
                    party=people[0],
                    contact_ref="wamid.0",
                    provider_ref="wamid.0:routed:1",
                    occurred_at=datetime.now(UTC),
                    target=RouteTarget(kind="agent", queue="support", agent=other),
                    rule="skills",
                    reason="a second decision of the same attempt",
                ),
                topic=settings.routing_topic,
            )
            await publisher.publish(text("wamid.last", people[1]), topic=None)
            await eventually(
                lambda: any(d.payload["contact_ref"] == "wamid.last" for d in recorded(first)[0]),
                timeout=60,
                what="the decision after the duplicate to be recorded",
            )

        decisions, assignments = recorded(first)
        per_message = Counter(d.payload["contact_ref"] for d in decisions)
        assert set(per_message) == {f"wamid.{i}" for i in range(24)} | {"wamid.last"}
        assert set(per_message.values()) == {1}, per_message  # decided once in history
        by_router = [a for a in assignments if a.by == "router"]
        per_conversation = Counter(a.conversation_id for a in by_router)
        assert len(per_conversation) == 24 and set(per_conversation.values()) == {1}
        conversation_of_0 = first.desk().conversations(customer_id_for(identity_of(people[0])))[0]
        assert conversation_of_0.assignee == kept.payload["target"]["agent"]
        loads = view.assigned_load()
        assert sum(loads["ann"].values()) + sum(loads["ben"].values()) == 24
        assert min(loads["ann"]["whatsapp"], loads["ben"]["whatsapp"]) >= 6  # shared out


async def test_a_follow_up_stays_with_its_agent_and_a_hand_over_reaches_both_consoles(
    settings: Settings, tokens: dict[str, str]
) -> None:
    party = "whatsapp:+4930200000001"
    hub = bootstrap(settings)
    async with (
        gateway(settings, (*GATEWAY, "router"), hub=hub) as url,
        httpx.AsyncClient(base_url=url) as client,
        InteractionPublisher(
            settings.kafka_bootstrap, topic=settings.interactions_topic
        ) as publisher,
    ):
        await set_presence(client, tokens["ann"], "available")
        await routing_partitions(hub)

        async def ready() -> dict[str, str]:
            answer = await client.get("/readyz")
            return answer.json()["checks"] if answer.status_code == 200 else {}

        await eventually(ready, timeout=60, what="the gateway to be ready")
        checks = await ready()
        for part in ("kafka", "store", "recorder", "router", "routing feed", "webhook publisher"):
            assert checks[part] == "ok", checks
        async with console(url, tokens["ann"]) as ann, console(url, tokens["ben"]) as ben:
            await publisher.publish(text("wamid.a", party))
            given = await ann.next("assigned")
            assert given["item"]["target"]["agent"] == "ann"
            (conversation_id,) = await work_list(client, tokens["ann"], count=1)

            await set_presence(client, tokens["ann"], "busy")  # full or busy: hers all the same
            await publisher.publish(text("wamid.b", party))
            follow_up = await ann.next("message")
            assert follow_up["item"]["rule"] == "conversation"

            boss = {"Authorization": f"Bearer {tokens['boss']}"}
            current = (
                await client.get(f"/v1/conversations/{conversation_id}", headers=boss)
            ).json()
            handed = await client.post(
                f"/v1/conversations/{conversation_id}/status",
                json={
                    "status": "assigned",
                    "assignee": "ben",
                    "expected_version": current["version"],
                    "reason": "ann's shift ends",
                },
                headers=boss,
            )
            assert handed.status_code == 200, handed.text
            took = await ben.next("assigned")
            assert took["item"]["rule"] == "handed-over"
            assert "ann's shift ends" in took["item"]["reason"]
            lost = await ann.next("unassigned")
            assert lost["item"]["contact_ref"] == conversation_id
        assert await work_list(client, tokens["ben"], count=1) == [conversation_id]


async def test_an_offer_nobody_takes_moves_on_and_the_agent_who_accepts_gets_it(
    settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    offering = tmp_path / "offering.yaml"
    offering.write_text(ROUTING.replace("queues:\n", "message_offer_timeout_s: 3\nqueues:\n", 1))
    settings = settings.model_copy(update={"routing_config": offering})
    hub = bootstrap(settings)
    async with (
        gateway(settings, (*GATEWAY, "router"), hub=hub) as url,
        httpx.AsyncClient(base_url=url) as client,
        InteractionPublisher(
            settings.kafka_bootstrap, topic=settings.interactions_topic
        ) as publisher,
    ):
        await set_presence(client, tokens["ann"], "available")
        await set_presence(client, tokens["ben"], "available")
        await routing_partitions(hub)
        async with console(url, tokens["ann"]) as ann, console(url, tokens["ben"]) as ben:
            await publisher.publish(text("wamid.offer", "whatsapp:+4930300000001"))
            first = (await ann.next("offer"))["item"]  # ann has been free longest
            assert (first["contact_ref"], first["attempt"]) == ("wamid.offer", 1)
            assert first["offer_expires_at"]

            # ann lets it run out: it goes to ben, and leaves ann's console
            second = (await ben.next("offer", timeout=30))["item"]
            assert second["attempt"] == 2
            assert (await ann.next("offer.over"))["item"]["contact_ref"] == "wamid.offer"

            def answer(who: str, attempt: int) -> Any:
                return client.post(
                    "/v1/agents/me/offers",
                    json={"contact_ref": "wamid.offer", "attempt": attempt, "accept": True},
                    headers={"Authorization": f"Bearer {tokens[who]}"},
                )

            assert (await answer("ann", 1)).status_code == 404  # over
            taken = await answer("ben", 2)
            assert taken.status_code == 200, taken.text
            assert taken.json()["accepted"] is True
            assert (await answer("ben", 2)).status_code == 404  # answered already

        await work_list(client, tokens["ben"], count=1)
        decisions, assignments = recorded(hub)
        offers = sorted(
            (d.payload["attempt"], d.payload["target"]["agent"])
            for d in decisions
            if d.payload["contact_ref"] == "wamid.offer"
        )
        assert offers == [(1, "ann"), (2, "ben")]
        assert [(a.assignee, a.by) for a in assignments] == [("ben", "ben")]
