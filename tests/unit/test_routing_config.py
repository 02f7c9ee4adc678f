"""The routing file as people write it: the example is valid, and every kind of mistake is one
line naming the file, the line and the field — from the code and from ``switchboard routing
check``, which exits 1 with no traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from services.bootstrap.cli import app
from services.router.config import (
    RoutingConfig,
    RoutingConfigError,
    load_routing_config,
    parse_routing_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "routing.example.yaml"
runner = CliRunner()

GOOD = """\
default_queue: support
queues:
  support:
    time_zone: Europe/Berlin
    hours:
      mon-fri: "08:00-20:00"
    languages: [en, de]
  night: {}
agents:
  ann:
    queues: [support]
rules:
  - name: gold
    when: {tier: [gold]}
    queue: support
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(RoutingConfigError) as caught:
        parse_routing_config(text, source="routing.yaml")
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_the_example_is_valid_and_says_what_the_demo_needs() -> None:
    config = load_routing_config(EXAMPLE)
    assert list(config.queues) == ["support", "vip", "overflow", "billing"]
    support = config.queues["support"]
    assert support.time_zone == "Europe/Berlin"
    assert support.hours == {"mon-fri": ["08:00-20:00"], "sat": ["10:00-16:00"]}
    assert [d.isoformat() for d in support.holidays] == ["2026-12-25", "2026-12-26", "2027-01-01"]
    assert support.after_hours.kind == "voicemail"
    assert (support.overflow.after_s, support.overflow.to_queue) == (120, "overflow")
    assert (config.queues["vip"].overflow.after_s, config.queues["vip"].overflow.to_queue) == (
        30,
        "support",
    )
    assert config.queues["billing"].skills == ["billing"]
    assert config.agents["ann"].capacity == {
        "voice": 1,
        "sms": 3,
        "whatsapp": 3,
        "messenger": 3,
        "telegram": 3,
        "email": 5,
    }
    assert config.serves("ann") == ["support", "vip"]
    assert config.serves("ben") == ["support", "billing"]
    assert config.serves("demo-agent") == ["support", "vip"]
    assert (config.last_agent_hours, config.offer_timeout_s) == (72, 20)
    assert config.rules[0].when.tier == ["gold", "platinum"] and config.rules[0].queue == "vip"


