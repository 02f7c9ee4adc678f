"""The Campaign aggregate: its life cycle, and what stops it from being scheduled or started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.campaigns.audience import Segment
from services.campaigns.campaign import (
    Campaign,
    CampaignNotReady,
    InvalidCampaignSetting,
    InvalidTransition,
)
from services.campaigns.templates import ApprovedTemplate, ChannelTemplate

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def ready_campaign(channels: tuple[str, ...] = ("sms", "email")) -> Campaign:
    c = Campaign.create("May newsletter", by="carla", language="en")
    c.set_audience(Segment(tags=["newsletter"]), list(channels))
    for channel in channels:
        c.set_template(
            ChannelTemplate(
                channel,
                "en",
                "Hi {{ first_name | default('there') }}, news for {{ tier }} members.",
                subject="News" if channel == "email" else None,
            )
        )
    c.set_schedule_window(NOW + timedelta(hours=1), NOW + timedelta(days=2))
    c.set_rate_limits(dict.fromkeys(channels, 10))
    return c


def test_a_campaign_goes_from_draft_to_completed_and_pauses_on_the_way() -> None:
    c = ready_campaign()
    assert c.state == "draft"
    c.schedule(now=NOW, by="carla")
    c.start(now=NOW + timedelta(hours=1), by="runner")
    c.pause(by="carla", reason="typo in the subject")
    assert c.state == "paused"
    c.resume(by="carla")
    c.complete()
    assert c.state == "completed"
    assert [type(e).__name__ for e in c.collect_events()] == [
        "Created",
        "AudienceSet",
        "TemplateSet",
        "TemplateSet",
        "ScheduleWindowSet",
        "RateLimitsSet",
        "Scheduled",
        "Started",
        "Paused",
        "Resumed",
        "Completed",
    ]


def test_a_cancelled_campaign_cannot_be_started_and_the_error_names_the_state() -> None:
    c = ready_campaign()
    c.schedule(now=NOW, by="carla")
    c.cancel(by="carla", reason="wrong audience")
    with pytest.raises(InvalidTransition, match="a cancelled campaign cannot be started"):
        c.start(now=NOW, by="runner")
    assert c.state == "cancelled"


@pytest.mark.parametrize(
    ("steps", "refused", "message"),
    [
        ((), "start", "a draft campaign cannot be started"),
        ((), "pause", "a draft campaign cannot be paused"),
        (("schedule",), "resume", "a scheduled campaign cannot be resumed"),
        (("schedule", "start"), "schedule", "a running campaign cannot be scheduled"),
        (("schedule", "start", "complete"), "cancel", "a completed campaign cannot be cancelled"),
    ],
)
def test_a_step_the_state_does_not_allow_is_refused(
    steps: tuple[str, ...], refused: str, message: str
) -> None:
    c = ready_campaign()
    do = {
        "schedule": lambda: c.schedule(now=NOW, by="carla"),
        "start": lambda: c.start(now=NOW + timedelta(hours=1), by="runner"),
        "pause": lambda: c.pause(by="carla"),
        "resume": lambda: c.resume(by="carla"),
        "complete": c.complete,
        "cancel": lambda: c.cancel(by="carla"),
    }
    for step in steps:
        do[step]()
    state = c.state
    with pytest.raises(InvalidTransition, match=message):
        do[refused]()
    assert c.state == state


def test_a_running_campaign_takes_new_rate_limits_but_no_new_template() -> None:
    c = ready_campaign()
    c.schedule(now=NOW, by="carla")
    c.start(now=NOW + timedelta(hours=1), by="runner")
    c.set_rate_limits({"sms": 2, "email": 5})
    assert c.rate_limits == {"sms": 2.0, "email": 5.0}
    with pytest.raises(InvalidTransition, match="a running campaign cannot be edited"):
        c.set_template(ChannelTemplate("sms", "en", "Hello"))


def test_a_schedule_window_in_the_past_is_refused() -> None:
    c = ready_campaign()
    c.set_schedule_window(NOW - timedelta(days=3), NOW - timedelta(days=1))
    with pytest.raises(CampaignNotReady, match=r"ended at .* in the past"):
        c.schedule(now=NOW, by="carla")
    assert c.state == "draft"


def test_a_window_that_started_in_the_past_cannot_be_scheduled() -> None:
    c = ready_campaign()
    c.set_schedule_window(NOW - timedelta(hours=2), NOW + timedelta(days=1))
    with pytest.raises(CampaignNotReady, match=r"starts at .* in the past"):
        c.schedule(now=NOW, by="carla")


def test_a_rate_limit_of_zero_is_refused_at_once() -> None:
    c = ready_campaign()
    with pytest.raises(InvalidCampaignSetting, match="rate limit of sms is 0"):
        c.set_rate_limits({"sms": 0, "email": 10})
    assert c.rate_limits == {"sms": 10.0, "email": 10.0}


def test_a_channel_without_a_rate_limit_stops_scheduling() -> None:
    c = ready_campaign()
    c.set_rate_limits({"email": 10})
    with pytest.raises(CampaignNotReady, match="no rate limit for sms"):
        c.schedule(now=NOW, by="carla")


def test_a_template_with_unknown_fields_stops_scheduling_and_lists_them() -> None:
    c = ready_campaign()
    c.set_template(ChannelTemplate("sms", "en", "Hi {{ firstname }}, your {{ voucher }}"))
    with pytest.raises(CampaignNotReady) as refused:
        c.schedule(now=NOW, by="carla")
    assert refused.value.problems == [
        "the sms template (en) uses unknown field(s) firstname, voucher; known fields: "
        "address, campaign, channel, customer_id, first_name, language, name, tier"
    ]


def test_a_channel_the_audience_may_get_needs_a_template() -> None:
    c = Campaign.create("Reminder", by="carla")
    c.set_audience(Segment(), ["sms", "whatsapp"])
    c.set_template(ChannelTemplate("sms", "en", "Hi"))
    c.set_schedule_window(NOW + timedelta(hours=1), NOW + timedelta(days=1))
    c.set_rate_limits({"sms": 1, "whatsapp": 1})
    with pytest.raises(CampaignNotReady, match=r"no whatsapp template in en .* may get whatsapp"):
        c.schedule(now=NOW, by="carla")
    c.set_template(ChannelTemplate("whatsapp", "en", approved=ApprovedTemplate("reminder", "en")))
    c.schedule(now=NOW, by="carla")
    assert c.state == "scheduled"


def test_starting_after_the_window_ended_is_refused() -> None:
    c = ready_campaign()
    c.schedule(now=NOW, by="carla")
    with pytest.raises(CampaignNotReady, match="ended at"):
        c.start(now=NOW + timedelta(days=3), by="runner")
    assert c.state == "scheduled"


def test_a_window_that_ends_before_it_starts_and_naive_times_are_refused() -> None:
    c = Campaign.create("x", by="carla")
    with pytest.raises(InvalidCampaignSetting, match=r"ends .* before it starts"):
        c.set_schedule_window(NOW, NOW - timedelta(hours=1))
    with pytest.raises(InvalidCampaignSetting, match="has no time zone"):
        c.set_schedule_window(datetime(2026, 5, 4, 9), datetime(2026, 5, 5, 9))
    with pytest.raises(InvalidCampaignSetting, match="unknown time zone"):
        c.set_schedule_window(NOW, NOW + timedelta(days=1), time_zone="Mars/Olympus")
