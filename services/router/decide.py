"""Who gets an inbound contact: a pure decision over the routing configuration, what the
customer card says and the agents' presence.  No I/O, no clock: the caller passes ``now``, so a
decision can be replayed and tested; every decision carries a reason a person can check.

The order (docs/routing.md): the rules pick the queue (else the caller's language, else the
default queue); a closed queue hands over to its after-hours destination; a contact that waited
long enough overflows; then the last agent, if they are free; then the longest idle agent who
can take it; else the contact waits in the queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from contracts.addresses import identity_of
from services.router.config import Agent, Conditions, Queue, RoutingConfig


@dataclass(frozen=True)
class Contact:
    channel: str  # voice, sms, whatsapp, messenger, telegram, email
    party: str  # the normalized address of the customer
    dialled: str | None = None  # the number/address they contacted (voice: To)
    customer_id: UUID | None = None


@dataclass(frozen=True)
class CallerFacts:
    """What the customer card says (``decide`` takes None for an unknown caller)."""

    tier: str | None = None
    language: str | None = None
    tags: tuple[str, ...] = ()
    last_agent: str | None = None
    last_agent_at: datetime | None = None  # when last_agent last handled them


class Presence(StrEnum):
    available = "available"
    busy = "busy"  # at work, but taking no new contacts
    away = "away"
    offline = "offline"


@dataclass(frozen=True)
class AgentState:
    name: str
    presence: Presence
    load: Mapping[str, int]  # channel -> contacts they hold now
    since: datetime  # when their presence or load last changed: the longest idle go first


@dataclass(frozen=True)
class Target:
    kind: Literal["agent", "queue", "voicemail", "callback"]
    queue: str | None = None  # the queue the contact belongs to / waits in
    agent: str | None = None


@dataclass(frozen=True)
class Decision:
    target: Target
    rule: str  # a short stable code: last-agent, skills, queued, no-agent-online, ...
    reason: str  # one sentence for people and auditors


def decide(
    contact: Contact,
    caller: CallerFacts | None,
    agents: Mapping[str, AgentState],
    now: datetime,
    config: RoutingConfig,
    *,
    exclude: frozenset[str] = frozenset(),
    waited_s: float = 0.0,
) -> Decision:
    """Where ``contact`` goes at ``now`` (aware), having waited ``waited_s`` seconds already;
    ``exclude``: agents who declined or let the offer ring out."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC)")
    caller = caller or CallerFacts()
    name, steps = pick_queue(contact, caller, config)
    left = waited_s
    visited: list[str] = []
    while True:
        if name in visited:  # a validated configuration has no loops; never spin on one
            steps.append(f"{' → '.join([*visited, name])} goes round; voicemail")
            return _decided(Target("voicemail", queue=name), "loop", steps)
        visited.append(name)
        queue = config.queues[name]
        closed = queue.closed_because(now)
        if closed is not None:
            after = queue.after_hours
            steps.append(f"{_closed_text(name, queue, now, closed)} → {after.shown()}")
            if after.next_queue is None:
                return _decided(Target(after.kind, queue=name), closed, steps)
            name = after.next_queue
            continue
        overflow = queue.overflow
        if overflow is not None and left >= overflow.after_s:
            steps.append(
                f"waited {_seconds(left)} in {name} (overflow after {_seconds(overflow.after_s)})"
                f" → {overflow.shown()}"
            )
            left -= overflow.after_s  # the next queue's overflow counts from its own start
            if overflow.next_queue is None:
                return _decided(Target(overflow.kind, queue=name), "overflow", steps)
            name = overflow.next_queue
            continue
        break
    return _agent_for(name, contact, caller, agents, now, config, exclude, steps)


def pick_queue(
    contact: Contact, caller: CallerFacts, config: RoutingConfig
) -> tuple[str, list[str]]:
    """The queue the contact belongs to, and the step saying why: the first rule that matches
    (whose queue takes the channel), else the first queue serving the caller's language on
    the channel, else the default queue."""
    for i, rule in enumerate(config.rules):
        if matches(rule.when, contact, caller) and config.queues[rule.queue].takes(contact.channel):
            named = f"rule '{rule.name}'" if rule.name else config.rule_name(i)
            return rule.queue, [f"{named} → queue {rule.queue}"]
    language = _primary(caller.language)
    if language is not None:
        for name, queue in config.queues.items():
            if language in queue.languages and queue.takes(contact.channel):
                return name, [f"the caller speaks {language} → queue {name}"]
    return config.default_queue, [f"no rule matched → default queue {config.default_queue}"]


def matches(when: Conditions, contact: Contact, caller: CallerFacts) -> bool:
    """All conditions given hold (a rule with none matches every contact)."""
    if when.tier is not None and _folded(caller.tier) not in {_folded(t) for t in when.tier}:
        return False
    if when.language is not None and _primary(caller.language) not in when.language:
        return False
    if when.channel is not None and contact.channel not in when.channel:
        return False
    if when.dialled is not None and (
        contact.dialled is None
        or identity_of(contact.dialled) not in {identity_of(d) for d in when.dialled}
    ):
        return False
    return when.tags is None or bool(
        {_folded(t) for t in when.tags} & {_folded(t) for t in caller.tags}
    )


