"""Screen pops: what is ringing for whom, pushed to the agents connected to this gateway.

Fed by the ``RoutingFeed`` (every instance reads every decision and call event), so an agent
gets their pop from whichever gateway they are connected to, whichever instance decided.

- A call routed to an agent pops on that agent's console; routed to a queue, on the consoles of
  the agents who serve the queue (the routing configuration says who).
- Answered, ended and missed update the pop for the same agents.  Routed again (the offer was
  not taken in time, the queue overflowed), the agents who no longer get it see it missed.
- A console that (re)connects first gets every pop still ringing for its agent.
- A message offered to an agent (``offer_expires_at``) is ``offer`` to them, with the card, until
  they answer it or it runs out (``offer.over``); a reconnecting console gets its open offers.
- Messages and e-mails are assigned, not rung: the agent is told ``assigned`` (with the card),
  ``message`` (a follow-up in a conversation they have), ``unassigned`` (handed to someone
  else), and the queue's agents ``queued``; their list is the desk's
  (``GET /v1/agents/me/conversations``).
- Each stream has a bounded queue: a console that stops reading is disconnected rather than
  allowed to hold the gateway's memory (it reconnects and gets what is still ringing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from contracts import AgentPresenceChanged, ContactRouted, OfferAnswered
from contracts.calls import CallEvent
from services import metrics

log = logging.getLogger(__name__)

_STATE_OF = {
    "call.answered.v1": "answered",
    "call.ended.v1": "ended",
    "call.missed.v1": "missed",
    "voicemail.recorded.v1": "missed",
}
_FINAL = frozenset({"ended", "missed"})
STREAM_QUEUE = 256


@dataclass
class Pop:
    call_id: str
    party: str
    channel: str
    target: dict[str, Any]
    rule: str
    reason: str
    routed_at: datetime
    attempt: int
    customer_id: UUID | None
    card: dict[str, Any] | None
    recipients: frozenset[str]
    state: str = "ringing"
    agent: str | None = None  # who answered
    changed: float = field(default_factory=time.monotonic)

    def out(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "state": self.state,
            "party": self.party,
            "channel": self.channel,
            "target": self.target,
            "rule": self.rule,
            "reason": self.reason,
            "routed_at": self.routed_at.isoformat(),
            "attempt": self.attempt,
            "agent": self.agent,
            "customer_id": None if self.customer_id is None else str(self.customer_id),
            "card": self.card,
        }


class AgentStream:
    """One console's connection: messages wait here until its socket sends them."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(STREAM_QUEUE)
        self.overflowed = False

    def close(self) -> None:
        """End the stream: its reader gets None."""
        if not self.overflowed:
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.messages.put_nowait(None)

    def put(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.messages.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("pops: %s's console stopped reading; disconnecting it", self.agent)
            self.messages.get_nowait()  # room for the end marker
            self.messages.put_nowait(None)


class PopBoard:
    def __init__(
        self,
        *,
        agents_of_queue: Callable[[str], Iterable[str]],
        card_of: Callable[[UUID], Awaitable[dict[str, Any] | None]],
        linger_s: float = 60.0,
        ring_limit_s: float = 900.0,
    ) -> None:
        self.agents_of_queue = agents_of_queue
        self.card_of = card_of
        self.linger_s = linger_s  # an ended or missed pop stays this long, then goes
        self.ring_limit_s = ring_limit_s  # a pop ringing this long lost its status: gone
        self.pops: dict[str, Pop] = {}
        self.streams: dict[str, set[AgentStream]] = {}
        self.delivered = 0
        self._pruned = 0.0
        self._told: OrderedDict[tuple[str, int], None] = OrderedDict()  # messages pushed
        self._offered: dict[str, tuple[str, dict[str, Any]]] = {}  # ref -> (agent, offer)

    # -- consoles ----------------------------------------------------------------------

    def connect(self, agent: str, hello: dict[str, Any]) -> AgentStream:
        stream = AgentStream(agent)
        self.streams.setdefault(agent, set()).add(stream)
        stream.put(hello)
        self._prune(every_s=0.0)
        for pop in self.pops.values():
            if agent in pop.recipients and pop.state not in _FINAL:
                stream.put({"kind": "pop", "pop": pop.out()})
        now = datetime.now(UTC)
        for who, item in list(self._offered.values()):
            if who == agent and datetime.fromisoformat(item["offer_expires_at"]) > now:
                stream.put({"kind": "offer", "item": item})
        return stream

    def disconnect(self, stream: AgentStream) -> None:
        streams = self.streams.get(stream.agent)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self.streams[stream.agent]

    def close_streams(self) -> None:
        """End every console's stream (this instance shuts down: they reconnect elsewhere)."""
        for streams in self.streams.values():
            for stream in streams:
                stream.close()

    def connected(self) -> int:
        return sum(len(s) for s in self.streams.values())

    def ringing_for(self, agent: str) -> list[Pop]:
        return [p for p in self.pops.values() if agent in p.recipients and p.state not in _FINAL]

    # -- from the feed -----------------------------------------------------------------

    async def routed(self, event: ContactRouted) -> None:
        if (datetime.now(UTC) - event.occurred_at).total_seconds() > self.ring_limit_s:
            return  # read back from the start of the day: long over, whatever it became
        if event.channel != "voice":
            await self._message_routed(event)
            return
        ref = event.contact_ref
        before = self.pops.get(ref)
        if before is not None and before.attempt >= event.attempt:
            return  # read again (a restart's look-back): delivered already
        target = event.target
        if target.kind == "agent" and target.agent:
            recipients = frozenset({target.agent})
        elif target.kind == "queue" and target.queue:
            recipients = frozenset(self.agents_of_queue(target.queue))
        else:
            recipients = frozenset()  # voicemail, callback: nobody to pop for
        card = before.card if before is not None else None
        if card is None and event.customer_id is not None and recipients:
            try:
                card = await self.card_of(event.customer_id)
            except Exception:  # the pop goes out without the card rather than not at all
                log.exception("pops: the card of %s could not be read", event.customer_id)
        pop = Pop(
            call_id=ref,
            party=event.party,
            channel=str(event.channel),
            target=target.model_dump(),
            rule=event.rule,
            reason=event.reason,
            routed_at=event.occurred_at,
            attempt=event.attempt,
            customer_id=event.customer_id,
            card=card,
            recipients=recipients,
        )
        self.pops[ref] = pop
        if before is not None:
            gone = before.recipients - recipients
            if gone:
                update = {**before.out(), "state": "missed"}
                self._send(gone, {"kind": "pop.update", "pop": update})
        self._send(recipients, {"kind": "pop", "pop": pop.out()})
        if recipients:
            _popped(event)
        self._prune()

    async def _message_routed(self, event: ContactRouted) -> None:
        """A message given to an agent (``assigned``; a follow-up in the conversation they
        have: ``message``), or waiting in a queue (``queued``, to the queue's agents); a
        conversation handed over at the desk: ``assigned`` to the new agent, ``unassigned``
        to the one who had it."""
        key = (event.contact_ref, event.attempt)
        if key in self._told:
            return  # the first decision of an attempt stands; a later one is passed over
        _remember(self._told, key)
        target = event.target
        item: dict[str, Any] = {
            "contact_ref": event.contact_ref,
            "channel": str(event.channel),
            "party": event.party,
            "customer_id": None if event.customer_id is None else str(event.customer_id),
            "target": target.model_dump(),
            "rule": event.rule,
            "reason": event.reason,
            "routed_at": event.occurred_at.isoformat(),
        }
        if event.offer_expires_at is not None and target.agent:
            item["offer_expires_at"] = event.offer_expires_at.isoformat()
            item["attempt"] = event.attempt
            await self._with_card(item, event)
            before = self._offered.get(event.contact_ref)
            if before is not None and before[0] != target.agent:
                self._send({before[0]}, {"kind": "offer.over", "item": before[1]})
            self._offered[event.contact_ref] = (target.agent, item)
            self._send({target.agent}, {"kind": "offer", "item": item})
            _popped(event)
            return
        if (before := self._offered.pop(event.contact_ref, None)) is not None:
            self._send({before[0]}, {"kind": "offer.over", "item": before[1]})
        if target.kind == "agent" and target.agent:
            kind = "message" if event.rule == "conversation" else "assigned"
            if kind == "assigned":
                await self._with_card(item, event)
            self._send({target.agent}, {"kind": kind, "item": item})
            if kind == "assigned":
                _popped(event)
            if event.from_agent and event.from_agent != target.agent:
                self._send({event.from_agent}, {"kind": "unassigned", "item": item})
        elif target.kind == "queue" and target.queue:
            self._send(self.agents_of_queue(target.queue), {"kind": "queued", "item": item})

    async def _with_card(self, item: dict[str, Any], event: ContactRouted) -> None:
        if event.customer_id is None:
            return
        try:
            item["card"] = await self.card_of(event.customer_id)
        except Exception:  # the news goes out without the card rather than not at all
            log.exception("pops: the card of %s could not be read", event.customer_id)

    def answered(self, event: OfferAnswered) -> None:
        """An offer answered (on any gateway): the agent's other consoles drop it."""
        offered = self._offered.get(event.contact_ref)
        if offered is None or offered[0] != event.agent or offered[1]["attempt"] != event.attempt:
            return
        del self._offered[event.contact_ref]
        item = {**offered[1], "accepted": event.accepted}
        self._send({event.agent}, {"kind": "offer.over", "item": item})

    def offer_for(self, agent: str, contact_ref: str, attempt: int) -> dict[str, Any] | None:
        """The open offer ``agent`` may answer, or None (over, or not theirs)."""
        offered = self._offered.get(contact_ref)
        if offered is None or offered[0] != agent or offered[1]["attempt"] != attempt:
            return None
        if datetime.fromisoformat(offered[1]["offer_expires_at"]) <= datetime.now(UTC):
            return None
        return offered[1]

    def call_event(self, event: CallEvent) -> None:
        pop = self.pops.get(event.call_id)
        state = _STATE_OF.get(event.type)
        if pop is None or state is None or pop.state in _FINAL:
            return
        pop.state = state
        pop.agent = getattr(event, "agent", None) or pop.agent
        pop.changed = time.monotonic()
        self._send(pop.recipients, {"kind": "pop.update", "pop": pop.out()})

    def presence(self, event: AgentPresenceChanged) -> None:
        self._send(
            {event.agent},
            {
                "kind": "presence",
                "agent": event.agent,
                "presence": event.presence,
                "since": event.occurred_at.isoformat(),
            },
        )

    def _send(self, agents: Iterable[str], message: dict[str, Any]) -> None:
        for agent in agents:
            for stream in self.streams.get(agent, ()):
                stream.put(message)
                self.delivered += 1

    def _prune(self, *, every_s: float = 1.0) -> None:
        """Drop the pops that are over: at most once a second, as it walks them all (not on
        every decision: at 50 calls/s that walk was a tenth of the pop path's time)."""
        now = time.monotonic()
        if now - self._pruned < every_s:
            return
        self._pruned = now
        gone = datetime.now(UTC).timestamp() - self.linger_s
        for ref in [
            ref
            for ref, (_, item) in self._offered.items()
            if datetime.fromisoformat(item["offer_expires_at"]).timestamp() < gone
        ]:
            del self._offered[ref]  # ran out a while ago and nobody routed it again (yet)
        for ref in [
            ref
            for ref, pop in self.pops.items()
            if (pop.state in _FINAL and now - pop.changed > self.linger_s)
            or now - pop.changed > self.ring_limit_s
        ]:
            del self.pops[ref]


_TOLD = 10_000  # the message decisions remembered as pushed: a rebalance's repeats are recent


def _popped(event: ContactRouted) -> None:
    """The screen-pop latency: from the routing decision to the push to the consoles."""
    seconds = (datetime.now(UTC) - event.occurred_at).total_seconds()
    metrics.SCREEN_POP.labels(str(event.channel)).observe(max(0.0, seconds))


def _remember(seen: OrderedDict[tuple[str, int], None], key: tuple[str, int]) -> None:
    seen[key] = None
    if len(seen) > _TOLD:
        seen.popitem(last=False)
