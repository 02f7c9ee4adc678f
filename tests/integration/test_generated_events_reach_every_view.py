"""Every event the contracts accept is recorded and shown by every view, on both stores.

Generated events carry any Unicode a JSON string can (NUL, controls, emoji) and times with
any offset: if the contract accepts one, the customer history stores it and the timeline
applies it; none is skipped.
"""

from __future__ import annotations

from uuid import uuid4

from hypothesis import HealthCheck, given, settings

from contracts import InvalidInteraction, parse_interaction
from projections.follower import TimelineFollower
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from tests.generated import plausible_events


def test_accepted_generated_events_are_recorded_and_shown_without_a_skip(
    hub_settings: Settings,
) -> None:
    history = bootstrap(hub_settings).history()
    view = bootstrap(hub_settings).timeline_view()
    follower = TimelineFollower(history, view)
    accepted = []

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(plausible_events())
    def record_and_show(generated) -> None:
        _, raw = generated
        try:
            event = parse_interaction(raw)
        except InvalidInteraction:
            return
        # Hypothesis replays examples while it shrinks: a fresh ref keeps each one new.
        event = event.model_copy(update={"provider_ref": f"gen-{uuid4().hex}"})
        outcome = history.record_interactions([event])
        assert outcome.recorded == 1
        follower.catch_up()
        shown = {e.provider_ref: e for e in view.timeline(view.customer_for_address(event.party))}
        assert event.provider_ref in shown, f"{event.type} recorded but not shown"
        assert view.skipped() == []
        accepted.append(event.type)

    record_and_show()
    assert len(set(accepted)) >= 5, f"too few types accepted to mean much: {set(accepted)}"