def _agent_for(
    name: str,
    contact: Contact,
    caller: CallerFacts,
    agents: Mapping[str, AgentState],
    now: datetime,
    config: RoutingConfig,
    exclude: frozenset[str],
    steps: list[str],
) -> Decision:
    queue = config.queues[name]
    channel = contact.channel
    last, why_not_last = _last_agent(name, channel, caller, agents, now, config, exclude)
    if last is not None:
        ago = _ago(now - caller.last_agent_at) if caller.last_agent_at else "recently"
        steps.append(f"{last} is available and was the last agent ({ago})")
        return _decided(Target("agent", queue=name, agent=last), "last-agent", steps)
    if why_not_last is not None:
        steps.append(why_not_last)

    why_not: dict[str, str] = {}
    able: list[AgentState] = []
    for who in config.agents_of(name):
        agent = config.agents[who]
        state = agents.get(who)
        refusal = _refusal(who, agent, state, queue, channel, exclude)
        if refusal is None and state is not None:
            able.append(state)
        else:
            why_not[who] = refusal or "is offline"
    if not able:
        if all(why == "is offline" for why in why_not.values()):
            steps.append(f"no agent of {name} is online")
            return _decided(Target("queue", queue=name), "no-agent-online", steps)
        listed = ", ".join(f"{who} {why}" for who, why in why_not.items())
        steps.append(f"no agent of {name} is available: {listed}")
        return _decided(Target("queue", queue=name), "queued", steps)

    language = _primary(caller.language)
    speaking = [s for s in able if language in config.agents[s.name].languages]
    if language is not None and not speaking:
        steps.append(f"nobody available speaks {language}, so any language")

    def busy(state: AgentState) -> float:  # how full the agent is on this channel
        return state.load.get(channel, 0) / max(1, config.capacity(state.name, channel))

    free = speaking or able
    # The least busy on the channel first (chats and e-mails spread out), then the longest idle.
    chosen = min(free, key=lambda s: (busy(s), s.since, s.name))
    fits = f"speaks {language} and " if speaking else ""
    pool = len(free)
    if pool == 1:
        idle = "is the only agent free"
    elif any(busy(s) != busy(chosen) for s in free):
        held = chosen.load.get(channel, 0)
        idle = f"is the least busy on {channel} of the {pool} free (holds {held})"
    else:
        idle = f"has been idle longest of the {pool} free"
    steps.append(f"{chosen.name} {fits}{idle}")
    return _decided(Target("agent", queue=name, agent=chosen.name), "skills", steps)


def _last_agent(
    queue: str,
    channel: str,
    caller: CallerFacts,
    agents: Mapping[str, AgentState],
    now: datetime,
    config: RoutingConfig,
    exclude: frozenset[str],
) -> tuple[str | None, str | None]:
    """The last agent when they take the contact, else why not; (None, None) when affinity
    does not apply (no last agent, none within the window, or affinity off)."""
    who, at = caller.last_agent, caller.last_agent_at
    if who is None or at is None or config.last_agent_hours <= 0:
        return None, None
    if now - at > timedelta(hours=config.last_agent_hours):
        return None, None
    agent = config.agents.get(who)
    if agent is None:
        return None, f"the last agent {who} is not a routing agent"
    if queue not in agent.queues:
        return None, f"the last agent {who} does not serve {queue}"
    state = agents.get(who)
    refusal = _refusal(who, agent, state, config.queues[queue], channel, exclude, skills=False)
    if refusal is None:
        return who, None
    return None, f"the last agent {who} {refusal}"


def _refusal(
    who: str,
    agent: Agent,
    state: AgentState | None,
    queue: Queue,
    channel: str,
    exclude: frozenset[str],
    *,
    skills: bool = True,
) -> str | None:
    """Why ``who`` cannot take the contact now (said after their name), or None."""
    if who in exclude:
        return "declined the offer"
    if state is None:
        return "is offline"
    if state.presence is not Presence.available:
        return f"is {state.presence}"
    if skills:
        missing = [s for s in queue.skills if s not in agent.skills]
        if missing:
            return f"lacks {', '.join(missing)}"
    if state.load.get(channel, 0) >= agent.capacity.get(channel, 0):
        return f"is at capacity on {channel}"
    return None


def _closed_text(name: str, queue: Queue, now: datetime, why: str) -> str:
    local = queue.local(now)
    zone = queue.time_zone or "UTC"
    if why == "holiday":
        return f"{name} is closed for the holiday on {local:%Y-%m-%d} ({zone})"
    return f"{name} is closed at {local:%a %H:%M} {zone} (hours {queue.hours_shown()})"


def _decided(target: Target, rule: str, steps: list[str]) -> Decision:
    return Decision(target=target, rule=rule, reason="; ".join(steps))


def _primary(language: str | None) -> str | None:
    """``pt-BR`` → ``pt``: queues and agents name languages, not regional variants."""
    if not language:
        return None
    return language.replace("_", "-").split("-")[0].strip().lower() or None


def _folded(text: str | None) -> str | None:
    return text.strip().casefold() if text is not None else None


def _seconds(s: float) -> str:
    return f"{s:g} s"


def _ago(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"
