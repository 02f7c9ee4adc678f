"""The orjson transcoder writes and reads the library's JSON event format: either one reads
what the other wrote, on generated states of every shape an event can hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, StrEnum
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError
from hypothesis import given, settings
from hypothesis import strategies as st

from services.history.transcoder import OrjsonTranscoder


def _both() -> tuple[JSONTranscoder, OrjsonTranscoder]:
    lib, fast = JSONTranscoder(), OrjsonTranscoder()
    for t in (lib, fast):
        Application.register_transcodings(None, t)  # type: ignore[arg-type]
    return lib, fast


LIB, FAST = _both()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: handed to the library's path
    st.floats(),  # NaN and infinities too
    st.text(),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), None])),
    st.decimals(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=2),  # json turns the keys into strings
    ),
    max_leaves=20,
)
states = st.dictionaries(st.text(max_size=12), values, max_size=8)


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN (a float that is not equal to itself is still the same)."""
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(states)
def test_each_reads_what_the_other_wrote(state: dict) -> None:
    by_lib, by_fast = LIB.encode(state), FAST.encode(state)
    expected = LIB.decode(by_lib)
    assert _same(FAST.decode(by_lib), expected)
    assert _same(LIB.decode(by_fast), expected)
    assert _same(FAST.decode(by_fast), expected)


def test_an_event_state_round_trips_with_its_types() -> None:
    state = {
        "originator_id": uuid4(),
        "timestamp": datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        "amount": Decimal("12.50"),
        "payload": {"call_id": "CA1", "at": [datetime(2026, 1, 1, tzinfo=UTC)]},
        "tags": ["vip", "de"],
    }
    back = FAST.decode(FAST.encode(state))
    assert back == state
    assert isinstance(back["originator_id"], UUID)
    assert back["payload"]["at"][0].tzinfo is UTC or back["payload"]["at"][0].utcoffset() == (
        timedelta(0)
    )


def test_enums_are_written_as_the_library_writes_them() -> None:
    class Colour(StrEnum):
        red = "red"

    assert FAST.encode({"c": Colour.red}) == LIB.encode({"c": Colour.red})


def test_an_unregistered_type_is_refused_as_the_library_refuses_it() -> None:
    class Plain(Enum):
        a = 1

    with pytest.raises(TranscodingNotRegisteredError):
        FAST.encode({"x": Plain.a})
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.encode({"x": object()})


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, None, timezone(timedelta(hours=2)), timezone(timedelta(seconds=-30))]
        )
    )
)
def test_times_are_written_byte_for_byte_as_the_library_writes_them(moment: datetime) -> None:
    # UTC and naive times are written by orjson itself, not by isoformat(): the stored bytes
    # (which the hash chain covers) must not depend on which wrote them.
    state = {"timestamp": moment, "payload": {"at": [moment]}}
    assert FAST.encode(state) == LIB.encode(state)
