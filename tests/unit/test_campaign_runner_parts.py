"""The campaign runner's pure parts: rate limits, plan file and checks, the control file."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import pytest

from contracts import dump_command
from contracts.errors import ConfigError, InputError
from services.campaigns.limits import Rate, RateLimits, TokenBucket
from services.campaigns.progress import CampaignProgress, ProgressUnreadable
from services.campaigns.recipients_io import PlanFile, dump_planned, load_planned, write_plan
from services.campaigns.runner import CampaignRunner, PlanError, RunnerKafka
from services.campaigns.runner_main import FileControl
from tests.campaign_plans import plan, planned_send


@pytest.mark.parametrize("rate", [lambda: Rate(0), lambda: Rate(-1), lambda: Rate.parse("0/s")])
def test_a_rate_of_zero_is_refused_at_construction_with_what_to_do(rate) -> None:
    with pytest.raises(ConfigError, match=r"above zero.*pause"):
        rate()


def test_rates_are_read_from_text() -> None:
    assert Rate.parse("1/s") == Rate(1, 1.0)
    assert Rate.parse("600/min").per_second == 10
    assert Rate.parse("10000/h,burst=20") == Rate(10000, 3600.0, 20)
    with pytest.raises(ConfigError, match="COUNT/UNIT"):
        Rate.parse("5 per second")
    limits = RateLimits.parse(
        {"sms": "1/s", "sender:+14155550100": "2/s"}, sender_of={"sms": "+14155550100"}
    )
    assert limits.channels == {"sms": Rate(1)} and limits.senders == {"+14155550100": Rate(2)}


def test_a_bucket_gives_its_burst_then_one_token_per_interval() -> None:
    bucket = TokenBucket(Rate(2, burst=3), now=100.0)
    for _ in range(3):
        assert bucket.wait(100.0) == 0
        bucket.take(100.0)
    assert bucket.wait(100.0) == pytest.approx(0.5)
    assert bucket.wait(100.5) == 0
    bucket.take(100.5)
    assert bucket.wait(100.5) == pytest.approx(0.5)
    assert bucket.wait(200.0) == 0  # refilled, but never beyond the burst
    for _ in range(3):
        bucket.take(200.0)
    assert bucket.wait(200.0) > 0


def test_a_send_waits_for_both_its_channel_and_its_sender() -> None:
    limits = RateLimits(
        channels={"sms": Rate(10)},
        senders={"+14155550100": Rate(1)},
        sender_of={"sms": "+14155550100"},
    )
    throttle = limits.buckets(0.0)
    throttle.take("sms", 0.0)
    assert throttle.wait("sms", 0.0) == pytest.approx(1.0)  # the long code's 1/s holds it
    assert throttle.wait("email", 0.0) == 0  # no limit, no wait


def test_a_planned_send_survives_the_plan_file_byte_for_byte(tmp_path) -> None:
    sends = plan(6, channels=("sms", "email"))
    path = tmp_path / "plan.jsonl"
    assert write_plan(path, sends) == 6
    again = list(PlanFile(path))
    assert again == sends
    assert [dump_command(s.command) for s in again] == [dump_command(s.command) for s in sends]
    assert list(PlanFile(path)) == again  # re-iterable


def test_a_broken_plan_line_names_its_line(tmp_path) -> None:
    sends = plan(2)
    path = tmp_path / "plan.jsonl"
    path.write_text(dump_planned(sends[0]) + "\n" + '{"campaign_id": "x"}\n')
    with pytest.raises(InputError, match=r"plan.jsonl:2"):
        list(PlanFile(path))
    with pytest.raises(InputError, match="not a valid command"):
        line = dump_planned(sends[0]).replace('"body":"Winter', '"body":"","x":"')
        load_planned(line)


def _runner(sends) -> CampaignRunner:
    return CampaignRunner(
        sends[0].campaign_id,
        sends,
        control=FileControl(None),
        limits=RateLimits(),
        kafka=RunnerKafka(bootstrap="127.0.0.1:1"),
    )


def test_a_plan_is_counted_per_channel() -> None:
    assert _runner(plan(5, channels=("sms", "email")))._check_plan() == {"sms": 3, "email": 2}


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda s: [*s, planned_send(uuid4(), 99)], "belongs to campaign"),
        (lambda s: [*s, s[0]], "planned twice"),
        (
            lambda s: (
                [*s, planned_send(s[0].campaign_id, 99, not_before=s[0].not_before - timedelta(1))]
            ),
            "sort by not_before",
        ),
        (
            lambda s: [replace(s[0], step=1), *s[1:]],
            "not send_id",
        ),
    ],
)
def test_a_plan_that_could_not_be_resumed_safely_is_refused(spoil, reason) -> None:
    sends = spoil(plan(3))
    with pytest.raises(PlanError, match=reason):
        _runner(sends)._check_plan()


def test_progress_records_read_back_and_refuse_what_they_cannot_read() -> None:
    progress = CampaignProgress(uuid4(), 10, {"sms": 3, "email": 4}, "paused")
    again = CampaignProgress.load(progress.dump())
    assert (again.lanes, again.produced, again.state) == ({"sms": 3, "email": 4}, 7, "paused")
    with pytest.raises(ProgressUnreadable):
        CampaignProgress.load(b'{"campaign_id": "nope"}')


def test_the_control_file_says_running_unless_it_says_otherwise(tmp_path) -> None:
    path = tmp_path / "state"
    control = FileControl(path)
    assert control.state(uuid4()) == "running"
    path.write_text("paused\n")
    assert control.state(uuid4()) == "paused"
    path.write_text("later")
    with pytest.raises(Exception, match="not a campaign state"):
        control.state(uuid4())
