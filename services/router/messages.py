"""The message router: every inbound message and e-mail given to an agent, or left in a queue.

One consumer group (setting ``router_group``, ``sb-router``) reads the interactions topic, so
each partition — each person's contacts, keyed by ``identity_of`` — has one router at a time,
whichever instance it is.  For each inbound message it decides with the same ``decide`` as calls and
publishes the decision, ``contact.routed.v1`` with attempt 1, on ``sb.routing.v1`` (keyed by
the same person, so into the partition with the same number); the offset is committed after
Kafka confirmed the decision.

Never assigned twice: a router killed between its publish and its commit, or one that lost
its partition in a rebalance meanwhile, has the message decided again by the next owner —
with the same ``provider_ref`` (``<ref>:routed:1``).  Everybody takes the *first* decision of
a contact in the routing partition's order and passes over a later one of the same attempt:
the recorder (its dedupe on provider refs), hence the desk, which assigns the conversation
from the recorded decision; the agents' board; the screen pops.

What the decision counts:

- a message in a conversation an agent has (the card's open conversations on its channel)
  goes to that agent while they are not offline (rule ``conversation``);
- otherwise an agent's load on a message channel is the conversations assigned to them on it
  (the desk, as the view has it), plus what this router gave them in the last ``SETTLE_S``
  seconds that the view may not show yet;
- messages older than ``MAX_AGE`` (a new group reading a topic's backlog) are not routed: a
  week-old chat offered to an agent helps nobody; it waits in the desk as an open conversation.

A record that does not parse is passed over here: the recorder dead-letters it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from contracts import ContactRouted, InvalidInteraction, RouteTarget, parse_interaction
from contracts.messages import MessageReceived
from services.router.board import AgentBoard
from services.router.decide import AgentState, Presence
from services.router.service import Known, Router

log = logging.getLogger(__name__)

MAX_AGE = timedelta(hours=24)
SETTLE_S = 5.0  # how long a decision of ours counts on top of the view's loads
LOADS_EVERY_S = 0.5  # the view's loads are read again at most this often
_MARKER = b'"message.received.v1"'

Loads = Mapping[str, Mapping[str, int]]  # agent -> channel -> conversations assigned


@dataclass
class RouterStats:
    routed: int = 0
    to_agent: int = 0
    kept: int = 0  # follow-ups routed to the agent who has the conversation
    queued: int = 0
    too_old: int = 0
    unreadable: int = 0


class MessageRouter:
    def __init__(
        self,
        router: Router,
        *,
        consumer: Callable[[], AIOKafkaConsumer],
        publish: Callable[[ContactRouted], Awaitable[object]],
        loads: Callable[[], Loads],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.router = router
        self.board: AgentBoard = router.board
        self._consumer = consumer
        self._publish = publish
        self._read_loads = loads
        self.clock = clock
        self.stats = RouterStats()
        self.assigned: set[int] = set()  # partitions held now (tests and /readyz to come)
        self._loads: Loads = {}
        self._loads_at = -1e9
        self._given: list[tuple[float, str, str]] = []  # (monotonic, agent, channel)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer()
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=100)
                self.assigned = {tp.partition for tp in consumer.assignment()}
                for tp, records in batches.items():
                    for record in records:
                        await self._handle(record)
                    await _commit(consumer, tp, records[-1].offset + 1)
        finally:
            await consumer.stop()

    async def _handle(self, record: ConsumerRecord) -> None:
        value = record.value or b""
        if _MARKER not in value:
            return
        try:
            event = parse_interaction(value)
        except (InvalidInteraction, ValueError) as e:
            self.stats.unreadable += 1
            log.warning(
                "router: %s[%s]@%s is unreadable, passed over (the recorder dead-letters it): %s",
                record.topic,
                record.partition,
                record.offset,
                e,
            )
            return
        if not isinstance(event, MessageReceived) or event.auto_reply:
            return
        if self.clock() - event.occurred_at > MAX_AGE:
            self.stats.too_old += 1
            return
        decision = await self.decide(event)
        await self._publish(decision)
        self.stats.routed += 1
        if decision.target.kind == "agent":
            self.stats.to_agent += 1
        else:
            self.stats.queued += 1

    async def decide(self, message: MessageReceived) -> ContactRouted:
        """Where ``message`` goes: to the agent who has its conversation, else by the rules."""
        router = self.router
        known: Known = await asyncio.to_thread(router.known, message.party)
        channel = str(message.channel)
        keeper = self._keeper(known, channel)
        if keeper is not None:
            self.stats.kept += 1
            return self._kept(message, known, keeper)
        decision = router.route(
            channel=channel,
            party=message.party,
            contact_ref=message.provider_ref,
            known=known,
            dialled=message.endpoint,
            agents=await self._agents(),
        )
        if decision.target.kind == "agent" and decision.target.agent:
            self._given.append((time.monotonic(), decision.target.agent, channel))
        return decision

    def _keeper(self, known: Known, channel: str) -> str | None:
        """The agent who has the customer's open conversation on ``channel``, if they are
        at work (not offline)."""
        if known.card is None:
            return None
        for conversation in known.card.conversations:
            if (
                conversation.channel == channel
                and conversation.status in ("assigned", "pending")
                and conversation.assignee
            ):
                presence, _ = self.board.presence_of(conversation.assignee)
                if presence != Presence.offline:
                    return conversation.assignee
        return None

    def _kept(self, message: MessageReceived, known: Known, agent: str) -> ContactRouted:
        now = self.clock()
        queue = self.router.config.serves(agent)
        event = ContactRouted(
            channel=message.channel,
            party=message.party,
            endpoint=message.endpoint,
            contact_ref=message.provider_ref,
            attempt=1,
            provider_ref=f"{message.provider_ref}:routed:1",
            occurred_at=now,
            target=RouteTarget(kind="agent", queue=queue[0] if queue else None, agent=agent),
            rule="conversation",
            reason=f"{agent} has this conversation",
            customer_id=known.customer_id,
        )
        self.board.routed(event)
        return event

    async def _agents(self) -> dict[str, AgentState]:
        """The board's agents, with their message loads as the desk counts them."""
        now = time.monotonic()
        if now - self._loads_at >= LOADS_EVERY_S:
            self._loads = await asyncio.to_thread(self._read_loads)
            self._loads_at = now
        self._given = [g for g in self._given if now - g[0] < SETTLE_S]
        recent: dict[str, dict[str, int]] = {}
        for _, agent, channel in self._given:
            per = recent.setdefault(agent, {})
            per[channel] = per.get(channel, 0) + 1
        agents = {}
        for name, state in self.board.states().items():
            load = {ch: n for ch, n in state.load.items() if ch == "voice"}
            for source in (self._loads.get(name, {}), recent.get(name, {})):
                for ch, n in source.items():
                    if ch != "voice":
                        load[ch] = load.get(ch, 0) + n
            agents[name] = replace(state, load=load)
        return agents


async def _commit(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Commit what was decided; a partition lost meanwhile is the next owner's to decide
    again (its first decision stands, see the module's docstring)."""
    try:
        await consumer.commit({tp: offset})
    except (CommitFailedError, IllegalStateError) as e:
        log.info("router: %s moved to another router before its commit (%s)", tp, e)
