"""Simulator traffic through the real broker into the timeline; the view rebuilds from zero."""

from __future__ import annotations

import asyncio
import json

from channels.publishing import InteractionPublisher
from contracts import InvalidInteraction, parse_interaction
from deploy.simulator import TrafficGenerator, make_customers
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from tests.helpers import eventually, recorded_refs, timeline_follower


async def test_simulated_mix_is_recorded_once_each_and_bad_records_are_dead_lettered(
    hub_settings: Settings,
) -> None:
    generator = TrafficGenerator(make_customers(30), duplicate_rate=0.05, malformed_rate=0.02)
    gen = generator.records()
    records = [next(gen) for _ in range(600)]
    valid: set[str] = set()
    malformed = 0
    for _, value in records:
        try:
            event = parse_interaction(value)
        except InvalidInteraction:
            malformed += 1
        else:
            valid.add(f"{event.type}|{event.provider_ref}")
    assert malformed > 0 and len(valid) < len(records) - malformed  # the mix has both

    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    async with InteractionPublisher(
        hub_settings.kafka_bootstrap, topic=hub_settings.interactions_topic
    ) as pub:
        await asyncio.gather(*[await pub.publish_unconfirmed(v, key=k) for k, v in records])

    recorder = bootstrap(hub_settings).recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        await eventually(
            lambda: recorder.stats.consumed >= len(records),
            timeout=60,
            what="all simulated records consumed",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    counts = recorded_refs(hub_settings)
    assert set(counts) == valid
    assert set(counts.values()) == {1}
    assert recorder.stats.dead_lettered == malformed
    # What `switchboard simulate` reports is what the recorder did with it.
    assert recorder.stats.recorded == len(records) - generator.retries - generator.malformed
    assert recorder.stats.duplicates == generator.retries
    assert recorder.stats.dead_lettered == generator.malformed

    # The timeline shows every recorded interaction, and shows the same after a rebuild.
    follower = timeline_follower(hub_settings)
    follower.catch_up()
    view = bootstrap(hub_settings).timeline_view()
    busiest = view.customer_for_address("+493050000000")
    assert busiest is not None
    before = view.timeline(busiest, limit=1000)
    assert len(before) == view.summary(busiest).contact_count > 0
    view.reset()
    assert view.customer_for_address("+493050000000") is None
    timeline_follower(hub_settings).catch_up()
    after = view.timeline(busiest, limit=1000)
    assert [(e.position, e.type, e.summary) for e in after] == [
        (e.position, e.type, e.summary) for e in before
    ]
    assert json.dumps(after[0].payload, sort_keys=True) == json.dumps(
        before[0].payload, sort_keys=True
    )


def test_two_simulator_runs_make_new_contacts_unless_a_seed_replays_one() -> None:
    def refs(seed: int) -> set[bytes]:
        gen = TrafficGenerator(make_customers(5), seed=seed, malformed_rate=0).records()
        return {next(gen)[1].split(b'"provider_ref":')[1][:60] for _ in range(50)}

    assert refs(1).isdisjoint(refs(2))
    assert refs(3) == refs(3)
