"""Who gets a contact: the routing decision as a scenario table (queue rules, hours in the queue's
own zone across the DST changes, overflow, last-agent affinity, skills, language, capacity).
Pure: a configuration, the caller's card and the agents' presence in, a decision out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.router.config import parse_routing_config
from services.router.decide import (
    AgentState,
    CallerFacts,
    Contact,
    Decision,
    Presence,
    decide,
)

CONFIG = parse_routing_config(
    """
default_queue: support
last_agent_hours: 72
offer_timeout_s: 20
queues:
  support:
    time_zone: Europe/Berlin
    hours: {mon-fri: "08:00-20:00", sat: "10:00-16:00", sun: "08:00-12:00"}
    holidays: [2026-12-25]
    languages: [en, de]
    overflow: {after_s: 120, to_queue: overflow}
  vip:
    overflow: {after_s: 30, to_queue: support}
  overflow: {}
  billing:
    skills: [billing]
    overflow: {after_s: 300, voicemail: true}
  sales:
    time_zone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
    after_hours: {queue: night}
  night:
    time_zone: Europe/Berlin
    hours: {daily: "22:00-06:00"}
    after_hours: {callback: true}
agents:
  ann: {queues: [support, vip], languages: [en, de], skills: [billing]}
  ben: {queues: [support, billing, overflow], languages: [en], skills: [billing]}
  cem: {queues: [support, vip, sales, night], languages: [de]}
  dan: {queues: [billing], languages: [en]}
rules:
  - name: gold customers
    when: {tier: [gold, platinum]}
    queue: vip
  - name: billing line
    when: {dialled: ["+493050000999"]}
    queue: billing
  - name: invoices by mail
    when: {channel: [email], tags: [invoice]}
    queue: billing
  - when: {tags: [sales]}
    queue: sales
