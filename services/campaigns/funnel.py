"""A campaign's funnel over time: cumulative counts per stage at evenly spaced moments.

Pure: it buckets the moments ``tracking.funnel_moments`` found (the ledger's outcome times,
the delivery reports' times, the first attributed reply and opt-out of each recipient), so
the series and the figures follow the same rules and the last point equals the figures.
The step is a whole number of minutes, rounded up to a step a chart's reader can count in
(1, 2, 5, 10, 15, 30 minutes, 1, 2, 3, 6, 12 hours, a day, …), so that at most
``max_points`` points cover the span: a week-long campaign is as cheap to draw as an hour.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil

from services.campaigns.tracking import FunnelMoments

__all__ = ["MAX_POINTS", "STAGES", "FunnelPoint", "FunnelSeries", "funnel_series"]

STAGES = ("sent", "failed", "delivered", "replied", "opted_out")
MAX_POINTS = 200
_MINUTE = timedelta(minutes=1)
_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)


@dataclass(frozen=True, slots=True)
class FunnelPoint:
    at: datetime  # the counts include everything up to and including this moment
    counts: dict[str, int]  # stage -> how many so far


@dataclass(frozen=True, slots=True)
class FunnelSeries:
    queued: int
    step: timedelta
    points: list[FunnelPoint]


def funnel_series(
    moments: FunnelMoments, *, start: datetime, end: datetime, max_points: int = MAX_POINTS
) -> FunnelSeries:
    """The cumulative counts from ``start`` (floored to the minute) to ``end`` (or the last
    moment, if later), at most ``max_points`` (at least 2) points, the last at or after it."""
    if max_points < 2:
        raise ValueError("a series needs at least two points")
    ordered = {stage: sorted(getattr(moments, stage)) for stage in STAGES}
    latest = max((m[-1] for m in ordered.values() if m), default=end)
    first = start.replace(second=0, microsecond=0)
    minutes = max(ceil((max(end, latest) - first) / _MINUTE), 1)
    step = next(
        (s for s in _STEPS_MIN if ceil(minutes / s) < max_points),
        ceil(minutes / (max_points - 1)),
    )
    points = [
        FunnelPoint(at, {stage: bisect_right(ordered[stage], at) for stage in STAGES})
        for at in (first + i * step * _MINUTE for i in range(ceil(minutes / step) + 1))
    ]
    return FunnelSeries(queued=moments.queued, step=step * _MINUTE, points=points)