def test_the_example_is_open_by_berlin_wall_clock() -> None:
    config = load_routing_config(EXAMPLE)
    assert config.queue_is_open("support", datetime(2026, 3, 2, 7, 0, tzinfo=UTC))  # 08:00 CET
    assert not config.queue_is_open("support", datetime(2026, 3, 2, 19, 0, tzinfo=UTC))  # 20:00
    assert config.queue_is_open("support", datetime(2026, 7, 6, 6, 0, tzinfo=UTC))  # 08:00 CEST
    assert not config.queue_is_open("support", datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    assert config.queue_is_open("vip", datetime(2026, 12, 25, 3, 0, tzinfo=UTC))  # 24/7


MISTAKES = {
    "unknown key, with a suggestion": (
        GOOD.replace("    languages: [en, de]", "    langauges: [en, de]"),
        "routing.yaml:7: queues.support.langauges: unknown key (did you mean languages?)",
    ),
    "unknown top-level key": (
        GOOD + "default_queu: night\n",
        "routing.yaml:16: default_queu: unknown key (did you mean default_queue?)",
    ),
    "bad time range": (
        GOOD.replace('"08:00-20:00"', '"8:00-25:00"'),
        "routing.yaml:6: queues.support.hours.mon-fri: '8:00-25:00' is not a time range "
        "HH:MM-HH:MM",
    ),
    "bad time range in a list": (
        GOOD.replace('"08:00-20:00"', '["08:00-12:00", "13:00-13:00"]'),
        "routing.yaml:6: queues.support.hours.mon-fri[1]: '13:00-13:00' is empty",
    ),
    "bad day": (
        GOOD.replace("mon-fri:", "mon-fry:"),
        "routing.yaml:6: queues.support.hours.mon-fry: 'mon-fry' is not a day or a range of days",
    ),
    "a day given twice": (
        GOOD.replace(
            '      mon-fri: "08:00-20:00"', '      mon-fri: "08:00-20:00"\n      fri: 12:00-14:00'
        ),
        "routing.yaml:7: queues.support.hours.fri: fri is given by mon-fri already",
    ),
    "unknown time zone": (
        GOOD.replace("Europe/Berlin", "Europe/Berlln"),
        "routing.yaml:4: queues.support.time_zone: 'Europe/Berlln' is not an IANA time zone",
    ),
    "hours without a time zone": (
        GOOD.replace("    time_zone: Europe/Berlin\n", ""),
        "routing.yaml:3: queues.support.time_zone: required when hours or holidays are given",
    ),
    "a language that is not ISO 639-1": (
        GOOD.replace("[en, de]", "[en, German]"),
        "routing.yaml:7: queues.support.languages[1]: 'German' is not a language code",
    ),
    "an unknown channel": (
        GOOD.replace("    queues: [support]", "    queues: [support]\n    capacity: {fax: 1}"),
        "routing.yaml:12: agents.ann.capacity.fax: 'fax' is not a channel",
    ),
    "a dialled number that is not one": (
        GOOD.replace("{tier: [gold]}", "{dialled: ['12345']}"),
        "routing.yaml:14: rules[0].when.dialled[0]: '12345' is not a phone number",
    ),
    "a required key missing": (
        GOOD.replace("    queue: support\n", ""),
        "routing.yaml:13: rules[0].queue: required, missing",
    ),
    "a rule's queue not defined": (
        GOOD.replace("    queue: support\n", "    queue: vip\n"),
        "routing.yaml:15: rules[0].queue: no queue 'vip' is defined (queues: support, night)",
    ),
    "the default queue not defined": (
        GOOD.replace("default_queue: support", "default_queue: main"),
        "routing.yaml:1: default_queue: no queue 'main' is defined",
    ),
    "an agent's queue not defined": (
        GOOD.replace("    queues: [support]", "    queues:\n      - support\n      - sales"),
        "routing.yaml:13: agents.ann.queues[1]: no queue 'sales' is defined",
    ),
    "an after-hours queue not defined": (
        GOOD.replace("  night: {}", "  night:\n    after_hours: {queue: late}"),
        "routing.yaml:9: queues.night.after_hours.queue: no queue 'late' is defined",
    ),
    "two destinations after hours": (
        GOOD.replace("  night: {}", "  night:\n    after_hours: {voicemail: true, queue: support}"),
        "routing.yaml:9: queues.night.after_hours: give exactly one of voicemail: true, "
        "callback: true or queue: NAME",
    ),
    "a key given twice": (
        GOOD.replace("    queues: [support]", "    queues: [support]\n    queues: [night]"),
        "routing.yaml:12: agents.ann.queues: given twice (first on line 11)",
    ),
    "YAML syntax": (
        GOOD.replace("    languages: [en, de]", "    languages: [en, de"),
        "routing.yaml:8: not valid YAML:",
    ),
    "after hours and overflow going round": (
        GOOD.replace(
            "  night: {}",
            "  night:\n    overflow: {after_s: 60, to_queue: support}",
        ).replace(
            "    languages: [en, de]",
            "    languages: [en, de]\n    after_hours:\n      queue: night",
        ),
        "routing.yaml:11: queues.night.overflow.to_queue: support → night → support goes round "
        "forever; end the chain in voicemail or callback",
    ),
    "a queue handing over to itself": (
        GOOD.replace("  night: {}", "  night: {after_hours: {queue: night}}"),
        "routing.yaml:8: queues.night.after_hours.queue: night → night goes round forever",
    ),
    "an empty file": ("", "routing.yaml:1: the file is empty"),
    "a list, not a mapping": ("- support\n", "routing.yaml:1: the file must be a mapping"),
}


@pytest.mark.parametrize(("text", "expected"), MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_names_the_file_line_and_field(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_mistake_is_reported_at_once_in_line_order() -> None:
    text = GOOD.replace("Europe/Berlin", "Mars/Olympus").replace("[en, de]", "[en, DE]")
    text = text.replace("mon-fri:", "weekdays:")
    assert problems_of(text) == [
        "routing.yaml:4: queues.support.time_zone: 'Mars/Olympus' is not an IANA time zone "
        "(such as Europe/Berlin)",
        "routing.yaml:6: queues.support.hours.weekdays: 'weekdays' is not a day or a range of "
        "days (mon … sun, mon-fri, daily)",
        "routing.yaml:7: queues.support.languages[1]: 'DE' is not a language code: two "
        "lowercase letters (ISO 639-1), such as en or de",
    ]


def test_yaml_is_read_as_people_mean_it_here() -> None:
    # Unquoted: "no" is Norwegian (not false), a +49… number stays a number as written, one
    # value stands for a list of one, and a night range runs past midnight.
    config = parse_routing_config(
        GOOD.replace("[en, de]", "[en, de, no]")
        .replace("{tier: [gold]}", "{dialled: +493050000999, language: no}")
        .replace('"08:00-20:00"', "22:00-06:00")
    )
    assert config.queues["support"].languages == ["en", "de", "no"]
    assert config.rules[0].when.dialled == ["+493050000999"]
    assert config.rules[0].when.language == ["no"]
    assert config.queue_is_open("support", datetime(2026, 3, 3, 2, 0, tzinfo=UTC))  # Tue 03:00
    assert not config.queue_is_open("support", datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # Mon


def test_configuration_built_in_code_is_checked_as_well() -> None:
    data = yaml.safe_load(GOOD.replace("default_queue: support", "default_queue: main"))
    with pytest.raises(ValidationError, match="default_queue: no queue 'main' is defined"):
        RoutingConfig.model_validate(data)


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        load_routing_config(tmp_path / "routing.yaml")
    assert caught.value.problems == [f"{tmp_path / 'routing.yaml'}: no such file"]


# -- switchboard routing check -----------------------------------------------------------------


def test_check_sums_up_a_valid_file() -> None:
    result = runner.invoke(app, ["routing", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{EXAMPLE}: valid"
    support = next(line for line in lines if line.startswith("  support "))
    assert "Mon-Fri 08:00-20:00, Sat 10:00-16:00 (Europe/Berlin)" in support
    assert "overflow after 120 s → queue overflow" in support
    assert "warning: queues.overflow: no agent serves it; its contacts wait there" in lines
    assert "  1. gold customers: tier gold, platinum → vip" in lines
    assert any(line.startswith("  ann ") and "queues support, vip" in line for line in lines)


def test_check_lists_every_problem_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(GOOD.replace("Europe/Berlin", "Nowhere/Land").replace("[gold]", "[gold]]"))
    result = runner.invoke(app, ["routing", "check", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.splitlines() == [
        f"error: {path}:14: not valid YAML: expected ',' or '}}', but got ']'"
    ]
    path.write_text(GOOD.replace("Europe/Berlin", "Nowhere/Land").replace("[en, de]", "[en, x]"))
    result = runner.invoke(app, ["routing", "check", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: {path}:4: queues.support.time_zone: 'Nowhere/Land' is not an IANA time zone "
        "(such as Europe/Berlin)",
        f"error: {path}:7: queues.support.languages[1]: 'x' is not a language code: two "
        "lowercase letters (ISO 639-1), such as en or de",
    ]


def test_check_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["routing", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {tmp_path / 'nope.yaml'}: no such file"]