""",
    source="test-routing.yaml",
)

# Mondays 10:00 in Berlin (winter, UTC+1) and in summer (UTC+2).
MON = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUMMER_MON = datetime(2026, 7, 6, 8, 0, tzinfo=UTC)
IDLE_FROM = datetime(2026, 3, 1, tzinfo=UTC)


def agent(name: str, presence: str = "available", *, idle: int = 0, **load: int) -> AgentState:
    """An agent idle for ``idle`` minutes (longer idle goes first), holding ``load``."""
    return AgentState(
        name=name,
        presence=Presence(presence),
        load=load,
        since=IDLE_FROM - timedelta(minutes=idle),
    )


ALL_FREE = (agent("ann", idle=10), agent("ben", idle=20), agent("cem", idle=30))
ALL_FREE_BOARD = {a.name: a for a in ALL_FREE}


@dataclass(frozen=True)
class Case:
    at: datetime
    agents: tuple[AgentState, ...]
    goes_to: tuple[str, str | None, str | None]  # kind, queue, agent
    rule: str
    says: tuple[str, ...]  # the facts the reason must name
    caller: CallerFacts | None = None
    channel: str = "voice"
    dialled: str | None = None
    exclude: frozenset[str] = frozenset()
    waited_s: float = 0.0


def last(who: str, hours_ago: float, at: datetime = MON, **facts: str) -> CallerFacts:
    return CallerFacts(last_agent=who, last_agent_at=at - timedelta(hours=hours_ago), **facts)


SCENARIOS = {
    # -- which queue -------------------------------------------------------------------
    "vip rule picks the vip queue and its longest idle agent": Case(
        MON,
        ALL_FREE,
        ("agent", "vip", "cem"),
        "skills",
        ("rule 'gold customers' → queue vip", "cem"),
        caller=CallerFacts(tier="Platinum"),
    ),
    "no rule matches: the default queue": Case(
        MON,
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("default queue support",),
        caller=CallerFacts(tier="silver"),
    ),
    "the number dialled picks the billing queue": Case(
        MON,
        ALL_FREE,
        ("agent", "billing", "ben"),
        "skills",
        ("rule 'billing line'",),
        dialled="+493050000999",
    ),
    "a WhatsApp to the billing number is the same line": Case(
        MON,
        ALL_FREE,
        ("agent", "billing", "ben"),
        "skills",
        ("rule 'billing line'",),
        channel="whatsapp",
        dialled="whatsapp:+493050000999",
    ),
    "a rule's channel condition: an invoice mail goes to billing": Case(
        MON,
        ALL_FREE,
        ("agent", "billing", "ben"),
        "skills",
        ("rule 'invoices by mail'",),
        caller=CallerFacts(tags=("Invoice",)),
        channel="email",
    ),
    "a rule's channel condition: an invoice call does not": Case(
        MON,
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("default queue support",),
        caller=CallerFacts(tags=("invoice",)),
    ),
    "an unnamed rule is named by its number": Case(
        datetime(2026, 3, 2, 15, 0, tzinfo=UTC),  # 10:00 in New York
        ALL_FREE,
        ("agent", "sales", "cem"),
        "skills",
        ("rule 4 → queue sales",),
        caller=CallerFacts(tags=("sales",)),
    ),
    # -- language and skills --------------------------------------------------------------
    "a German caller gets a German-speaking agent": Case(
        MON,
        (agent("ann", idle=10), agent("ben", idle=60), agent("cem", idle=30)),
        ("agent", "support", "cem"),
        "skills",
        ("speaks de", "the caller speaks de → queue support"),
        caller=CallerFacts(language="de-AT"),
    ),
    "nobody free speaks the caller's language: any language, and it says so": Case(
        MON,
        (agent("ann", "away"), agent("ben", idle=60), agent("cem", "offline")),
        ("agent", "support", "ben"),
        "skills",
        ("nobody available speaks de",),
        caller=CallerFacts(language="de"),
    ),
    "an agent without the queue's skill is passed over": Case(
        MON,
        (agent("dan", idle=90), agent("ben", idle=5)),
        ("agent", "billing", "ben"),
        "skills",
        ("ben",),
        dialled="+493050000999",
    ),
    "only agents without the skill: the contact waits": Case(
        MON,
        (agent("dan", idle=90), agent("ben", "busy")),
        ("queue", "billing", None),
        "queued",
        ("no agent of billing is available", "ben is busy", "dan lacks billing"),
        dialled="+493050000999",
    ),
    # -- hours in the queue's own zone ----------------------------------------------------
    "20:30 in Berlin in winter (19:30 UTC) is after hours: voicemail": Case(
        datetime(2026, 3, 2, 19, 30, tzinfo=UTC),
        ALL_FREE,
        ("voicemail", "support", None),
        "after-hours",
        ("closed at Mon 20:30 Europe/Berlin",),
    ),
    "19:30 UTC in summer is 21:30 in Berlin: after hours": Case(
        SUMMER_MON.replace(hour=19, minute=30),
        ALL_FREE,
        ("voicemail", "support", None),
        "after-hours",
        ("21:30",),
    ),
    "18:30 UTC in winter is 19:30 in Berlin: open": Case(
        datetime(2026, 3, 2, 18, 30, tzinfo=UTC),
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("cem",),
    ),
    "a holiday closes the whole day": Case(
        datetime(2026, 12, 25, 10, 0, tzinfo=UTC),
        ALL_FREE,
        ("voicemail", "support", None),
        "holiday",
        ("holiday on 2026-12-25",),
    ),
    "DST Sunday (29 March): 08:30 CEST is 06:30 UTC, open": Case(
        datetime(2026, 3, 29, 6, 30, tzinfo=UTC),
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("cem",),
    ),
    "the Sunday before: 06:30 UTC is 07:30 CET, closed": Case(
        datetime(2026, 3, 22, 6, 30, tzinfo=UTC),
        ALL_FREE,
        ("voicemail", "support", None),
        "after-hours",
        ("Sun 07:30",),
    ),
    "Monday after the spring change: 06:30 UTC is 08:30, open": Case(
        datetime(2026, 3, 30, 6, 30, tzinfo=UTC),
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("cem",),
    ),
    "Monday before the spring change: 06:30 UTC is 07:30, closed": Case(
        datetime(2026, 3, 23, 6, 30, tzinfo=UTC),
        ALL_FREE,
        ("voicemail", "support", None),
        "after-hours",
        ("Mon 07:30",),
    ),
    "autumn DST Sunday (25 October): 06:30 UTC is 07:30 CET, closed": Case(
        datetime(2026, 10, 25, 6, 30, tzinfo=UTC),
        ALL_FREE,
        ("voicemail", "support", None),
        "after-hours",
        ("Sun 07:30",),
    ),
    "Monday after the autumn change: 07:00 UTC is 08:00 CET, open": Case(
        datetime(2026, 10, 26, 7, 0, tzinfo=UTC),
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("cem",),
    ),
    "Monday before the autumn change: 06:30 UTC is 08:30 CEST, open": Case(
        datetime(2026, 10, 19, 6, 30, tzinfo=UTC),
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("cem",),
    ),
    "after hours hands over to another queue (New York closed, Berlin night open)": Case(
        datetime(2026, 3, 2, 23, 0, tzinfo=UTC),
        ALL_FREE,
        ("agent", "night", "cem"),
        "skills",
        ("sales is closed at Mon 18:00 America/New_York", "→ queue night"),
        caller=CallerFacts(tags=("sales",)),
    ),
    "both closed: the night queue's callback": Case(
        datetime(2026, 3, 3, 12, 0, tzinfo=UTC),
        ALL_FREE,
        ("callback", "night", None),
        "after-hours",
        ("sales is closed", "night is closed at Tue 13:00", "→ callback"),
        caller=CallerFacts(tags=("sales",)),
    ),
    # -- overflow ---------------------------------------------------------------------------
    "waited past support's 120 s: the overflow queue": Case(
        MON,
        ALL_FREE,
        ("agent", "overflow", "ben"),
        "skills",
        ("waited 130 s in support (overflow after 120 s)",),
        waited_s=130,
    ),
    "not yet 120 s: still support": Case(
        MON,
        (agent("ann", "away"),),
        ("queue", "support", None),
        "queued",
        ("ann is away",),
        waited_s=119,
    ),
    "a VIP who waited 40 s goes on to support": Case(
        MON,
        (agent("ann", "busy"), agent("cem", "away"), agent("ben")),
        ("agent", "support", "ben"),
        "skills",
        ("waited 40 s in vip (overflow after 30 s) → queue support",),
        caller=CallerFacts(tier="gold"),
        waited_s=40,
    ),
    "overflow to voicemail": Case(
        MON,
        (agent("ben", "busy"),),
        ("voicemail", "billing", None),
        "overflow",
        ("overflow after 300 s) → voicemail",),
        dialled="+493050000999",
        waited_s=300,
    ),
    # -- last-agent affinity ---------------------------------------------------------------
    "the last agent is free: them, though others waited longer": Case(
        MON,
        ALL_FREE,
        ("agent", "support", "ann"),
        "last-agent",
        ("ann is available and was the last agent (2 h ago)",),
        caller=last("ann", 2),
    ),
    "the last agent is away: another agent, and the reason says so": Case(
        MON,
        (agent("ann", "away"), agent("ben", idle=5), agent("cem", idle=1)),
        ("agent", "support", "ben"),
        "skills",
        ("the last agent ann is away", "ben"),
        caller=last("ann", 2),
    ),
    "the last agent is busy and nobody else is free: queued, naming both": Case(
        MON,
        (agent("ann", "busy"), agent("ben", "away")),
        ("queue", "support", None),
        "queued",
        ("the last agent ann is busy", "ben is away", "cem is offline"),
        caller=last("ann", 2),
    ),
    "the last agent outside the 72 h window: the normal pick": Case(
        MON,
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("has been idle longest of the 3 free",),
        caller=last("ann", 80),
    ),
    "the last agent does not serve the queue now chosen": Case(
        MON,
        ALL_FREE,
        ("agent", "vip", "cem"),
        "skills",
        ("the last agent ben does not serve vip",),
        caller=last("ben", 1, tier="gold"),
    ),
    "the last agent at capacity on the channel is passed over": Case(
        MON,
        (agent("ann", voice=1), agent("ben", idle=5)),
        ("agent", "support", "ben"),
        "skills",
        ("the last agent ann is at capacity on voice",),
        caller=last("ann", 2),
    ),
    # -- who is free ------------------------------------------------------------------------
    "nobody available: queued, with each agent's reason": Case(
        MON,
        (agent("ann", "away"), agent("ben", voice=1)),
        ("queue", "support", None),
        "queued",
        ("no agent of support is available", "ann is away", "ben is at capacity on voice"),
    ),
    "nobody online at all": Case(
        MON,
        (agent("ann", "offline"),),
        ("queue", "support", None),
        "no-agent-online",
        ("no agent of support is online",),
    ),
    "the agent who declined the offer is skipped: the next one": Case(
        MON,
        ALL_FREE,
        ("agent", "support", "ben"),
        "skills",
        ("ben",),
        exclude=frozenset({"cem"}),
    ),
    "the last agent declined: the next one": Case(
        MON,
        ALL_FREE,
        ("agent", "support", "cem"),
        "skills",
        ("the last agent ann declined the offer",),
        caller=last("ann", 2),
        exclude=frozenset({"ann"}),
    ),
    "everyone declined: queued": Case(
        MON,
        (agent("ann"),),
        ("queue", "support", None),
        "queued",
        ("ann declined the offer",),
        exclude=frozenset({"ann"}),
    ),
    "a full voice line is skipped": Case(
        MON,
        (agent("cem", idle=90, voice=1), agent("ann", idle=5)),
        ("agent", "support", "ann"),
        "skills",
        ("ann",),
    ),
    "room on SMS while on a call": Case(
        MON,
        (agent("cem", idle=90, voice=1, sms=2), agent("ann", "away", idle=5)),
        ("agent", "support", "cem"),
        "skills",
        ("cem",),
        channel="sms",
    ),
    "the least busy on a message channel before the longest idle": Case(
        MON,
        (agent("cem", idle=90, sms=2), agent("ann", idle=5, sms=1)),
        ("agent", "support", "ann"),
        "skills",
        ("ann", "least busy on sms"),
        channel="sms",
    ),
    "longest idle first": Case(
        MON,
        (agent("ann", idle=5), agent("ben", idle=50), agent("cem", idle=40)),
        ("agent", "support", "ben"),
        "skills",
        ("ben has been idle longest of the 3 free",),
    ),
    "equally idle: by name": Case(
        MON,
        (agent("cem", idle=7), agent("ben", idle=7)),
        ("agent", "support", "ben"),
        "skills",
        ("ben",),
    ),
    "an agent the configuration does not know is ignored": Case(
        MON,
        (agent("zed", idle=999), agent("ann", idle=1)),
        ("agent", "support", "ann"),
        "skills",
        ("ann is the only agent free",),
    ),
}


@pytest.mark.parametrize("case", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_routing_decision(case: Case) -> None:
    decision = decide(
        Contact(channel=case.channel, party="+4930123456789", dialled=case.dialled),
        case.caller,
        {a.name: a for a in case.agents},
        case.at,
        CONFIG,
        exclude=case.exclude,
        waited_s=case.waited_s,
    )
    kind, queue, who = case.goes_to
    assert (decision.target.kind, decision.target.queue, decision.target.agent) == (
        kind,
        queue,
        who,
    ), decision.reason
    assert decision.rule == case.rule, decision.reason
    for fact in case.says:
        assert fact in decision.reason


def test_the_same_facts_give_the_same_decision() -> None:
    def once() -> Decision:
        return decide(
            Contact("voice", "+4930123456789"), last("ann", 2), ALL_FREE_BOARD, MON, CONFIG
        )

    assert once() == once()
    assert once().target.agent == "ann"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(Contact("voice", "+4930123456789"), None, {}, datetime(2026, 3, 2, 9), CONFIG)


def test_a_night_range_runs_past_midnight_in_the_queue_zone() -> None:
    open_at = [
        CONFIG.queue_is_open("night", datetime(2026, 3, 2, h, 30, tzinfo=UTC))
        for h in (20, 21, 23, 4, 5, 12)
    ]
    # Berlin: 21:30 closed, 22:30 open, 00:30 and 05:30 open, 06:30 and 13:30 closed.
    assert open_at == [False, True, True, True, False, False]


def test_serves_lists_an_agents_queues() -> None:
    assert CONFIG.serves("cem") == ["support", "vip", "sales", "night"]
    assert CONFIG.serves("nobody") == []
