"""The funnel over time: cumulative counts per stage, bounded however long the campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.campaigns.funnel import funnel_series
from services.campaigns.tracking import FunnelMoments

START = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)


def test_each_point_counts_what_happened_up_to_it_from_the_starts_minute() -> None:
    moments = FunnelMoments(
        queued=3,
        sent=[START + timedelta(seconds=20), START + timedelta(seconds=95)],
        failed=[START + timedelta(seconds=100)],
    )
    series = funnel_series(moments, start=START, end=START + timedelta(seconds=10))
    assert series.step == timedelta(minutes=1)
    assert [p.at.strftime("%H:%M:%S") for p in series.points] == [
        "09:00:00",
        "09:01:00",
        "09:02:00",
        "09:03:00",
    ]
    assert [(p.counts["sent"], p.counts["failed"]) for p in series.points] == [
        (0, 0),
        (1, 0),
        (1, 0),
        (2, 1),
    ]


def test_a_week_long_campaign_is_at_most_200_points_a_round_step_apart() -> None:
    week = START + timedelta(days=7)
    moments = FunnelMoments(queued=1, sent=[week - timedelta(hours=1)])
    series = funnel_series(moments, start=START, end=week)
    assert len(series.points) <= 200
    assert series.step == timedelta(hours=1)
    assert series.points[-1].at >= week
    assert series.points[-1].counts["sent"] == 1
    odd = funnel_series(moments, start=START, end=START + timedelta(days=400), max_points=50)
    assert len(odd.points) <= 50 and odd.points[-1].counts["sent"] == 1
