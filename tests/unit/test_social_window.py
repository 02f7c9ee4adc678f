"""WhatsApp's 24-hour customer-service window (a pure rule, no provider)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels.outbound import Recipient, SendRefused
from channels.social.window import check_whatsapp_window, within_service_window
from contracts import Channel, MessageTemplate, SendMessage

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TO = "whatsapp:+4915112345678"


@pytest.mark.parametrize(
    ("ago", "inside"),
    [
        (timedelta(0), True),
        (timedelta(hours=23, minutes=59), True),
        (timedelta(hours=24) - timedelta(microseconds=1), True),
        (timedelta(hours=24), False),
        (timedelta(hours=24, minutes=1), False),
        (timedelta(days=30), False),
        (-timedelta(minutes=2), True),  # our clock a little behind the provider's
    ],
    ids=["now", "23h59", "just-inside", "24h00", "24h01", "30d", "clock-skew"],
)
def test_window_is_24_hours_from_the_last_inbound_message(ago: timedelta, inside: bool) -> None:
    assert within_service_window(NOW - ago, NOW) is inside


def test_customer_who_never_wrote_is_outside_the_window() -> None:
    assert within_service_window(None, NOW) is False


def recipient(last_whatsapp: datetime | None, **others: datetime) -> Recipient:
    times = dict(others)
    if last_whatsapp is not None:
        times[Channel.whatsapp.value] = last_whatsapp
    return Recipient(address=TO, last_inbound_at=times)


def test_free_text_outside_the_window_is_refused_with_the_reason() -> None:
    command = SendMessage(channel=Channel.whatsapp, to=TO, body="Noch Fragen?")
    with pytest.raises(SendRefused, match="outside WhatsApp's 24-hour customer-service window"):
        check_whatsapp_window(command, recipient(NOW - timedelta(hours=24, minutes=1)), NOW)
    # a recent SMS does not open the WhatsApp window
    with pytest.raises(SendRefused):
        check_whatsapp_window(command, recipient(None, sms=NOW), NOW)


def test_free_text_inside_the_window_and_templates_at_any_time_are_allowed() -> None:
    text = SendMessage(channel=Channel.whatsapp, to=TO, body="Gern geschehen!")
    check_whatsapp_window(text, recipient(NOW - timedelta(hours=23, minutes=59)), NOW)
    template = SendMessage(
        channel=Channel.whatsapp,
        to=TO,
        template=MessageTemplate(name="order_update", language="de", parameters=["4711"]),
    )
    check_whatsapp_window(template, recipient(None), NOW)
    check_whatsapp_window(template, recipient(NOW - timedelta(days=90)), NOW)
