"""The ``Campaign`` aggregate: what a campaign manager decides, as events.

draft → scheduled → running ⇄ paused → completed; draft, scheduled, running or paused →
cancelled.  Completed and cancelled are final.  The audience, templates, window, caps and
fallback are set while the campaign is a draft or scheduled (starting checks them again);
rate limits may change at any time before the end (the runner follows them).

A campaign is checked before it may be scheduled and again before it starts
(``problems``): a window that ended (or, when scheduling, started) in the past, a channel
without a rate limit above zero, a template with unknown fields, a channel the audience may
get without a template in the campaign's language.  Each problem is one sentence saying
what to change.

Pure like ``services.domain``: values in, events out; ``store.CampaignStore`` saves it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate, event

from contracts import Channel
from contracts.errors import Conflict, InputError
from services.campaigns.audience import Segment
from services.campaigns.caps import FrequencyCap
from services.campaigns.quiet_hours import QuietHours, zone_named
from services.campaigns.recipients import CampaignState
from services.campaigns.templates import ChannelTemplate, template_problems

__all__ = ["Campaign", "CampaignNotReady", "InvalidCampaignSetting", "InvalidTransition"]

FINAL: frozenset[CampaignState] = frozenset({"completed", "cancelled"})
EDITABLE: frozenset[CampaignState] = frozenset({"draft", "scheduled"})
# What each step needs the campaign to be, and what it is called in an error.
_STEPS: dict[str, tuple[frozenset[str], str]] = {
    "schedule": (frozenset({"draft"}), "scheduled"),
    "start": (frozenset({"scheduled"}), "started"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "resumed"),
    "complete": (frozenset({"running"}), "completed"),
    "cancel": (frozenset({"draft", "scheduled", "running", "paused"}), "cancelled"),
    "edit": (EDITABLE, "edited"),
    "limit": (frozenset({"draft", "scheduled", "running", "paused"}), "given new rate limits"),
}
# A scheduled start a few seconds ago is "now", not "in the past" (the clock of the form).
_START_GRACE = timedelta(minutes=1)
MARKETING_CHANNELS = frozenset(c for c in Channel if c is not Channel.voice)


class InvalidTransition(Conflict):
    """The campaign is in a state that does not allow the step."""

    def __init__(self, state: str, step: str, campaign_id: object) -> None:
        done = _STEPS[step][1]
        hint = " (it is final: create a new campaign)" if state in FINAL else ""
        super().__init__(f"a {state} campaign cannot be {done}{hint}")
        self.state, self.step, self.campaign_id = state, step, campaign_id


class InvalidCampaignSetting(InputError):
    """A setting that makes no sense on its own (a rate limit of zero, an end before the
    start); refused at once."""


class CampaignNotReady(InputError):
    """The campaign cannot be scheduled or started yet; ``problems`` says what to change."""

    def __init__(self, action: str, problems: list[str]) -> None:
        super().__init__(f"the campaign cannot be {action}: " + "; ".join(problems))
        self.problems = problems


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCampaignSetting(f"{name} {value.isoformat()} has no time zone: give one")
    return value


class Campaign(Aggregate):
    TOPIC = "switchboard:Campaign"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:Campaign.Event"

    class Created(Aggregate.Created):
        TOPIC = "switchboard:Campaign.Created"
        name: str
        language: str
        created_by: str

    class AudienceSet(Event):
        TOPIC = "switchboard:Campaign.AudienceSet"
        segment: dict[str, Any]
        channels: list[str]

        def apply(self, campaign: Campaign) -> None:
            campaign.segment_data = self.segment
            campaign.channels = list(self.channels)

    class TemplateSet(Event):
        TOPIC = "switchboard:Campaign.TemplateSet"
        template: dict[str, Any]

        def apply(self, campaign: Campaign) -> None:
            campaign.template_data[f"{self.template['channel']}:{self.template['language']}"] = (
                self.template
            )

    class ScheduleWindowSet(Event):
        TOPIC = "switchboard:Campaign.ScheduleWindowSet"
        starts_at: datetime
        ends_at: datetime
        allowed_from: str
        allowed_until: str
        time_zone: str  # for recipients whose zone nothing tells

        def apply(self, campaign: Campaign) -> None:
            campaign.starts_at, campaign.ends_at = self.starts_at, self.ends_at
            campaign.allowed_hours = (self.allowed_from, self.allowed_until)
            campaign.time_zone = self.time_zone

    class RateLimitsSet(Event):
        TOPIC = "switchboard:Campaign.RateLimitsSet"
        per_second: dict[str, float]

        def apply(self, campaign: Campaign) -> None:
            campaign.rate_limits = dict(self.per_second)

    class FallbackAllowed(Event):
        TOPIC = "switchboard:Campaign.FallbackAllowed"
        allowed: bool

        def apply(self, campaign: Campaign) -> None:
            campaign.fallback_allowed = self.allowed

    class FrequencyCapSet(Event):
        TOPIC = "switchboard:Campaign.FrequencyCapSet"
        max_contacts: int
        period_days: int

        def apply(self, campaign: Campaign) -> None:
            campaign.cap_setting = (self.max_contacts, self.period_days)

    class Scheduled(Event):
        TOPIC = "switchboard:Campaign.Scheduled"
        by: str

        def apply(self, campaign: Campaign) -> None:
            campaign.state = "scheduled"

    class Started(Event):
        TOPIC = "switchboard:Campaign.Started"
        by: str

        def apply(self, campaign: Campaign) -> None:
            campaign.state = "running"
            campaign.started_at = self.timestamp

    class Paused(Event):
        TOPIC = "switchboard:Campaign.Paused"
        by: str
        reason: str

        def apply(self, campaign: Campaign) -> None:
            campaign.state = "paused"

    class Resumed(Event):
        TOPIC = "switchboard:Campaign.Resumed"
        by: str

        def apply(self, campaign: Campaign) -> None:
            campaign.state = "running"

    class Cancelled(Event):
        TOPIC = "switchboard:Campaign.Cancelled"
        by: str
        reason: str

        def apply(self, campaign: Campaign) -> None:
            campaign.state = "cancelled"
            campaign.ended_at = self.timestamp

    class Completed(Event):
        TOPIC = "switchboard:Campaign.Completed"

        def apply(self, campaign: Campaign) -> None:
            campaign.state = "completed"
            campaign.ended_at = self.timestamp

    class Snapshot(Aggregate.Snapshot):
        TOPIC = "switchboard:Campaign.Snapshot"

    @event(Created)
    def __init__(self, name: str, language: str, created_by: str) -> None:
        self.name = name
        self.language = language
        self.created_by = created_by
        self.state: CampaignState = "draft"
        self.segment_data: dict[str, Any] | None = None
        self.channels: list[str] = []
        self.template_data: dict[str, dict[str, Any]] = {}
        self.starts_at: datetime | None = None
        self.ends_at: datetime | None = None
        self.allowed_hours = ("08:00", "21:00")
        self.time_zone = "UTC"
        self.rate_limits: dict[str, float] = {}
        self.fallback_allowed = False
        self.cap_setting = (2, 7)
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None

    @classmethod
    def create(cls, name: str, *, by: str, language: str = "en") -> Campaign:
        name = name.strip()
        if not name:
            raise InvalidCampaignSetting("a campaign needs a name")
        return cls(name=name, language=language, created_by=by)

    # -- settings -----------------------------------------------------------------------------

    def set_audience(self, segment: Segment, channels: list[str]) -> None:
        self._check("edit")
        unknown = [c for c in channels if c not in MARKETING_CHANNELS]
        if unknown:
            raise InvalidCampaignSetting(
                f"channel(s) {', '.join(unknown)} cannot carry campaign messages; choose from "
                f"{', '.join(sorted(MARKETING_CHANNELS))}"
            )
        if not channels:
            raise InvalidCampaignSetting("a campaign needs at least one channel")
        self.trigger_event(
            self.AudienceSet,
            segment=segment.model_dump(mode="json"),
            channels=list(dict.fromkeys(channels)),
        )

    def set_template(self, template: ChannelTemplate) -> None:
        """Set (or replace) the template of one channel and language.  A template with
        problems is accepted as a draft, and listed by ``problems`` until fixed."""
        self._check("edit")
        if template.channel not in MARKETING_CHANNELS:
            raise InvalidCampaignSetting(f"no templates for channel {template.channel!r}")
        self.trigger_event(self.TemplateSet, template=template.as_dict())

    def set_schedule_window(
        self,
        starts_at: datetime,
        ends_at: datetime,
        *,
        allowed_from: str = "08:00",
        allowed_until: str = "21:00",
        time_zone: str = "UTC",
    ) -> None:
        self._check("edit")
        _aware("the window's start", starts_at)
        _aware("the window's end", ends_at)
        if ends_at <= starts_at:
            raise InvalidCampaignSetting(
                f"the schedule window ends ({ends_at.isoformat()}) before it starts "
                f"({starts_at.isoformat()})"
            )
        try:
            QuietHours.parse(allowed_from, allowed_until)
        except InputError as e:
            raise InvalidCampaignSetting(e.reason) from None
        if zone_named(time_zone) is None:
            raise InvalidCampaignSetting(
                f"unknown time zone {time_zone!r}: use an IANA name such as Europe/Berlin"
            )
        self.trigger_event(
            self.ScheduleWindowSet,
            starts_at=starts_at,
            ends_at=ends_at,
            allowed_from=allowed_from,
            allowed_until=allowed_until,
            time_zone=time_zone,
        )

    def set_rate_limits(self, per_second: dict[str, float]) -> None:
        self._check("limit")
        for channel, rate in per_second.items():
            if not rate > 0:
                raise InvalidCampaignSetting(
                    f"the rate limit of {channel} is {rate:g} messages a second: give more "
                    "than zero (pause the campaign to stop sending)"
                )
        self.trigger_event(
            self.RateLimitsSet, per_second={k: float(v) for k, v in per_second.items()}
        )

    def allow_fallback(self, allowed: bool = True) -> None:
        self._check("edit")
        self.trigger_event(self.FallbackAllowed, allowed=allowed)

    def set_frequency_cap(self, max_contacts: int, *, period_days: int = 7) -> None:
        self._check("edit")
        try:
            FrequencyCap(max_contacts, timedelta(days=period_days))
        except InputError as e:
            raise InvalidCampaignSetting(e.reason) from None
        self.trigger_event(self.FrequencyCapSet, max_contacts=max_contacts, period_days=period_days)

    # -- the life cycle -----------------------------------------------------------------------

    def schedule(self, *, now: datetime, by: str) -> None:
        self._check("schedule")
        problems = self.problems(now=now, scheduling=True)
        if problems:
            raise CampaignNotReady("scheduled", problems)
        self.trigger_event(self.Scheduled, by=by)

    def start(self, *, now: datetime, by: str) -> None:
        self._check("start")
        problems = self.problems(now=now, scheduling=False)
        if problems:
            raise CampaignNotReady("started", problems)
        self.trigger_event(self.Started, by=by)

    def pause(self, *, by: str, reason: str = "") -> None:
        self._check("pause")
        self.trigger_event(self.Paused, by=by, reason=reason)

    def resume(self, *, by: str) -> None:
        self._check("resume")
        self.trigger_event(self.Resumed, by=by)

    def cancel(self, *, by: str, reason: str = "") -> None:
        self._check("cancel")
        self.trigger_event(self.Cancelled, by=by, reason=reason)

    def complete(self) -> None:
        self._check("complete")
        self.trigger_event(self.Completed)

    def _check(self, step: str) -> None:
        allowed, _ = _STEPS[step]
        if self.state not in allowed:
            raise InvalidTransition(self.state, step, self.id)

    # -- checks and what the planner reads ------------------------------------------------

    def problems(self, *, now: datetime, scheduling: bool) -> list[str]:
        """What stops the campaign from being scheduled (``scheduling``) or started now."""
        found: list[str] = []
        if self.segment_data is None:
            found.append("no audience: set a segment and the channels it may be reached on")
        if self.starts_at is None or self.ends_at is None:
            found.append("no schedule window: set when it may send")
        else:
            if self.ends_at <= now:
                found.append(
                    f"the schedule window ended at {self.ends_at.isoformat()}, in the past: "
                    "set a window that ends in the future"
                )
            elif scheduling and self.starts_at < now - _START_GRACE:
                found.append(
                    f"the schedule window starts at {self.starts_at.isoformat()}, in the past: "
                    "start it now or later"
                )
        for channel in self.channels:
            rate = self.rate_limits.get(channel)
            if rate is None or not rate > 0:
                found.append(f"no rate limit for {channel}: set one above zero (messages a second)")
            if f"{channel}:{self.language}" not in self.template_data:
                found.append(
                    f"no {channel} template in {self.language} (the campaign's language), "
                    f"but the audience may get {channel}: add one"
                )
        for template in self.templates.values():
            if template.channel in self.channels:
                found += template_problems(template)
        return found

    @property
    def segment(self) -> Segment:
        return Segment.model_validate(self.segment_data or {})

    @property
    def templates(self) -> dict[str, ChannelTemplate]:
        """By ``"<channel>:<language>"``."""
        return {k: ChannelTemplate.from_dict(v) for k, v in self.template_data.items()}

    @property
    def quiet_hours(self) -> QuietHours:
        return QuietHours.parse(*self.allowed_hours)

    @property
    def default_zone(self) -> ZoneInfo:
        return zone_named(self.time_zone) or ZoneInfo("UTC")

    @property
    def frequency_cap(self) -> FrequencyCap:
        max_contacts, days = self.cap_setting
        return FrequencyCap(max_contacts, timedelta(days=days))

    @property
    def steps(self) -> int:
        """How many channels it may try per customer: the first and its fallbacks."""
        return max(1, len(self.channels)) if self.fallback_allowed else 1
