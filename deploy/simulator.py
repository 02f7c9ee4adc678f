"""Plays realistic contact-center traffic into the hub through Kafka.

Customers call (ringing, then answered and ended, or missed, sometimes a voicemail),
write e-mails, SMS, WhatsApp, Messenger and Telegram messages, get replies with
delivery statuses, and opt in or out.  Like real providers, it sometimes delivers
the same event twice, and a few records are malformed (for the dead-letter path).
Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts import (
    CallAnswered,
    CallEnded,
    CallMissed,
    CallRinging,
    Channel,
    ConsentChanged,
    DeliveryStatus,
    DeliveryStatusChanged,
    Direction,
    InteractionEvent,
    MessageReceived,
    MessageSent,
    VoicemailRecorded,
    dump_interaction,
    identity_of,
)

FIRST = [
    "Ada",
    "Bo",
    "Chen",
    "Dara",
    "Emil",
    "Fatima",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kemal",
    "Lea",
    "Mo",
    "Nia",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
]
LAST = [
    "Schmidt",
    "Okafor",
    "Lindqvist",
    "Novak",
    "Garcia",
    "Tanaka",
    "Müller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Jensen",
]
TEXTS = [
    "Hi, my order hasn't arrived yet, can you check?",
    "I'd like to change my delivery address please.",
    "Thanks, that solved it!",
    "Can I get a copy of my last invoice?",
    "The app keeps logging me out.",
    "When does my contract renew?",
]


@dataclass(frozen=True)
class SimCustomer:
    index: int
    phone: str
    email: str
    telegram: str
    messenger: str

    @property
    def whatsapp(self) -> str:
        return f"whatsapp:{self.phone}"


def make_customers(n: int, seed: int = 7) -> list[SimCustomer]:
    rng = random.Random(seed)
    people = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        people.append(
            SimCustomer(
                index=i,
                # Berlin landline numbers: valid for phonenumbers, not anybody's real line.
                phone=f"+4930{50000000 + i:08d}",
                email=f"{first}.{last}.{i}@example.com".lower().replace("ü", "ue"),
                telegram=f"telegram:{100000000 + i}",
                messenger=f"messenger:{7000000000000000 + i}",
            )
        )
    return people


class TrafficGenerator:
    """Yields raw Kafka records (key, value bytes) of a realistic mix."""

    def __init__(
        self,
        customers: list[SimCustomer],
        *,
        seed: int = 7,
        duplicate_rate: float = 0.02,
        malformed_rate: float = 0.005,
    ) -> None:
        self.customers = customers
        self.rng = random.Random(seed)
        # In every provider ref: a second run with another seed makes new contacts rather
        # than repeating the first run's, which the recorder would drop as provider retries.
        self.run_tag = f"{seed & 0xFFFFFFFF:08x}"
        self.duplicate_rate = duplicate_rate
        self.malformed_rate = malformed_rate
        self.clock = datetime.now(UTC) - timedelta(hours=1)
        self.seq = 0
        self.retries = 0  # records repeated as a provider would: the recorder keeps one
        self.malformed = 0  # records no contract accepts: the recorder dead-letters them
        self.recent: list[tuple[str, bytes]] = []
        self.kinds: list[tuple[float, Callable[[SimCustomer], list[InteractionEvent]]]] = [
            (0.30, self._call),
            (0.20, self._email),
            (0.20, self._sms),
            (0.12, self._whatsapp),
            (0.08, self._telegram),
            (0.05, self._messenger),
            (0.05, self._consent),
        ]

    def records(self) -> Iterator[tuple[str, bytes]]:
        weights = [w for w, _ in self.kinds]
        makers = [m for _, m in self.kinds]
        # A few customers contact often, most rarely (Zipf-like), as in a real contact center.
        popularity = [1 / (i + 1) ** 0.8 for i in range(len(self.customers))]
        cumulative = list(itertools.accumulate(popularity))
        while True:
            if self.recent and self.rng.random() < self.duplicate_rate:
                self.retries += 1
                yield self.rng.choice(self.recent)  # the provider retried a delivery
                continue
            if self.rng.random() < self.malformed_rate:
                self.malformed += 1
                yield self._malformed()
                continue
            customer = self.rng.choices(self.customers, cum_weights=cumulative)[0]
            for event in self.rng.choices(makers, weights)[0](customer):
                # Keyed like the channels key (InteractionPublisher.publish): by the person,
                # so a number's calls, SMS and WhatsApp share a partition and a recorder.
                record = (identity_of(event.party), dump_interaction(event))
                self.recent = [*self.recent[-99:], record]
                yield record

    def _next(self) -> tuple[str, datetime]:
        self.seq += 1
        self.clock += timedelta(milliseconds=self.rng.randint(10, 2000))
        return f"{self.run_tag}{self.seq:010d}", self.clock

    def _call(self, c: SimCustomer) -> list[InteractionEvent]:
        ref, at = self._next()
        sid = f"CA{ref}{c.index:022d}"[:34]
        common = dict(
            party=c.phone, call_id=sid, direction=Direction.inbound, endpoint="+18005550100"
        )
        events: list[InteractionEvent] = [
            CallRinging(provider_ref=f"{sid}:ringing", occurred_at=at, **common)
        ]
        roll = self.rng.random()
        if roll < 0.75:
            agent = f"agent_{self.rng.randint(1, 40)}"
            talk = round(self.rng.uniform(20, 900), 1)
            events.append(
                CallAnswered(
                    provider_ref=f"{sid}:answered",
                    occurred_at=at + timedelta(seconds=8),
                    agent=agent,
                    **common,
                )
            )
            events.append(
                CallEnded(
                    provider_ref=f"{sid}:completed",
                    occurred_at=at + timedelta(seconds=8 + talk),
                    duration_s=talk,
                    agent=agent,
                    **common,
                )
            )
        else:
            events.append(
                CallMissed(
                    provider_ref=f"{sid}:missed",
                    occurred_at=at + timedelta(seconds=30),
                    reason=self.rng.choice(["no-answer", "abandoned", "busy"]),
                    **common,
                )
            )
            if roll > 0.9:
                events.append(
                    VoicemailRecorded(
                        provider_ref=f"{sid}:voicemail",
                        occurred_at=at + timedelta(seconds=60),
                        recording_url=f"https://api.twilio.com/2010-04-01/Recordings/RE{ref}",
                        duration_s=round(self.rng.uniform(5, 60), 1),
                        **common,
                    )
                )
        return events

    def _message(
        self, channel: Channel, party: str, c: SimCustomer, *, reply: bool
    ) -> list[InteractionEvent]:
        ref, at = self._next()
        subject = "Question about my order" if channel is Channel.email else None
        events: list[InteractionEvent] = [
            MessageReceived(
                channel=channel,
                party=party,
                provider_ref=f"in-{channel}-{ref}",
                occurred_at=at,
                body=self.rng.choice(TEXTS),
                subject=subject,
            )
        ]
        if reply:
            out_ref = f"out-{channel}-{ref}"
            events.append(
                MessageSent(
                    channel=channel,
                    party=party,
                    provider_ref=out_ref,
                    occurred_at=at + timedelta(minutes=3),
                    body="Thanks for reaching out, we're on it.",
                    subject=f"Re: {subject}" if subject else None,
                )
            )
            if channel is not Channel.email:
                for status, delay in ((DeliveryStatus.sent, 4), (DeliveryStatus.delivered, 5)):
                    events.append(
                        DeliveryStatusChanged(
                            channel=channel,
                            party=party,
                            provider_ref=f"{out_ref}:{status}",
                            occurred_at=at + timedelta(minutes=delay),
                            status=status,
                            message_ref=out_ref,
                        )
                    )
        return events

    def _email(self, c: SimCustomer) -> list[InteractionEvent]:
        return self._message(Channel.email, c.email, c, reply=self.rng.random() < 0.5)

    def _sms(self, c: SimCustomer) -> list[InteractionEvent]:
        return self._message(Channel.sms, c.phone, c, reply=self.rng.random() < 0.5)

    def _whatsapp(self, c: SimCustomer) -> list[InteractionEvent]:
        return self._message(Channel.whatsapp, c.whatsapp, c, reply=self.rng.random() < 0.5)

    def _telegram(self, c: SimCustomer) -> list[InteractionEvent]:
        return self._message(Channel.telegram, c.telegram, c, reply=False)

    def _messenger(self, c: SimCustomer) -> list[InteractionEvent]:
        return self._message(Channel.messenger, c.messenger, c, reply=False)

    def _consent(self, c: SimCustomer) -> list[InteractionEvent]:
        ref, at = self._next()
        granted = self.rng.random() < 0.3
        return [
            ConsentChanged(
                channel=Channel.sms,
                direction=Direction.inbound,
                party=c.phone,
                provider_ref=f"SM{ref}",
                occurred_at=at,
                purpose="marketing",
                granted=granted,
                source="sms-keyword",
                keyword="START" if granted else "STOP",
            )
        ]

    def _malformed(self) -> tuple[str, bytes]:
        _, at = self._next()
        return self.rng.choice(
            [
                ("garbage", b"{not json"),
                (
                    "+4930",
                    b'{"type": "call.ringing.v1", "party": "not a number", "channel": "voice"}',
                ),
                (
                    "x",
                    b'{"type": "fax.received.v1", "occurred_at": "%s"}' % at.isoformat().encode(),
                ),
                (
                    "naive",
                    b'{"type": "message.received.v1", "channel": "sms", "direction": "inbound", '
                    b'"party": "+493012345678", "provider_ref": "n1", "body": "hi", '
                    b'"occurred_at": "2025-01-01T10:00:00"}',
                ),
            ]
        )


@dataclass
class SimulationResult:
    published: int
    seconds: float
    retries: int = 0
    malformed: int = 0
    seed: int | None = None  # the run's seed: ``simulate(seed=...)`` replays it

    @property
    def new_contacts(self) -> int:
        return self.published - self.retries - self.malformed


async def simulate(
    publish: Callable[[bytes, str], asyncio.Future],
    *,
    customers: int,
    rate: float,
    duration: float,
    seed: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_in_flight: int = 2000,
) -> SimulationResult:
    """Publish ``rate`` records/s for ``duration`` s.

    ``publish(value, key)`` hands a record to the producer and returns its delivery future.
    The customers are always the same population; the traffic is new on every run unless
    ``seed`` replays an earlier one.
    """
    if seed is None:
        seed = random.SystemRandom().getrandbits(32)
    generator = TrafficGenerator(make_customers(customers), seed=seed)
    gen = generator.records()
    total = int(rate * duration)
    start = time.monotonic()
    in_flight: list[asyncio.Future] = []
    for i in range(total):
        key, value = next(gen)
        in_flight.append(await publish(value, key))
        if len(in_flight) >= max_in_flight:
            await asyncio.gather(*in_flight)
            in_flight.clear()
        due = start + (i + 1) / rate
        if (ahead := due - time.monotonic()) > 0.001:
            await asyncio.gather(*in_flight)
            in_flight.clear()
            await asyncio.sleep(ahead)
        if on_progress is not None:
            on_progress(1)
    await asyncio.gather(*in_flight)
    return SimulationResult(
        published=total,
        seconds=time.monotonic() - start,
        retries=generator.retries,
        malformed=generator.malformed,
        seed=seed,
    )
