"""Hypothesis strategies for generated-input tests: hostile values for every contract field.

A base event per type is made from the examples its JSON Schema documents (so the base
follows the schema as published); strategies then replace fields with values a broken or
hostile producer could send: extreme times and offsets, huge and negative numbers, NUL and
other control characters, odd Unicode, deep nesting, the wrong JSON types.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from contracts import INTERACTION_TYPES, AgentPresenceChanged, SendMessage


def schema_example(model: type[BaseModel], type_name: str | None = None) -> dict[str, Any]:
    """A payload made of the first documented example of every field."""
    schema = model.model_json_schema()
    example: dict[str, Any] = {"type": type_name} if type_name else {}
    for name, prop in schema["properties"].items():
        if "examples" in prop:
            example[name] = prop["examples"][0]
        elif "const" in prop:
            example[name] = prop["const"]
    return example


BASE_EVENTS = {name: schema_example(cls, name) for name, cls in INTERACTION_TYPES.items()}
BASE_COMMAND = {**schema_example(SendMessage), "body": "Your parcel is on its way."}
BASE_PRESENCE = schema_example(AgentPresenceChanged)

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Every moment datetime can hold, with any offset: the edges overflow a UTC conversion.
any_moment = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
)
plausible_moment = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz).isoformat(),
    st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2199, 1, 1)),
    offsets,
)
# Any Unicode a JSON string can carry: NUL, C0/C1 controls, emoji, combining marks (no lone
# surrogates: valid JSON text cannot carry them, and the parser refuses them).
any_text = st.text(st.characters(codec="utf-8"), max_size=300)
control_heavy = st.text(
    st.sampled_from(["\x00", "\x01", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\r", "\n", "a"]),
    max_size=40,
)
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**30, 1e308, -1e308, 5e-324]),
)


class Deep:
    """A value nested ``depth`` levels deep; written as raw JSON text (json.dumps would
    recurse too deep to write it)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def raw(self) -> str:
        return '{"k":[' * self.depth + '"deep"' + "]}" * self.depth


def nested(depth: int) -> Deep:
    return Deep(depth)


json_scalars = st.one_of(st.none(), st.booleans(), numbers, any_text, control_heavy)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
hostile_values = st.one_of(
    json_values,
    any_moment,
    st.sampled_from(
        [
            "0001-01-01T00:00:00+03:04",
            "9999-12-31T23:59:59-01:00",
            "2025-03-14T09:26:53",  # naive
            "yes",
            "",
            nested(64),
            nested(5000),
        ]
    ),
)


def payload(value: dict[str, Any]) -> bytes:
    deep: dict[str, str] = {}

    def placeholder(obj: Any) -> str:
        if isinstance(obj, Deep):
            key = f"@@deep{len(deep)}@@"
            deep[f'"{key}"'] = obj.raw()
            return key
        raise TypeError(type(obj))

    text = json.dumps(value, ensure_ascii=False, default=placeholder)
    for key, raw in deep.items():
        text = text.replace(key, raw)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """A documented event with one to three fields replaced by hostile values (or removed)."""
    event = dict(draw(st.sampled_from(sorted(BASE_EVENTS.items())))[1])
    fields = sorted(event)
    for name in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        if draw(st.integers(0, 9)) == 0:
            event.pop(name)
        else:
            event[name] = draw(hostile_values)
    return payload(event)


FREE_TEXT = {"body", "full_body", "transcript", "error_message"}
LABELS = {"agent", "call_id", "endpoint", "source", "keyword", "error_code", "thread_ref"}
# What a label may hold: any character but controls, which labels refuse.
label_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=80
)


@st.composite
def plausible_events(draw: st.DrawFn) -> tuple[str, bytes]:
    """A documented event whose text and times are drawn from everything they may hold:
    most are accepted, and every accepted one must reach every view."""
    type_name, base = draw(st.sampled_from(sorted(BASE_EVENTS.items())))
    event = dict(base)
    for name in sorted(event):
        if name in FREE_TEXT:
            event[name] = draw(st.one_of(any_text, control_heavy).filter(bool))
        elif name == "subject":
            event[name] = draw(any_text.map(lambda t: t.replace("\r", "").replace("\n", "")))
        elif name in LABELS:
            event[name] = draw(label_text)
        elif name in ("occurred_at", "received_at"):
            event[name] = draw(plausible_moment)
    event.pop("event_id", None)
    return type_name, payload(event)
