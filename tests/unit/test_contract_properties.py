"""Generated input against every contract: a validated model or a validation error, nothing else.

A consumer turns a validation error into a dead letter and goes on; any other exception
would stop it (and, before this test, one out-of-range time zone stopped the hub).
"""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import (
    MAX_PAYLOAD_BYTES,
    InvalidCommand,
    InvalidInteraction,
    dump_command,
    dump_interaction,
    parse_command,
    parse_interaction,
    parse_presence,
)
from contracts.text import EARLIEST, LATEST
from tests.generated import (
    BASE_COMMAND,
    BASE_EVENTS,
    BASE_PRESENCE,
    hostile_events,
    hostile_values,
    json_values,
    nested,
    payload,
)

GENERATED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parsed_or_refused(raw: bytes):
    try:
        return parse_interaction(raw)
    except InvalidInteraction as e:
        assert e.reason, "a refusal names its reason"
        return None


def assert_well_formed(event) -> None:
    assert parse_interaction(dump_interaction(event)) == event  # what we publish, we accept
    for moment in (event.occurred_at, event.received_at):
        assert moment.tzinfo is not None and moment.utcoffset().total_seconds() == 0
        assert EARLIEST <= moment < LATEST
    text = dump_interaction(event).decode()
    assert "\\u0000" not in text, "NUL cannot be stored by PostgreSQL"


@GENERATED
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_an_event_or_a_refusal(raw: bytes) -> None:
    parsed_or_refused(raw)


@GENERATED
@given(json_values)
def test_arbitrary_json_is_an_event_or_a_refusal(value) -> None:
    event = parsed_or_refused(
        payload({"value": value}) if not isinstance(value, dict) else payload(value)
    )
    assert event is None or assert_well_formed(event) is None


@GENERATED
@given(hostile_events())
def test_documented_events_with_hostile_fields_are_an_event_or_a_refusal(raw: bytes) -> None:
    event = parsed_or_refused(raw)
    if event is not None:
        assert_well_formed(event)


@pytest.mark.parametrize("type_name", sorted(BASE_EVENTS))
def test_every_documented_example_is_accepted(type_name: str) -> None:
    assert_well_formed(parse_interaction(payload(BASE_EVENTS[type_name])))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "0001-01-01T00:00:00+03:04"),
        ("occurred_at", "9999-12-31T23:59:59-01:00"),
        ("received_at", "9999-12-31T23:59:59-01:00"),
        ("occurred_at", 1700000000),
        ("occurred_at", "2025-03-14T09:26:53"),
    ],
)
def test_times_the_schema_does_not_allow_are_refused_with_the_field(field: str, value) -> None:
    raw = payload({**BASE_EVENTS["message.received.v1"], field: value})
    with pytest.raises(InvalidInteraction, match=field):
        parse_interaction(raw)


def test_a_boolean_must_be_a_boolean_as_the_schema_says() -> None:
    raw = payload({**BASE_EVENTS["message.received.v1"], "auto_reply": "yes"})
    with pytest.raises(InvalidInteraction, match="auto_reply"):
        parse_interaction(raw)


def test_nul_in_a_message_body_is_kept_visible_as_a_replacement_character() -> None:
    raw = payload({**BASE_EVENTS["message.received.v1"], "body": "order\x00 4711"})
    assert parse_interaction(raw).body == "order\ufffd 4711"


def test_deep_nesting_is_refused_not_a_crash() -> None:
    raw = payload({**BASE_EVENTS["message.received.v1"], "body": nested(100_000)})
    with pytest.raises(InvalidInteraction):
        parse_interaction(raw)


@GENERATED
@given(st.dictionaries(st.sampled_from(sorted(BASE_COMMAND)), hostile_values, max_size=3))
def test_outbound_commands_with_hostile_fields_are_a_command_or_a_refusal(changes) -> None:
    raw = payload({**BASE_COMMAND, **changes})
    try:
        command = parse_command(raw)
    except InvalidCommand as e:
        assert e.reason
        return
    assert parse_command(dump_command(command)) == command
    assert (
        command.requested_at.tzinfo == UTC or command.requested_at.utcoffset().total_seconds() == 0
    )
    assert "\\u0000" not in json.dumps(command.model_dump(mode="json"))


def presence_or_refused(raw: bytes):
    try:
        presence = parse_presence(raw)
    except InvalidInteraction as e:
        assert e.reason, "a refusal names its reason"
        return None
    assert parse_presence(presence.model_dump_json().encode()) == presence
    assert presence.occurred_at.utcoffset().total_seconds() == 0
    assert EARLIEST <= presence.occurred_at < LATEST
    assert "\\u0000" not in presence.model_dump_json(), "NUL cannot be stored by PostgreSQL"
    return presence


@GENERATED
@given(st.dictionaries(st.sampled_from(sorted(BASE_PRESENCE)), hostile_values, max_size=3))
def test_agent_presence_with_hostile_fields_is_a_presence_or_a_refusal(changes) -> None:
    presence_or_refused(payload({**BASE_PRESENCE, **changes}))


@GENERATED
@given(st.one_of(st.binary(max_size=400), json_values.map(lambda v: payload({"value": v}))))
def test_arbitrary_bytes_on_the_presence_topic_are_a_presence_or_a_refusal(raw: bytes) -> None:
    presence_or_refused(raw)


def test_the_documented_presence_is_accepted() -> None:
    assert presence_or_refused(payload(BASE_PRESENCE)) is not None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", 1700000000),  # a number of seconds: the schema says a string
        ("occurred_at", "0001-01-01T00:00:00+03:04"),
        ("occurred_at", "2025-03-14T09:26:53"),
        ("presence", "on the phone"),
        ("agent", "ann\x00"),
    ],
)
def test_a_presence_the_schema_does_not_allow_is_refused_with_the_field(field: str, value) -> None:
    with pytest.raises(InvalidInteraction, match=field):
        parse_presence(payload({**BASE_PRESENCE, field: value}))


def test_an_oversized_presence_is_refused_before_it_is_parsed() -> None:
    raw = payload({**BASE_PRESENCE, "by": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(InvalidInteraction, match="byte limit"):
        parse_presence(raw)
