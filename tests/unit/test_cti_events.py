"""CTI call events -> contract events: a caller the hub cannot read is still a contact."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from channels.voice.cti import contract_event, parse_cti_event
from contracts import CallRinging

CUSTOMER = "+14155552671"
HOTLINE = "+18005550100"


def ringing(**fields: str) -> CallRinging:
    base = {"event": "newCall", "call_id": "c-1", "direction": "inbound", "from": CUSTOMER}
    event = contract_event(parse_cti_event({**base, "to": HOTLINE, **fields}), default_region=None)
    assert isinstance(event, CallRinging)
    return event


def test_a_readable_caller_is_the_party() -> None:
    assert ringing().party == CUSTOMER
    assert ringing(direction="outbound", **{"from": HOTLINE}, to=CUSTOMER).party == CUSTOMER


@pytest.mark.parametrize("caller", ["anonymous", "12", "sip:bob@pbx.example"])
def test_a_withheld_or_unreadable_caller_is_filed_under_the_call_like_twilio(caller: str) -> None:
    assert ringing(**{"from": caller}).party == "anonymous:c-1"
    assert ringing(direction="outbound", **{"from": HOTLINE}, to=caller).party == "anonymous:c-1"


def test_a_call_id_that_cannot_file_the_call_is_a_400_naming_call_id() -> None:
    with pytest.raises(HTTPException) as caught:
        ringing(call_id="c 1", **{"from": "anonymous"})
    assert caught.value.status_code == 400
    assert "call_id" in caught.value.detail
