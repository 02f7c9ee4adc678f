"""The routing feed reads what any producer writes, and passes over what it cannot read.

Records come from other producers than ours (written with other JSON spacing), from the
compaction of the presence topic (tombstones), and from broken or hostile producers: every
one is read, or logged and passed over; none is lost silently and none stops the feed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from contracts import (
    MAX_PAYLOAD_BYTES,
    AgentPresenceChanged,
    CallEnded,
    MessageReceived,
    dump_interaction,
)
from services.router.feed import RoutingFeed

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CALLER = "+4930123456789"


def feed() -> tuple[RoutingFeed, dict[str, list]]:
    routing = RoutingFeed(
        "127.0.0.1:9", presence_topic="p", routing_topic="r", interactions_topic="i"
    )
    seen: dict[str, list] = {"presence": [], "calls": [], "routed": []}
    routing.handlers.presence.append(seen["presence"].append)
    routing.handlers.calls.append(seen["calls"].append)
    routing.handlers.routed.append(seen["routed"].append)
    return routing, seen


def record(topic: str, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=0, offset=7, key=None, value=value)


def spaced(raw: bytes, **dumps) -> bytes:
    """The same JSON as another producer writes it (Python's json, Jackson, Go's indent)."""
    return json.dumps(json.loads(raw), **dumps).encode()


ENDED = CallEnded(
    direction="inbound",
    party=CALLER,
    call_id="CA1",
    provider_ref="CA1:e",
    occurred_at=NOW,
    received_at=NOW,
    duration_s=42,
)


@pytest.mark.parametrize(
    "dumps",
    [{}, {"indent": 2}, {"separators": (",", " :  ")}, {"ensure_ascii": True, "indent": "\t"}],
    ids=["json.dumps", "indented", "space-before-colon", "tabs"],
)
async def test_a_call_event_written_with_whitespace_reaches_the_call_handlers(dumps) -> None:
    routing, seen = feed()
    await routing._handle(record("i", spaced(dump_interaction(ENDED), **dumps)))
    assert seen["calls"] == [ENDED]
    assert routing.stats.calls == 1 and routing.stats.unreadable == 0


async def test_a_call_type_written_with_json_escapes_is_still_read() -> None:
    routing, seen = feed()
    raw = dump_interaction(ENDED).replace(b'"call.ended', b'"\\u0063all.ended')
    await routing._handle(record("i", raw))
    assert seen["calls"] == [ENDED]


async def test_messages_on_the_interactions_topic_are_passed_over_unparsed() -> None:
    routing, seen = feed()
    message = MessageReceived(
        channel="sms", party=CALLER, provider_ref="SM1", occurred_at=NOW, body='"type": "call.'
    )
    await routing._handle(record("i", spaced(dump_interaction(message))))
    assert seen["calls"] == [] and routing.stats.unreadable == 0


def presence_bytes(**changes) -> bytes:
    presence = AgentPresenceChanged(agent="ann", presence="busy", occurred_at=NOW, by="ann")
    return json.dumps({**presence.model_dump(mode="json"), **changes}).encode()


async def test_a_presence_is_read_strictly_as_its_schema_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routing, seen = feed()
    await routing._handle(record("p", presence_bytes()))
    assert [p.presence for p in seen["presence"]] == ["busy"]
    for bad in (
        presence_bytes(occurred_at=1764579600),  # seconds: the schema says a string
        presence_bytes(occurred_at="0001-01-01T00:00:00+03:04"),
        presence_bytes(by="x" * MAX_PAYLOAD_BYTES),
        b"\xff\xfe not json",
    ):
        with caplog.at_level(logging.WARNING, logger="services.router.feed"):
            await routing._handle(record("p", bad))
    assert len(seen["presence"]) == 1
    assert routing.stats.unreadable == 4
    assert sum("unreadable, passed over" in r.message for r in caplog.records) == 4
    assert "occurred_at" in caplog.records[0].message
    assert "byte limit" in caplog.records[2].message


async def test_a_compaction_tombstone_on_the_presence_topic_is_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routing, seen = feed()
    with caplog.at_level(logging.DEBUG, logger="services.router.feed"):
        await routing._handle(record("p", None))
    assert seen["presence"] == [] and routing.stats.unreadable == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
