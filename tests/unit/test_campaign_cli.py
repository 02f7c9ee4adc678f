"""``switchboard campaign …`` as a campaign manager uses it on the store: create, audience,
template, schedule, preview, start, status — and every mistake one line with exit status 1."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts import Channel, ConsentChanged, Direction, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.cli import app
from services.bootstrap.settings import Settings

runner = CliRunner()
PHONES = [f"+49305000000{i}" for i in range(3)]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Three customers who wrote by SMS; the first two opted in to marketing by SMS."""
    hub = bootstrap(Settings(data_dir=tmp_path / "var"))
    events: list = [
        MessageReceived(
            channel=Channel.sms, party=p, provider_ref=f"SM{i}", occurred_at=T0, body="hi"
        )
        for i, p in enumerate(PHONES)
    ]
    events += [
        ConsentChanged(
            channel=Channel.sms,
            direction=Direction.inbound,
            party=p,
            provider_ref=f"web{i}",
            occurred_at=T0,
            purpose="marketing",
            granted=True,
            source="web-form",
        )
        for i, p in enumerate(PHONES[:2])
    ]
    hub.history().record_interactions(events)
    hub.timeline_follower().catch_up()
    hub.user_directory().register("carla", roles=["campaign_manager"])
    return {"SWITCHBOARD_DATA_DIR": str(tmp_path / "var"), "COLUMNS": "200"}


def switchboard(env: dict[str, str], *args: str):
    return runner.invoke(app, list(args), env=env)


def ok(env: dict[str, str], *args: str) -> str:
    result = switchboard(env, *args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(env: dict[str, str], *args: str) -> str:
    result = switchboard(env, *args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def test_a_campaign_is_set_up_previewed_started_and_tracked_from_the_shell(
    env: dict[str, str],
) -> None:
    created = ok(env, "campaign", "create", "Spring sale")
    assert "created (draft)" in created
    ok(env, "campaign", "audience", "Spring sale", "--channel", "sms")
    ok(
        env,
        "campaign",
        "template",
        "Spring sale",
        "sms",
        "en",
        "--body",
        "Hi {{ first_name | default('there') }}: 20% off in {{ campaign }}",
    )
    ok(
        env,
        "campaign",
        "schedule",
        "Spring sale",
        "--end",
        "+7d",
        "--rate",
        "sms=5",
        "--allowed-hours",
        "00:00-23:59",
    )
    preview = ok(env, "campaign", "preview", "Spring sale", "--sample", "5")
    assert "2 to send, 1 skipped (1 no_consent)" in " ".join(preview.split())
    assert "Hi there: 20% off in Spring sale" in preview
    started = ok(env, "campaign", "start", "Spring sale", "--as", "carla")
    assert "started" in started
    listed = ok(env, "campaign", "list")
    assert "running" in listed and "Spring sale" in listed
    status = ok(env, "campaign", "status", "Spring sale")
    assert "[running]" in status
    assert "queued          2" in status  # nothing sent yet: no hub runs here
    paused = ok(env, "campaign", "pause", "Spring sale", "--reason", "typo")
    assert "paused" in paused
    assert "paused" in ok(env, "campaign", "list")
    ok(env, "campaign", "cancel", "Spring sale")
    again = refused(env, "campaign", "start", "Spring sale")
    assert "a cancelled campaign cannot be started (it is final: create a new campaign)" in again


def test_mistakes_are_one_line_each(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "campaign", "create", "Autumn")
    assert "no campaign named 'Winter'" in refused(env, "campaign", "status", "Winter")
    unknown_field = refused(
        env, "campaign", "template", "Autumn", "sms", "en", "--body", "Hi {{ nickname }}"
    )
    assert "unknown field(s) nickname" in unknown_field
    # A segment matching nobody is set (the directory may grow) and says so; start refuses it.
    nobody = ok(env, "campaign", "audience", "Autumn", "--channel", "sms", "--tag", "vip")
    assert "no customer matches this segment" in " ".join(nobody.split())
    ok(env, "campaign", "template", "Autumn", "sms", "en", "--body", "Hi")
    ok(env, "campaign", "schedule", "Autumn", "--end", "+1d", "--rate", "sms=1")
    at_start = refused(env, "campaign", "start", "Autumn")
    assert "no customer matches this segment" in at_start
    assert "tags ['vip']: 0" in at_start
    zero = refused(env, "campaign", "schedule", "Autumn", "--rate", "sms=0")
    assert "rate limit of sms is 0" in zero
    past = refused(env, "campaign", "schedule", "Autumn", "--end", "2020-01-01T00:00Z")
    assert "in the past" in past
    bad = tmp_path / "list.csv"
    bad.write_text(f"phone\n{PHONES[0]}\n+49 30 12\nnot a number\n", encoding="utf-8")
    csv = refused(env, "campaign", "audience", "Autumn", "--csv", str(bad))
    assert "2 row(s) that cannot be taken, so the audience was not changed" in csv
    assert "row 3, phone: bad phone number" in csv
    assert "row 4, phone: bad phone number" in csv


def test_every_campaign_command_has_help() -> None:
    for command in (
        "create",
        "audience",
        "template",
        "schedule",
        "preview",
        "start",
        "pause",
        "resume",
        "cancel",
        "list",
        "status",
    ):
        result = runner.invoke(app, ["campaign", command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output
