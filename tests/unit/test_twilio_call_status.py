"""Twilio call status callbacks -> call events, and SMS delivery reports folded forward only."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import reduce

import pytest
from fastapi import HTTPException
from starlette.datastructures import FormData

from channels.sms.status import delivery_status
from channels.twilio import TwilioForm
from channels.voice.status import call_event_from_status
from contracts import CallAnswered, CallEnded, CallMissed, DeliveryStatus, status_advances

CUSTOMER = "+14155552671"
HOTLINE = "+18005550100"


def status(**params: str):
    base = {"CallSid": "CA1", "From": CUSTOMER, "To": HOTLINE, "Direction": "inbound"}
    form = TwilioForm(params=FormData({**base, **params}))
    return call_event_from_status(form, default_region=None)


def test_completed_inbound_call_ends_with_its_duration() -> None:
    event = status(CallStatus="completed", CallDuration="183")
    assert isinstance(event, CallEnded)
    assert (event.party, event.endpoint, event.duration_s) == (CUSTOMER, HOTLINE, 183.0)
    assert (event.call_id, event.provider_ref, str(event.direction)) == (
        "CA1",
        "CA1:completed",
        "inbound",
    )


@pytest.mark.parametrize("twilio", ["busy", "no-answer", "canceled", "failed"])
def test_unanswered_outcomes_are_missed_calls(twilio: str) -> None:
    event = status(CallStatus=twilio)
    assert isinstance(event, CallMissed) and event.reason == twilio
    assert event.provider_ref == f"CA1:{twilio}"


def test_outbound_call_is_filed_under_the_called_customer() -> None:
    event = status(CallStatus="no-answer", Direction="outbound-api", From=HOTLINE, To=CUSTOMER)
    assert (event.party, str(event.direction), event.endpoint) == (CUSTOMER, "outbound", HOTLINE)


def test_agent_leg_answer_is_the_parent_calls_answer_by_that_agent() -> None:
    event = status(
        CallSid="CA-child",
        ParentCallSid="CA1",
        CallStatus="in-progress",
        Direction="outbound-dial",
        To="client:agent_42",
    )
    assert isinstance(event, CallAnswered)
    assert (event.call_id, event.agent, event.party) == ("CA1", "agent_42", CUSTOMER)
    assert event.provider_ref == "CA-child:in-progress"


@pytest.mark.parametrize("twilio", ["no-answer", "completed", "busy"])
def test_agent_leg_outcomes_are_not_the_customers(twilio: str) -> None:
    assert (
        status(ParentCallSid="CA1", To="client:agent_42", CallStatus=twilio, CallDuration="3")
        is None
    )


def test_agent_placed_call_files_under_the_dialled_customer_with_the_agent() -> None:
    event = status(CallStatus="in-progress", From="client:agent_7", To=CUSTOMER)
    assert (event.party, event.agent, str(event.direction)) == (CUSTOMER, "agent_7", "outbound")


@pytest.mark.parametrize("twilio", ["queued", "initiated", "ringing"])
def test_statuses_before_an_answer_are_not_recorded(twilio: str) -> None:
    assert status(CallStatus=twilio) is None


def test_sequence_number_orders_callbacks_within_twilios_one_second_resolution() -> None:
    stamp = "Sat, 14 Mar 2026 09:00:00 +0000"
    answered = status(CallStatus="in-progress", Timestamp=stamp, SequenceNumber="1")
    ended = status(CallStatus="completed", CallDuration="0", Timestamp=stamp, SequenceNumber="2")
    assert answered.occurred_at < ended.occurred_at
    assert ended.occurred_at.replace(microsecond=0) == datetime(2026, 3, 14, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"CallStatus": "exploded"}, "CallStatus"),
        ({"CallStatus": "completed"}, "CallDuration"),
        ({"CallStatus": "completed", "CallDuration": "long"}, "CallDuration"),
        ({"CallStatus": "in-progress", "Timestamp": "yesterday"}, "Timestamp"),
        ({"CallStatus": "in-progress", "SequenceNumber": "x"}, "SequenceNumber"),
        ({"CallStatus": "in-progress", "CallSid": ""}, "CallSid"),
    ],
)
def test_malformed_callbacks_name_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(HTTPException) as caught:
        status(**params)
    assert caught.value.status_code == 400
    assert field in caught.value.detail


@pytest.mark.parametrize("caller", ["anonymous", "not a number", "12"])
def test_a_withheld_or_unreadable_callers_call_is_filed_under_the_call(caller: str) -> None:
    event = status(CallStatus="completed", CallDuration="5", From=caller)
    assert isinstance(event, CallEnded)
    assert event.party == "anonymous:CA1"


def test_the_agent_leg_of_a_withheld_call_is_filed_under_the_customers_call() -> None:
    event = status(
        CallSid="CA2",
        ParentCallSid="CA1",
        From="anonymous",
        To="client:agent_42",
        CallStatus="in-progress",
    )
    assert isinstance(event, CallAnswered)
    assert (event.party, event.call_id) == ("anonymous:CA1", "CA1")


def _furthest(reports: list[str]) -> DeliveryStatus | None:
    def fold(current: DeliveryStatus | None, twilio: str) -> DeliveryStatus | None:
        new = delivery_status(twilio)
        return new if new is not None and status_advances(current, new) else current

    return reduce(fold, reports, None)


@pytest.mark.parametrize(
    ("reports", "furthest"),
    [
        (["queued", "sent", "delivered"], DeliveryStatus.delivered),
        (["delivered", "sent"], DeliveryStatus.delivered),  # a late "sent" never wins
        (["sent", "delivered", "sending", "queued"], DeliveryStatus.delivered),
        (["delivered", "read", "sent"], DeliveryStatus.read),
        (["sent", "undelivered", "delivered"], DeliveryStatus.undelivered),
        (["queued", "canceled"], DeliveryStatus.failed),
    ],
)
def test_delivery_reports_in_any_order_only_move_forward(
    reports: list[str], furthest: DeliveryStatus
) -> None:
    assert _furthest(reports) is furthest


def test_inbound_statuses_are_not_delivery_reports_and_unknown_ones_are_refused() -> None:
    assert delivery_status("received") is None
    with pytest.raises(KeyError):
        delivery_status("teleported")
