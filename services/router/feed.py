"""What every router and gateway instance reads from Kafka, without a consumer group.

Each instance needs all of it, not a share: every agent's presence (``sb.presence.v1``, a
compacted topic read from its beginning), every routing decision (``sb.routing.v1``) and the
calls' progress (the call events on ``sb.interactions.v1``).  The last two are read from
``lookback_s`` ago, so a (re)started instance knows what is ringing now and who holds which
call, and pushes a screen pop to an agent connected to it whichever instance decided.  This is
the fan-out: through Kafka, never through one process's memory.

A record that does not parse is logged and passed over: it is the recorder's to dead-letter,
and a screen pop must never stop over one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from contracts import (
    AgentPresenceChanged,
    ContactRouted,
    InvalidInteraction,
    OfferAnswered,
    parse_interaction,
    parse_presence,
)
from contracts.calls import CallEvent
from services.consumers import kafka_reader, partitions_of

log = logging.getLogger(__name__)

# Calls remembered as decided, and calls whose events came before their decision: enough for
# a busy day's worth of calls in flight, bounded all the same.
_KEPT = 50_000
# Cheap test before parsing: the interactions topic carries every message and e-mail too.
# JSON allows whitespace around the colon (other producers than ours write ``"type": "call.``)
# and \u escapes in strings (then the record is parsed whatever it is): a false match costs
# one parse, a miss would lose the call event.
_CALL_TYPES = re.compile(rb'"type"\s*:\s*"(?:call|voicemail)\.|\\u')


@dataclass
class FeedStats:
    presence: int = 0
    routed: int = 0
    answers: int = 0
    calls: int = 0
    unreadable: int = 0
    caught_up: bool = False


@dataclass
class FeedHandlers:
    presence: list[Callable[[AgentPresenceChanged], object]] = field(default_factory=list)
    routed: list[Callable[[ContactRouted], object]] = field(default_factory=list)
    answered: list[Callable[[OfferAnswered], object]] = field(default_factory=list)
    calls: list[Callable[[CallEvent], object]] = field(default_factory=list)


class RoutingFeed:
    def __init__(
        self,
        bootstrap: str,
        *,
        presence_topic: str,
        routing_topic: str,
        interactions_topic: str,
        lookback_s: float = 300.0,
        client_id: str = "switchboard-routing-feed",
    ) -> None:
        self.bootstrap = bootstrap
        self.presence_topic = presence_topic
        self.routing_topic = routing_topic
        self.interactions_topic = interactions_topic
        self.lookback_s = lookback_s
        self.client_id = client_id
        self.handlers = FeedHandlers()
        self.stats = FeedStats()
        # Set once everything that was on the topics at start has been read.
        self.caught_up = asyncio.Event()
        self._decided: OrderedDict[str, bool] = OrderedDict()  # contact_refs seen decided
        self._early: OrderedDict[str, list[CallEvent]] = OrderedDict()  # ends before decisions

    async def run(self, stop: asyncio.Event) -> None:
        consumer = kafka_reader(
            bootstrap=self.bootstrap,
            client_id=self.client_id,
            # A screen pop waits on this fetch: answer as soon as one record is there.
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        try:
            end = await self._assign(consumer)
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                for records in batches.values():
                    for record in records:
                        await self._handle(record)
                if end is not None and await _reached(consumer, end):
                    end = None
                    self.stats.caught_up = True
                    self.caught_up.set()
                    log.info("routing feed caught up")
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int] | None:
        topics = [self.presence_topic, self.routing_topic, self.interactions_topic]
        found = await partitions_of(self.bootstrap, topics, self.client_id)
        partitions = {t: [TopicPartition(t, p) for p in sorted(found[t])] for t in topics}
        every = [tp for tps in partitions.values() for tp in tps]
        consumer.assign(every)
        await consumer.seek_to_beginning(*partitions[self.presence_topic])
        since_ms = int((time.time() - self.lookback_s) * 1000)
        recent = partitions[self.routing_topic] + partitions[self.interactions_topic]
        if recent:
            found = await consumer.offsets_for_times(dict.fromkeys(recent, since_ms))
            for tp in recent:
                at = found.get(tp)
                if at is None:  # nothing that recent: only what comes from now on
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, at.offset)
        end = await consumer.end_offsets(every)
        if await _reached(consumer, end):
            self.stats.caught_up = True
            self.caught_up.set()
            return None
        return end

    async def _handle(self, record: ConsumerRecord) -> None:
        if record.value is None and record.topic == self.presence_topic:
            return  # a compaction tombstone (an agent's presence deleted): nothing to read
        value = record.value or b""
        try:
            if record.topic == self.presence_topic:
                event: object = parse_presence(value)
                self.stats.presence += 1
                handlers: list = self.handlers.presence
            elif record.topic == self.routing_topic:
                event = parse_interaction(value)
                if isinstance(event, OfferAnswered):
                    self.stats.answers += 1
                    handlers = self.handlers.answered
                elif isinstance(event, ContactRouted):
                    self.stats.routed += 1
                    handlers = self.handlers.routed
                else:
                    return
            else:
                if _CALL_TYPES.search(value) is None:
                    return
                event = parse_interaction(value)
                if not isinstance(event, CallEvent):
                    return
                self.stats.calls += 1
                handlers = self.handlers.calls
        except InvalidInteraction as e:
            self.stats.unreadable += 1
            # Interactions and decisions: the recorder dead-letters them and says so (one
            # warning is enough); presence is nobody else's to report.
            log.log(
                logging.WARNING if record.topic == self.presence_topic else logging.DEBUG,
                "routing feed: %s[%s]@%s is unreadable, passed over: %s",
                record.topic,
                record.partition,
                record.offset,
                e,
            )
            return
        await self._dispatch(handlers, event)
        # Two topics are read side by side, so a call's end can come before its decision (at a
        # start, reading the day back): the call events of a call not decided yet are kept,
        # and given again once its decision has been (handlers ignore what they cannot place).
        if isinstance(event, ContactRouted):
            _remember(self._decided, event.contact_ref, True)
            for early in self._early.pop(event.contact_ref, []):
                await self._dispatch(self.handlers.calls, early)
        elif isinstance(event, CallEvent) and event.call_id not in self._decided:
            self._early.setdefault(event.call_id, []).append(event)
            self._early.move_to_end(event.call_id)
            if len(self._early) > _KEPT:
                self._early.popitem(last=False)

    async def _dispatch(self, handlers: list, event: object) -> None:
        for handle in handlers:
            try:
                result = handle(event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # one listener's bug must not stop the others, or the feed
                log.exception("routing feed: a handler failed on %s", type(event).__name__)


def _remember(seen: OrderedDict[str, bool], key: str, value: bool) -> None:
    seen[key] = value
    seen.move_to_end(key)
    if len(seen) > _KEPT:
        seen.popitem(last=False)


async def _reached(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    """Whether the consumer has read up to ``end`` on every partition."""
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
