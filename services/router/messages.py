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

Offers (``message_offer_timeout_s`` in the routing file): a message given to an agent is an
offer until they accept it (``offer.answered.v1``, which assigns the conversation); declined or
run out, the router that owns the contact's partition *now* routes it again without them
(attempt + 1, having waited since the first decision, so a queue's overflow applies).  Which
offers are open comes from the ``OfferBook`` every instance fills from ``sb.routing.v1``, so a
router that takes a partition over from a dead one carries on with its offers.

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
from aiokafka.partitioner import DefaultPartitioner

from contracts import (
    ContactRouted,
    InvalidInteraction,
    RouteTarget,
    identity_of,
    parse_interaction,
)
from contracts.messages import MessageReceived
from services.router.board import AgentBoard
from services.router.decide import AgentState, Presence
from services.router.offers import Offer, OfferBook
from services.router.service import Known, Router

log = logging.getLogger(__name__)

MAX_AGE = timedelta(hours=24)
SETTLE_S = 5.0  # how long a decision of ours counts on top of the view's loads
LOADS_EVERY_S = 0.5  # the view's loads are read again at most this often
_MARKER = b'"message.received.v1"'
# Kafka's default partitioner (murmur2 of the key): the partition a person's records are in.
_PARTITIONER = DefaultPartitioner()

Loads = Mapping[str, Mapping[str, int]]  # agent -> channel -> conversations assigned


@dataclass
class RouterStats:
    routed: int = 0
    to_agent: int = 0
    kept: int = 0  # follow-ups routed to the agent who has the conversation
    queued: int = 0
    reoffered: int = 0  # offers declined or run out, routed again
    waiting: int = 0  # follow-ups of a message offered to an agent now
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
        offers: OfferBook | None = None,
        topic: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.router = router
        self.offers = offers or OfferBook()
        self.topic = topic  # the interactions topic: whose partitions say which offers are ours
        self.board: AgentBoard = router.board
        self._consumer = consumer
        self._publish = publish
        self._read_loads = loads
        self.clock = clock
        self.stats = RouterStats()
        self.assigned: set[int] = set()  # partitions held now (offers of these are ours; /readyz)
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
                await self.offer_again(len(consumer.partitions_for_topic(self.topic) or ()))
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
            log.debug(  # the recorder dead-letters it and says so: one warning is enough
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
        if decision is None:
            self.stats.waiting += 1
            return
        await self._publish(decision)
        self.offers.routed(decision)  # after Kafka has it: the book holds what was published
        self.stats.routed += 1
        if decision.target.kind == "agent":
            self.stats.to_agent += 1
        else:
            self.stats.queued += 1

    async def decide(self, message: MessageReceived) -> ContactRouted | None:
        """Where ``message`` goes: to the agent who has its conversation, else by the rules;
        None: a message of the customer is offered to an agent now, this one waits with it
        (the conversation is theirs once they accept)."""
        router = self.router
        if self.offers.offered_chat(str(message.channel), message.party, self.clock()):
            return None
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
        return self._given_out(decision)

    def _given_out(self, decision: ContactRouted) -> ContactRouted:
        """Count a decision for its agent, and make it an offer when offers are on."""
        agent = decision.target.agent
        if decision.target.kind != "agent" or not agent:
            return decision
        self._given.append((time.monotonic(), agent, str(decision.channel)))
        timeout = self.router.config.message_offer_timeout_s
        if timeout > 0:
            expires = decision.occurred_at + timedelta(seconds=timeout)
            decision = decision.model_copy(update={"offer_expires_at": expires})
        return decision

    async def offer_again(self, partitions: int) -> None:
        """Route again the offers of our partitions that were declined or ran out."""
        if not partitions:
            return
        mine = self.assigned
        for offer in self.offers.due(self.clock()):
            key = identity_of(offer.decision.party).encode()
            if _PARTITIONER(key, list(range(partitions)), []) not in mine:
                continue  # another router's (or nobody's until the group settles)
            again = await self._route_again(offer)
            await self._publish(again)
            self.offers.routed(again)
            self.stats.reoffered += 1

    async def _route_again(self, offer: Offer) -> ContactRouted:
        last = offer.decision
        known: Known = await asyncio.to_thread(self.router.known, last.party)
        now = self.clock()
        decision = self.router.route(
            channel=str(last.channel),
            party=last.party,
            contact_ref=last.contact_ref,
            known=known,
            dialled=last.endpoint,
            attempt=last.attempt + 1,
            exclude={*offer.declined, offer.agent},
            waited_s=max(0.0, (now - offer.first_at).total_seconds()),
            agents=await self._agents(),
        )
        return self._given_out(decision)

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
