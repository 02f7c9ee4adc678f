"""The supervisor's view of the floor: live queues, and today's figures per agent and channel.

A projection of the routing feed (every decision and every call event, read by every gateway
from the start of the day, UTC), kept in memory: a restarted gateway reads the day back from
Kafka, so the figures survive restarts without a table of their own.

- Queues, now: contacts waiting (their last decision put them in the queue and nobody answered
  yet), the longest wait, and the agents who could take one (available, serving the queue,
  with room on the channel).
- Today, per agent: contacts offered, answered, missed (offered but not taken: routed on, or
  the caller gave up), average answer time (routed → answered) and handle time (talk time).
- Today, per channel: contacts, answered, missed and abandoned (hung up while queued).

Contacts are the ones the router decided on: calls today (messages join when the message
router assigns them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from contracts import ContactRouted
from contracts.calls import CallEvent
from services.router.board import AgentBoard
from services.router.decide import Presence

# Nobody waits in a queue this long: a contact still "waiting" after it lost its end (a call
# whose status callbacks never came) and is not shown as waiting.
WAIT_LIMIT = timedelta(hours=1)


@dataclass
class _Contact:
    channel: str
    arrived: datetime
    routed_at: datetime
    queue: str | None
    target_kind: str
    agent: str | None  # offered to, now
    offered: set[str] = field(default_factory=set)
    answered_by: str | None = None
    over: bool = False


@dataclass
class AgentDay:
    offered: int = 0
    answered: int = 0
    missed: int = 0
    answer_s: float = 0.0
    handle_s: float = 0.0
    ended: int = 0


@dataclass
class ChannelDay:
    contacts: int = 0
    answered: int = 0
    missed: int = 0
    abandoned: int = 0


class Floor:
    def __init__(
        self,
        board: AgentBoard,
        *,
        agents_of_queue: Callable[[str], list[str]],
        queues: Callable[[], list[str]],
        agents: Callable[[], list[str]],
        capacity: Callable[[str, str], int],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.board = board
        self.agents_of_queue = agents_of_queue
        self.queues = queues
        self.configured = agents
        self.capacity = capacity
        self.clock = clock
        self.day: date = clock().date()
        self.contacts: dict[str, _Contact] = {}
        self.agents: dict[str, AgentDay] = {}
        self.channels: dict[str, ChannelDay] = {}

    def _today(self, at: datetime) -> bool:
        today = self.clock().date()
        if today != self.day:  # a new day: yesterday's figures are gone
            self.day, self.contacts, self.agents, self.channels = today, {}, {}, {}
        return at.date() == today

    # -- from the feed -----------------------------------------------------------------

    def routed(self, event: ContactRouted) -> None:
        if not self._today(event.occurred_at):
            return
        target = event.target
        contact = self.contacts.get(event.contact_ref)
        if contact is None:
            contact = _Contact(
                channel=str(event.channel),
                arrived=event.occurred_at,
                routed_at=event.occurred_at,
                queue=target.queue,
                target_kind=target.kind,
                agent=None,
            )
            self.contacts[event.contact_ref] = contact
            self.channels.setdefault(contact.channel, ChannelDay()).contacts += 1
        elif contact.over or contact.answered_by:
            return
        elif contact.agent is not None and contact.agent != target.agent:
            self.agents.setdefault(contact.agent, AgentDay()).missed += 1  # routed on
        contact.queue, contact.target_kind = target.queue, target.kind
        contact.routed_at = event.occurred_at
        contact.agent = target.agent if target.kind == "agent" else None
        if contact.agent is not None and contact.agent not in contact.offered:
            contact.offered.add(contact.agent)
            self.agents.setdefault(contact.agent, AgentDay()).offered += 1

    def call_event(self, event: CallEvent) -> None:
        contact = self.contacts.get(event.call_id)
        if contact is None or not self._today(event.occurred_at):
            return
        channel = self.channels.setdefault(contact.channel, ChannelDay())
        if event.type == "call.answered.v1" and contact.answered_by is None:
            agent = getattr(event, "agent", None) or contact.agent
            if agent is None:
                return
            contact.answered_by = agent
            day = self.agents.setdefault(agent, AgentDay())
            day.answered += 1
            day.answer_s += max(0.0, (event.occurred_at - contact.arrived).total_seconds())
            channel.answered += 1
        elif event.type == "call.ended.v1" and not contact.over:
            contact.over = True
            del self.contacts[event.call_id]  # counted: a day of calls is not kept in memory
            agent = contact.answered_by or getattr(event, "agent", None)
            if agent is not None:
                day = self.agents.setdefault(agent, AgentDay())
                day.ended += 1
                day.handle_s += float(getattr(event, "duration_s", 0.0))
        elif event.type in ("call.missed.v1", "voicemail.recorded.v1") and not contact.over:
            contact.over = True
            del self.contacts[event.call_id]
            if contact.answered_by is None:
                channel.missed += 1
                if getattr(event, "reason", None) == "abandoned":
                    channel.abandoned += 1
                if contact.agent is not None:
                    self.agents.setdefault(contact.agent, AgentDay()).missed += 1

    # -- what the supervisor sees ------------------------------------------------------

    def snapshot(self) -> dict:
        now = self.clock()
        self._today(now)
        waiting: dict[str, list[datetime]] = {}
        for contact in self.contacts.values():
            if (
                contact.target_kind == "queue"
                and not contact.over
                and not contact.answered_by
                and now - contact.arrived < WAIT_LIMIT  # else its end was lost: not waiting
            ):
                waiting.setdefault(contact.queue or "", []).append(contact.arrived)
        queues = []
        for queue in self.queues():
            arrived = waiting.get(queue, [])
            queues.append(
                {
                    "queue": queue,
                    "waiting": len(arrived),
                    "longest_wait_s": round((now - min(arrived)).total_seconds(), 1)
                    if arrived
                    else 0.0,
                    "agents_available": sum(
                        1 for agent in self.agents_of_queue(queue) if self._free(agent, "voice")
                    ),
                }
            )
        # The routing file's agents, and whoever was offered a contact today.
        names = sorted({*self.configured(), *(a for a, d in self.agents.items() if d.offered)})
        agents = []
        for name in names:
            day = self.agents.get(name, AgentDay())
            presence, _ = self.board.presence_of(name)
            agents.append(
                {
                    "agent": name,
                    "presence": str(presence),
                    "contacts_today": day.offered,
                    "answered": day.answered,
                    "missed": day.missed,
                    "avg_answer_s": round(day.answer_s / day.answered, 1) if day.answered else None,
                    "avg_handle_s": round(day.handle_s / day.ended, 1) if day.ended else None,
                }
            )
        channels = [{"channel": name, **vars(day)} for name, day in sorted(self.channels.items())]
        return {
            "day": self.day.isoformat(),
            "queues": queues,
            "agents": agents,
            "channels": channels,
        }

    def _free(self, agent: str, channel: str) -> bool:
        state = self.board.state(agent)
        return state.presence == Presence.available and state.load.get(channel, 0) < self.capacity(
            agent, channel
        )
