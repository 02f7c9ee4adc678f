"""One identity per person under fire: a stream of contacts on every phone channel and by
e-mail, merges decided while the recorder records them, the recorder SIGKILLed mid-stream and
restarted — nothing lost, nothing doubled, and nothing on the wrong customer: every contact is
on the customer its address led to when it was recorded (after a merge: the survivor).

Real Kafka, the recorder as a child process; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived, identity_of
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.domain import Customer
from tests.e2e.processes import RecorderProcess
from tests.helpers import eventually, recorded_to_end

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
PEOPLE = 24
MERGED = range(0, PEOPLE, 2)  # every other person's e-mail customer is merged into the phone one


def phone(person: int) -> str:
    return f"+4930{70000000 + person:08d}"


def mail(person: int) -> str:
    return f"person{person}@example.com"


def contact(i: int) -> MessageReceived:
    person = i % PEOPLE
    kind = (i // PEOPLE) % 4
    channel, party = [
        (Channel.sms, phone(person)),
        (Channel.whatsapp, f"whatsapp:{phone(person)}"),
        (Channel.email, mail(person)),
        (Channel.sms, phone(person)),
    ][kind]
    return MessageReceived(
        channel=channel,
        party=party,
        provider_ref=f"ID{i:06d}",
        occurred_at=T0 + timedelta(seconds=i),
        body=f"contact {i}",
        subject="hello" if channel == Channel.email else None,
    )


async def publish(settings: Settings, first: int, last: int, rate: float) -> None:
    async with InteractionPublisher(
        settings.kafka_bootstrap, topic=settings.interactions_topic
    ) as pub:
        for i in range(first, last):
            await pub.publish(contact(i))
            if i % 9 == 0:
                await pub.publish(contact(i))  # the provider delivered it again
            await asyncio.sleep(1 / rate)


def stored(settings: Settings) -> list[tuple[int, object]]:
    """Every customer event in the store, in notification order."""
    history = bootstrap(settings).history()
    events: list[tuple[int, object]] = []
    start = 0
    while batch := history.recorder.select_notifications(
        start=start, limit=5000, inclusive_of_start=False
    ):
        events += [(n.id, history.mapper.to_domain_event(n)) for n in batch]
        start = batch[-1].id
    return events


def recorded_count(settings: Settings) -> int:
    history = bootstrap(settings).history()
    return len(
        history.recorder.select_notifications(
            start=1, limit=10**6, topics=[Customer.InteractionRecorded.TOPIC]
        )
    )


async def test_merges_while_recording_and_a_sigkill_put_every_contact_once_on_the_right_customer(
    hub_settings: Settings, tmp_path: Path
) -> None:
    n = 960
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    recorder = RecorderProcess(hub_settings, tmp_path / "recorder-1.log").start()
    await eventually(lambda: bool(recorder.assignments()), timeout=60, what="partitions")
    # Everyone has made contact on every channel before the merges are decided.
    await publish(hub_settings, 0, PEOPLE * 4, rate=300)
    await eventually(
        lambda: recorded_count(hub_settings) >= PEOPLE * 4, timeout=60, what="first contacts"
    )
    history = bootstrap(hub_settings).history(cached=False)
    stream = asyncio.create_task(publish(hub_settings, PEOPLE * 4, n, rate=250))
    try:
        for k, person in enumerate(MERGED):
            survivor = history.customer_for_address(phone(person))
            absorbed = history.customer_for_address(mail(person))
            assert survivor != absorbed
            await asyncio.to_thread(
                history.merge, survivor, absorbed, by="agent-1", reason="same person"
            )
            if k == len(MERGED) // 2:
                recorder.kill()  # mid-stream, between merges
                killed_at = recorded_count(hub_settings)
                recorder = RecorderProcess(hub_settings, tmp_path / "recorder-2.log").start()
            await asyncio.sleep(0.1)
        await stream
        await eventually(
            lambda: recorded_count(hub_settings) >= n, timeout=120, what=f"all {n} recorded"
        )
        await recorded_to_end(hub_settings)
    finally:
        recorder.stop()

    assert killed_at < n, "the kill came after everything was recorded: not mid-stream"
    events = stored(hub_settings)
    contacts = [(i, e) for i, e in events if isinstance(e, Customer.InteractionRecorded)]
    counts = Counter(e.provider_ref for _, e in contacts)
    assert {k: v for k, v in counts.items() if v != 1} == {}, "doubled"
    assert set(counts) == {f"ID{i:06d}" for i in range(n)}, "lost"

    merged_at = {e.absorbed_id: i for i, e in events if isinstance(e, Customer.Absorbed)}
    assert len(merged_at) == len(MERGED)
    first_of: dict[str, UUID] = {}
    for _, e in events:
        if isinstance(e, Customer.FirstContacted):
            first_of[identity_of(e.address)] = e.originator_id
    # A phone number is one customer on every phone channel.
    assert len(first_of) == PEOPLE * 2
    for position, e in contacts:
        person = int(e.provider_ref[2:]) % PEOPLE
        phone_customer = first_of[phone(person)]
        mail_customer = first_of[mail(person)]
        if e.channel != "email":
            assert e.originator_id == phone_customer, e
        elif mail_customer in merged_at and position > merged_at[mail_customer]:
            assert e.originator_id == phone_customer, f"after the merge, on {e.originator_id}"
        else:
            assert e.originator_id == mail_customer, e
    # And the identity table agrees: every address leads to the survivor now.
    for person in range(PEOPLE):
        expected = first_of[phone(person)] if person in MERGED else first_of[mail(person)]
        assert history.customer_for_address(mail(person)) == expected
        assert history.customer_for_address(f"whatsapp:{phone(person)}") == first_of[phone(person)]
