"""The agents as the router sees them: presence, and the contacts each one holds now.

Fed from Kafka by ``RoutingFeed`` (every instance reads every agent's presence and every
decision), and by this instance's own decisions the moment they are made, so that two calls
a millisecond apart do not both go to an agent with room for one.  Applying the same decision
again when it comes back from Kafka changes nothing.

Only the event loop touches it (the webhooks and the feed run there): no locks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contracts import AgentPresenceChanged, ContactRouted
from contracts.calls import CallEvent
from services.router.decide import AgentState, Presence

# A call event that ends what an agent holds.
_CALL_OVER = frozenset({"call.ended.v1", "call.missed.v1", "voicemail.recorded.v1"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A decision older than this holds nobody (its end may be lost, or before what was read).
HOLD_LIMIT = timedelta(hours=4)


@dataclass
class _Agent:
    presence: Presence = Presence.offline
    presence_at: datetime = _EPOCH  # when the presence in force was set
    since: datetime = _EPOCH  # when presence or load last changed: longest idle first
    # When the agent last made themselves available: they hold nothing routed before that.
    free_since: datetime = _EPOCH
    holds: dict[str, str] = field(default_factory=dict)  # contact_ref -> channel
    load: dict[str, int] = field(default_factory=dict)  # channel -> how many it holds

    def hold(self, ref: str, channel: str) -> None:
        if ref not in self.holds:
            self.holds[ref] = channel
            self.load[channel] = self.load.get(channel, 0) + 1

    def let_go(self, ref: str) -> None:
        channel = self.holds.pop(ref, None)
        if channel is not None:
            left = self.load[channel] - 1
            if left:
                self.load[channel] = left
            else:
                del self.load[channel]


class AgentBoard:
    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}
        self._holder: dict[str, str] = {}  # contact_ref -> agent
        self._seen: dict[str, int] = {}  # contact_ref -> latest decision's attempt
        self._held_at: dict[str, datetime] = {}  # contact_ref -> when it was routed
        # Told of every presence change (the gateway pushes it to the agent's console).
        self.on_presence: list[Callable[[AgentPresenceChanged], None]] = []

    # -- what the router reads ---------------------------------------------------------

    def states(self) -> dict[str, AgentState]:
        return {name: self.state(name) for name in self._agents}

    def state(self, name: str) -> AgentState:
        agent = self._agents.get(name) or _Agent()
        return AgentState(
            name=name, presence=agent.presence, load=dict(agent.load), since=agent.since
        )

    def with_presence(self) -> list[str]:
        """The agents who ever set a presence (not merely named on an answered call)."""
        return [name for name, agent in self._agents.items() if agent.presence_at > _EPOCH]

    def presence_of(self, name: str) -> tuple[Presence, datetime]:
        agent = self._agents.get(name) or _Agent()
        return agent.presence, agent.presence_at

    def holder(self, contact_ref: str) -> str | None:
        return self._holder.get(contact_ref)

    # -- what changes it ---------------------------------------------------------------

    def presence_changed(self, event: AgentPresenceChanged) -> None:
        agent = self._agents.setdefault(event.agent, _Agent())
        if event.occurred_at <= agent.presence_at:
            return  # ours, read back from Kafka; or an older change read after a newer one
        agent.presence = Presence(event.presence)
        agent.presence_at = event.occurred_at
        agent.since = max(agent.since, event.occurred_at)
        if agent.presence == Presence.available and event.by == event.agent:
            # The agent says they are free: trust them over a call whose end never came (a
            # lost status callback must not keep them from every call for hours).
            agent.free_since = event.occurred_at
            for ref in [r for r in agent.holds if self._held_at.get(r, _EPOCH) < event.occurred_at]:
                self._holder.pop(ref, None)
                agent.let_go(ref)
        for listener in self.on_presence:
            listener(event)

    def routed(self, event: ContactRouted) -> None:
        """A decision (ours just now, or any instance's, read back): the contact is held by
        the agent it was offered to, and by nobody else."""
        ref = event.contact_ref
        if self._seen.get(ref, 0) >= event.attempt:
            return
        if datetime.now(UTC) - event.occurred_at > HOLD_LIMIT:
            return  # read back from the start of the day: over long ago, whatever its end
        self._seen[ref] = event.attempt
        self._release(ref, event.occurred_at)
        if event.channel != "voice":
            return  # a message's agent holds its conversation: the desk counts those
        if event.target.kind == "agent" and event.target.agent:
            agent = self._agents.setdefault(event.target.agent, _Agent())
            if event.occurred_at < agent.free_since:
                return  # routed before the agent said they were free (read back out of order)
            agent.hold(ref, str(event.channel))
            self._held_at[ref] = event.occurred_at
            agent.since = max(agent.since, event.occurred_at)
            self._holder[ref] = event.target.agent

    def call_event(self, event: CallEvent) -> None:
        """The call is over: its agent is free of it.  Answered by someone else (a queued
        call picked by another agent): that agent holds it now."""
        if event.type in _CALL_OVER:
            self._release(event.call_id, event.occurred_at)
            self._seen.pop(event.call_id, None)
        elif event.type == "call.answered.v1":
            agent_name = getattr(event, "agent", None)
            if agent_name and self._holder.get(event.call_id) != agent_name:
                self._release(event.call_id, event.occurred_at)
                agent = self._agents.setdefault(agent_name, _Agent())
                agent.hold(event.call_id, "voice")
                self._held_at[event.call_id] = event.occurred_at
                self._holder[event.call_id] = agent_name

    def _release(self, ref: str, at: datetime) -> None:
        self._held_at.pop(ref, None)
        name = self._holder.pop(ref, None)
        if name is None:
            return
        agent = self._agents[name]
        agent.let_go(ref)
        agent.since = max(agent.since, at)  # idle from now: longest idle first
