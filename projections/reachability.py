"""Reachability: per customer and address, how well a channel reaches the person, and the
channels ranked best first with the reasons in words ("whatsapp: replies within an hour
(3 of 4)", "sms: undelivered twice", "email: bounced").

Pure: the fold of the customer events into facts (``fold``) and the ranking rules
(``rank``).  The stores (``reachability_sqlite`` / ``reachability_postgres``) keep the facts
per *original* customer id and load what a batch needs into a ``ReachState``; a merged
customer's facts are combined with its survivor's when asked (``rank``), so an unmerge
separates them again without rewriting anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from contracts import Channel, DeliveryStatus, status_advances, status_of
from services.domain import Customer

# Channels a message can be sent on (voice is no campaign channel: a call has no receipt).
MESSAGING = frozenset(str(c) for c in Channel) - {str(Channel.voice)}
PURPOSES = ("marketing", "service")

# The stored topics this projection reads; the store filters on them.
TOPICS = (
    Customer.Erased.TOPIC,
    Customer.InteractionRecorded.TOPIC,
    Customer.ConsentChanged.TOPIC,
    Customer.ProfileChanged.TOPIC,
    Customer.AddressLinked.TOPIC,
    Customer.Absorbed.TOPIC,
    Customer.Unmerged.TOPIC,
)

KEPT_DELAYS = 9  # reply delays kept per address, for the median
HOUR, DAY = 3600.0, 86400.0

AddressKey = tuple[UUID, str, str]  # (customer id, channel, address)


@dataclass(frozen=True)
class ChannelReach:
    """One channel of a customer, as the ranking sees it: ``address`` the best one known on
    it (None: none known), ``score`` in [0, 1], the reasons in words."""

    channel: str
    address: str | None
    reachable: bool
    score: float
    reasons: tuple[str, ...]

    @classmethod
    def _of(
        cls, channel: str, address: str | None, judged: tuple[bool, float, tuple[str, ...]]
    ) -> ChannelReach:
        # A frozen dataclass's __init__ sets each field through object.__setattr__: three
        # times the cost of the rest of ranking an address, and a campaign ranks 100 000.
        reach = object.__new__(cls)
        reach.__dict__.update(
            channel=channel, address=address, reachable=judged[0], score=judged[1],
            reasons=judged[2],
        )  # fmt: skip
        return reach


@dataclass(slots=True)
class AddressFacts:
    """What was learnt about one address of one customer (times are epoch seconds)."""

    customer_id: UUID
    channel: str
    address: str
    attempts: int = 0  # outbound messages tried (sent, or refused by the provider)
    delivered: int = 0  # of those, delivered or read now
    soft_failures: int = 0
    hard_failures: int = 0
    failure: str | None = None  # the last failure, in words
    failed_at: float | None = None
    hard_failed_at: float | None = None
    failure_streak: int = 0  # failures since the last success
    succeeded_at: float | None = None  # last delivered or read, or last inbound contact
    inbound: int = 0  # messages from the customer at this address
    replied: int = 0  # outbound messages answered at this address
    awaiting: int = 0  # outbound messages sent since the last inbound one
    awaiting_at: float | None = None  # the latest of them
    reply_delays: tuple[float, ...] = ()  # seconds, the last few replies

    @property
    def key(self) -> AddressKey:
        return (self.customer_id, self.channel, self.address)


@dataclass
class MessageState:
    """An outbound message: whose facts count it, and the furthest status it reached."""

    message_ref: str
    customer_id: UUID
    channel: str
    address: str
    status: str | None = None


@dataclass
class CustomerFacts:
    customer_id: UUID
    preferred_channel: str | None = None
    consent: dict[str, bool] = field(default_factory=dict)  # "sms:marketing" -> granted
    survivor_id: UUID | None = None  # merged into this one


@dataclass
class ReachState:
    """The rows a batch of events reads and writes; the store loads them before ``fold``
    (``wanted``) and writes back the changed ones (``changed_*``)."""

    addresses: dict[AddressKey, AddressFacts] = field(default_factory=dict)
    messages: dict[str, MessageState] = field(default_factory=dict)
    customers: dict[UUID, CustomerFacts] = field(default_factory=dict)
    changed_addresses: set[AddressKey] = field(default_factory=set)
    changed_messages: set[str] = field(default_factory=set)
    changed_customers: set[UUID] = field(default_factory=set)

    def address(self, customer_id: UUID, channel: str, address: str) -> AddressFacts:
        key = (customer_id, channel, address)
        facts = self.addresses.get(key)
        if facts is None:
            facts = self.addresses[key] = AddressFacts(customer_id, channel, address)
        self.changed_addresses.add(key)
        return facts

    def customer(self, customer_id: UUID) -> CustomerFacts:
        facts = self.customers.get(customer_id)
        if facts is None:
            facts = self.customers[customer_id] = CustomerFacts(customer_id)
        self.changed_customers.add(customer_id)
        return facts


@dataclass(frozen=True)
class Wanted:
    """The rows a batch reads: the messages first (a report counts on its message's address,
    which may be another customer's), then these addresses and those of the messages."""

    message_refs: set[str]
    addresses: set[AddressKey]
    customers: set[UUID]


def wanted(events: Sequence[Any]) -> Wanted:
    refs: set[str] = set()
    keys: set[AddressKey] = set()
    customers: set[UUID] = set()
    for event in events:
        if isinstance(event, Customer.InteractionRecorded):
            if event.channel not in MESSAGING:
                continue
            keys.add((event.originator_id, event.channel, event.party))
            ref = _message_ref(event)
            if ref is not None:
                refs.add(ref)
        elif isinstance(event, Customer.AddressLinked):
            channel = channel_of_address(event.address)
            if channel is not None:
                keys.add((event.originator_id, channel, event.address))
        elif isinstance(event, Customer.Absorbed | Customer.Unmerged):
            customers.add(event.absorbed_id)
        else:
            customers.add(event.originator_id)
    return Wanted(refs, keys, customers)


# -- the fold --------------------------------------------------------------------------------


def fold(state: ReachState, events: Iterable[Any]) -> None:
    """Apply ``events`` (stored order) to ``state``, which holds the rows ``wanted`` named."""
    for event in events:
        if isinstance(event, Customer.InteractionRecorded):
            if event.channel in MESSAGING:
                _contact(state, event)
        elif isinstance(event, Customer.ConsentChanged):
            consent = state.customer(event.originator_id).consent
            consent[f"{event.channel}:{event.purpose}"] = event.granted
        elif isinstance(event, Customer.ProfileChanged):
            if "preferred_channel" in event.changes:
                preferred = event.changes["preferred_channel"]
                state.customer(event.originator_id).preferred_channel = preferred
        elif isinstance(event, Customer.AddressLinked):
            channel = channel_of_address(event.address)
            if channel is not None and not event.shared:
                state.address(event.originator_id, channel, event.address)
        elif isinstance(event, Customer.Absorbed):
            state.customer(event.absorbed_id).survivor_id = event.originator_id
        elif isinstance(event, Customer.Unmerged):
            state.customer(event.absorbed_id).survivor_id = None


def _contact(state: ReachState, event: Customer.InteractionRecorded) -> None:
    at = event.occurred_at.timestamp()
    kind = event.interaction_type
    if kind == "message.received.v1":
        facts = state.address(event.originator_id, event.channel, event.party)
        facts.inbound += 1
        _succeeded(facts, at)
        if facts.awaiting and facts.awaiting_at is not None and at >= facts.awaiting_at:
            facts.replied += 1
            facts.reply_delays = (*facts.reply_delays, at - facts.awaiting_at)[-KEPT_DELAYS:]
            facts.awaiting, facts.awaiting_at = 0, None
        return
    ref = _message_ref(event)
    if ref is None:
        return
    message = state.messages.get(ref)
    if message is None:
        message = state.messages[ref] = MessageState(
            ref, event.originator_id, event.channel, event.party
        )
        state.address(message.customer_id, message.channel, message.address).attempts += 1
    state.changed_messages.add(ref)
    facts = state.address(message.customer_id, message.channel, message.address)
    if kind == "message.sent.v1":
        facts.awaiting += 1
        facts.awaiting_at = max(at, facts.awaiting_at or at)
        status = _SENT
    else:
        status = status_of(event.payload["status"])
    before = status_of(message.status) if message.status else None
    if not status_advances(before, status):
        return  # a late report that says less than one already applied
    message.status = str(status)
    if before in _SUCCESS:
        facts.delivered -= 1  # delivered, then reported failed: the failure counts
    if status in _SUCCESS:
        facts.delivered += 1
        _succeeded(facts, at)
    elif status.is_terminal:
        p = event.payload
        hard, words = failure_of(event.channel, status, p.get("error_code"), p.get("error_message"))
        facts.failure, facts.failure_streak = words, facts.failure_streak + 1
        facts.failed_at = max(at, facts.failed_at or at)
        if hard:
            facts.hard_failures += 1
            facts.hard_failed_at = max(at, facts.hard_failed_at or at)
        else:
            facts.soft_failures += 1


_SUCCESS = (DeliveryStatus.delivered, DeliveryStatus.read)
_SENT = DeliveryStatus.sent  # read once: an enum member off its class is Python code (3.11)


def _succeeded(facts: AddressFacts, at: float) -> None:
    facts.succeeded_at = max(at, facts.succeeded_at or at)
    facts.failure_streak = 0


def _message_ref(event: Customer.InteractionRecorded) -> str | None:
    """The outbound message a contact is about: a send, or a report on one.  A send our own
    policy refused (no consent) says nothing about the address: None."""
    if event.interaction_type == "message.sent.v1":
        return event.provider_ref
    if event.interaction_type == "delivery.status.v1":
        if event.payload.get("error_code") == "refused":
            return None
        return event.payload.get("message_ref")
    return None


def channel_of_address(address: str) -> str | None:
    """The messaging channel an address is written for (a bare number: SMS)."""
    prefix, _, rest = address.partition(":")
    if rest and prefix in MESSAGING:
        return prefix
    if address.startswith("+"):
        return str(Channel.sms)
    if "@" in address:
        return str(Channel.email)
    return None


# -- failures: the address is wrong (hard) or the message did not get through (soft) ---------

# Provider codes that say the address itself is wrong, and how to say it.
_TWILIO_HARD = {
    "21211": "invalid number",
    "21614": "not a mobile number",
    "30005": "unknown number",
    "30006": "landline or unreachable carrier",
    "21610": "unsubscribed (STOP)",
    "63024": "invalid recipient",
}
_HARD_CODES: dict[str, dict[str, str]] = {
    "sms": _TWILIO_HARD,
    "whatsapp": {**_TWILIO_HARD, "131026": "not on WhatsApp"},
    "telegram": {"403": "blocked us"},
    "messenger": {"551": "not available"},
    "email": {"550": "bounced", "551": "bounced", "553": "bounced"},
}
# A DSN status (RFC 3463): 5.x.x is permanent, but a full mailbox (5.2.2) and a policy
# refusal (5.7.x) say nothing against the address.
_DSN = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


def failure_of(
    channel: str, status: DeliveryStatus, error_code: str | None, error_message: str | None
) -> tuple[bool, str]:
    """Whether a failed or undelivered message says the address is wrong (hard), and the
    failure in words."""
    code = (error_code or "").strip()
    words = _HARD_CODES.get(channel, {}).get(code)
    if words is not None:
        return True, words
    if channel == str(Channel.email):
        dsn = _DSN.match(code)
        if dsn is not None:
            permanent = dsn[1] == "5" and (dsn[2], dsn[3]) != ("2", "2") and dsn[2] != "7"
            return (True, "bounced") if permanent else (False, "bounced (temporarily)")
        if not code:  # a bounce that gave no status: "Action: failed" is permanent
            return True, "bounced"
    return False, str(status)


# -- ranking ---------------------------------------------------------------------------------


def combine(rows: Iterable[AddressFacts]) -> AddressFacts:
    """One address's facts learnt on several customers (a survivor and those merged into it)."""
    rows = list(rows)
    if len(rows) == 1:
        return rows[0]
    first = rows[0]
    succeeded = _latest(r.succeeded_at for r in rows)
    failed = max(rows, key=lambda r: r.failed_at or 0.0)
    return replace(
        first,
        attempts=sum(r.attempts for r in rows),
        delivered=sum(r.delivered for r in rows),
        soft_failures=sum(r.soft_failures for r in rows),
        hard_failures=sum(r.hard_failures for r in rows),
        failure=failed.failure,
        failed_at=failed.failed_at,
        hard_failed_at=_latest(r.hard_failed_at for r in rows),
        failure_streak=sum(
            r.failure_streak for r in rows if (r.failed_at or 0.0) > (succeeded or 0.0)
        ),
        succeeded_at=succeeded,
        inbound=sum(r.inbound for r in rows),
        replied=sum(r.replied for r in rows),
        reply_delays=tuple(d for r in rows for d in r.reply_delays)[-KEPT_DELAYS:],
        awaiting=sum(r.awaiting for r in rows),
        awaiting_at=_latest(r.awaiting_at for r in rows),
    )


def _latest(times: Iterable[float | None]) -> float | None:
    return max((t for t in times if t is not None), default=None)


def rank(
    customers: Sequence[CustomerFacts],
    facts: Sequence[AddressFacts],
    *,
    purpose: str = "marketing",
) -> list[ChannelReach]:
    """The channels of one person, best first.  ``customers``: the person's rows, the
    survivor's first (an empty ``CustomerFacts`` when it has none), then those merged into
    it; ``facts``: all their addresses'.  Not reachable (opted out for ``purpose``, or the
    address was refused for good and never worked since) ranks last; the stated preferred
    channel comes first when it is reachable."""
    preferred = customers[0].preferred_channel if customers else None
    if len(customers) > 1:
        by_address: dict[tuple[str, str], list[AddressFacts]] = {}
        for f in facts:
            by_address.setdefault((f.channel, f.address), []).append(f)
        facts = [combine(rows) for rows in by_address.values()]
        preferred = next((c.preferred_channel for c in customers if c.preferred_channel), None)
    consent = _consent(customers)
    best: dict[str, tuple[tuple, ChannelReach]] = {}
    for f in facts:
        channel = f.channel
        judged = _judged(f, consent, purpose, channel == preferred)
        reachable = judged[0]
        key = (
            not reachable,
            not (reachable and channel == preferred),
            -judged[1],
            channel,
            f.address,
        )
        held = best.get(channel)
        if held is None or key < held[0]:
            best[channel] = (key, ChannelReach._of(channel, f.address, judged))
    if preferred in MESSAGING and preferred not in best:
        judged = (False, 0.0, ("preferred channel", "no address known"))
        best[preferred] = (
            (True, True, 0.0, preferred, ""),
            ChannelReach._of(preferred, None, judged),
        )
    if len(best) == 2:  # the common case, without sorted()'s machinery
        (a_key, a), (b_key, b) = best.values()
        return [a, b] if a_key < b_key else [b, a]
    return [reach for _, reach in sorted(best.values(), key=_first)]


def _first(pair: tuple[tuple, ChannelReach]) -> tuple:
    return pair[0]


def _consent(customers: Sequence[CustomerFacts]) -> dict[str, bool]:
    """The person's consent: an opt-out on any of the merged customers is never lost."""
    if len(customers) <= 1:
        return customers[0].consent if customers else {}
    merged: dict[str, bool] = {}
    for c in customers:
        for key, granted in c.consent.items():
            merged[key] = merged.get(key, True) and granted
    return merged


def _judged(
    f: AddressFacts, consent: dict[str, bool], purpose: str, preferred: bool
) -> tuple[bool, float, tuple[str, ...]]:
    """``_judge``, remembered: a campaign ranks 100 000 customers, and most look alike."""
    refused = f.hard_failed_at is not None and (f.succeeded_at or 0.0) < f.hard_failed_at
    speed = _speed(_median(f.reply_delays)) if f.reply_delays else None
    if consent:
        said = (consent.get(f"{f.channel}:service"), consent.get(f"{f.channel}:marketing"))
    else:
        said = _NOTHING_SAID
    # Everything the judgement depends on (times only through ``refused`` and ``speed``).
    case = (
        f.channel, purpose, preferred, said, refused, speed, f.failure, f.failure_streak,
        f.attempts, f.delivered, f.soft_failures, f.hard_failures, f.replied, f.inbound,
    )  # fmt: skip
    judged = _JUDGED.get(case)
    if judged is None:
        if len(_JUDGED) >= 100_000:
            _JUDGED.clear()
        judged = _JUDGED[case] = _judge(f, said, purpose, preferred, refused, speed)
    return judged


_NOTHING_SAID = (None, None)
_JUDGED: dict[tuple, tuple[bool, float, tuple[str, ...]]] = {}


def _judge(
    f: AddressFacts,
    said: tuple[bool | None, bool | None],
    purpose: str,
    preferred: bool,
    refused: bool,
    speed: str | None,
) -> tuple[bool, float, tuple[str, ...]]:
    """Whether the address reaches the person, its score and the reasons."""
    reasons = ["preferred channel"] if preferred else []
    reachable = True
    service, marketing = said
    if service is False:
        reachable = False
        reasons.append("opted out")
    elif marketing is False:
        reachable = purpose != "marketing"
        reasons.append("opted out of marketing")
    if refused:
        reachable = False
        reasons.append(_times(f.failure or "refused", f.hard_failures))
    elif f.failure_streak:
        reasons.append(_times(f.failure or "failed", f.failure_streak))
    if f.replied:
        reasons.append(f"replies {speed} ({f.replied} of {f.attempts})")
    elif f.attempts and not f.failure_streak and not refused:
        if f.delivered:
            reasons.append(f"delivered {f.delivered} of {f.attempts}, no reply yet")
        else:
            reasons.append(f"sent {f.attempts}, no reply yet")
    if f.inbound:
        reasons.append(_times("wrote to us", f.inbound))
    if not f.attempts and not f.inbound:
        reasons.append("not tried yet")
    return reachable, score_of(f) if reachable else 0.0, tuple(reasons)


def score_of(f: AddressFacts) -> float:
    """How likely a message here reaches the person and is answered, in [0, 1]: replies
    (and how fast) weigh most, then delivery, then having written to us; each failure since
    the last success takes some off."""
    score = 0.2 if f.inbound else 0.05
    if f.attempts:
        score += 0.4 * min(f.replied / f.attempts, 1.0)
        if f.reply_delays:
            median = _median(f.reply_delays)
            score += 0.2 if median <= HOUR else 0.1 if median <= DAY else 0.05
        finished = f.delivered + f.soft_failures + f.hard_failures
        if finished:
            score += 0.2 * f.delivered / finished
    score -= 0.15 * min(f.failure_streak, 5)
    return round(min(max(score, 0.0), 1.0), 3)


def _median(values: Sequence[float]) -> float:
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _speed(seconds: float) -> str:
    if seconds <= HOUR:
        return "within an hour"
    if seconds <= DAY:
        return "within a day"
    days = round(seconds / DAY)
    return f"after about {days} days"


def _times(what: str, n: int) -> str:
    if n <= 1:
        return what
    return f"{what} {'twice' if n == 2 else f'{n} times'}"
