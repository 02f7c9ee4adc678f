"""A timeline row keeps its payload without what the row's columns say already, and reads it
back whole: the same payload, in the same order, as the interaction reported it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.changes import TimelineEntry
from projections.timeline import full_payload, payload_json, storable, stored_payload

REPORTED = {
    "type": "message.received.v1",
    "channel": "sms",
    "direction": "inbound",
    "party": "+4930123456",
    "provider_ref": "SM1",
    "occurred_at": "2026-03-02T09:00:00Z",
    "body": "Hello",
}
ENTRY = TimelineEntry(
    customer_id=uuid4(),
    position=7,
    occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
    type="message.received.v1",
    channel="sms",
    direction="inbound",
    party="+4930123456",
    provider_ref="SM1",
    summary="Hello",
    payload=REPORTED,
)


def _row(entry: TimelineEntry) -> dict:
    return {
        "type": entry.type,
        "channel": entry.channel,
        "direction": entry.direction,
        "party": entry.party,
        "provider_ref": entry.provider_ref,
    }


def test_the_envelope_is_kept_once_and_read_back_in_order() -> None:
    kept = stored_payload(ENTRY)
    assert kept == {"occurred_at": "2026-03-02T09:00:00Z", "body": "Hello"}
    back = full_payload(kept, _row(ENTRY))
    assert back == REPORTED
    assert list(back) == list(REPORTED)


def test_a_value_that_differs_from_its_column_stays_in_the_payload() -> None:
    internal = replace(ENTRY, direction="internal")  # a hub doing shown as internal
    kept = stored_payload(internal)
    assert kept["direction"] == "inbound"
    assert full_payload(kept, _row(internal))["direction"] == "inbound"


def test_rows_written_whole_before_and_desk_entries_read_as_they_are() -> None:
    assert full_payload(dict(REPORTED), _row(ENTRY)) == REPORTED
    desk = {"conversation_id": str(uuid4()), "kind": "note"}
    assert full_payload(desk, _row(ENTRY)) == desk
    assert stored_payload(replace(ENTRY, payload=desk)) == desk


def test_a_sqlite_row_works_as_the_row() -> None:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    row = db.execute(
        "SELECT 'message.received.v1' AS type, 'sms' AS channel, 'inbound' AS direction, "
        "'+4930123456' AS party, 'SM1' AS provider_ref"
    ).fetchone()
    assert full_payload(stored_payload(ENTRY), row) == REPORTED


# JSON values as a payload holds them (what a channel reported, parsed).
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # NUL, lone surrogates, line separators
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _by_json(payload: dict) -> str:
    """What the view stored before orjson: json's text, NUL replaced (PostgreSQL's jsonb
    refuses it)."""
    text = _JSON.encode(payload)
    return _JSON.encode(storable(payload)) if "\\u0000" in text else text


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _json_values, max_size=6))
def test_the_stored_payload_reads_back_as_json_wrote_it(payload: dict) -> None:
    # The same values in the same order (a float's exponent may be written 1e-9 or 1e-09).
    def pairs(text: str) -> object:
        return json.loads(text, object_pairs_hook=list)

    assert pairs(payload_json(payload)) == pairs(_by_json(payload))


def test_a_nul_in_the_payload_is_stored_as_postgresql_can_hold_it() -> None:
    text = payload_json({"body": "a\x00b", "n": 2**64})
    assert json.loads(text) == {"body": "a\ufffdb", "n": 2**64}


def test_what_orjson_refuses_is_written_by_json() -> None:
    # A lone surrogate (the generated texts above have none) and an integer beyond 64 bits.
    payload = {"body": "a\ud800b", "n": 2**64}
    assert (
        payload_json(payload) == _by_json(payload) == '{"body":"a\ud800b","n":18446744073709551616}'
    )
