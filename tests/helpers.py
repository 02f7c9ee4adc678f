"""Small test helpers: waiting on read models (never bare sleeps) and reading outcomes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer

from projections.follower import TimelineFollower
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import end_offsets, topic_size
from services.bootstrap.settings import Settings


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def bearer_of_every_role(settings: Settings, username: str = "tester") -> dict[str, str]:
    """An Authorization header for a user with every role, made through the bootstrap."""
    from services.domain.users import Role

    users = bootstrap(settings).user_directory()
    if users.find(username) is None:
        users.register(username, roles=list(Role))
    return {"Authorization": f"Bearer {users.issue_token(username).token}"}


def recorded_refs(settings: Settings) -> Counter[str]:
    """How often each (type, provider_ref) is in the customer history (the system of record)."""
    from services.domain import Customer

    history = bootstrap(settings).history()
    counts: Counter[str] = Counter()
    start = 0
    while True:
        batch = history.recorder.select_notifications(
            start=start,
            limit=5000,
            topics=[Customer.InteractionRecorded.TOPIC],
            inclusive_of_start=False,
        )
        if not batch:
            break
        for n in batch:
            e = history.mapper.to_domain_event(n)
            counts[f"{e.interaction_type}|{e.provider_ref}"] += 1
        start = batch[-1].id
    history.close()
    return counts


def timeline_follower(settings: Settings) -> TimelineFollower:
    return TimelineFollower(bootstrap(settings).history(), bootstrap(settings).timeline_view())


async def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 20.0) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see the same settings."""
    return settings.to_env()


async def records_in(settings: Settings) -> int:
    """How many records the interactions topic holds (published, whether read or not)."""
    return await topic_size(settings.kafka_bootstrap, settings.interactions_topic)


async def timeline_when_shown(settings: Settings, address: str, count: int) -> list:
    """The customer's timeline (newest first) once it shows at least ``count`` entries."""
    follower = timeline_follower(settings)
    view = bootstrap(settings).timeline_view()
    entries: list = []

    def shown() -> bool:
        nonlocal entries
        follower.catch_up()
        customer_id = view.customer_for_address(address)
        entries = view.timeline(customer_id) if customer_id else []
        return len(entries) >= count

    await eventually(shown, timeout=20, what=f"{count} timeline entries for {address}")
    return entries


async def recorded_to_end(settings: Settings, *, timeout: float = 60.0) -> None:
    """Wait until the store's positions reach the interactions topic's end offsets, as they
    stand now: everything published so far has been handled (recorded, deduplicated or
    dead-lettered), so counting after this sees anything lost or doubled."""
    ends = await end_offsets(settings.kafka_bootstrap, settings.interactions_topic)
    history = bootstrap(settings).history()
    try:

        def at_end() -> bool:
            return all(
                (history.tracked_offset(settings.interactions_topic, p) or 0) >= end
                for p, end in ends.items()
            )

        await eventually(at_end, timeout=timeout, what="the store to reach the topic's end")
    finally:
        history.close()
