"""Messaging windows: when WhatsApp and Messenger let a business write free text.

Both count 24 hours from the customer's last message to the business. Inside that window any
message may be sent; outside it WhatsApp takes only approved templates, and Messenger only
messages with a message tag. Pure functions, so the rule is tested without a provider.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from channels.outbound import Recipient, SendRefused
from contracts import Channel, SendMessage

__all__ = [
    "SERVICE_WINDOW",
    "WHATSAPP_OUTSIDE_WINDOW",
    "check_whatsapp_window",
    "within_service_window",
]

SERVICE_WINDOW = timedelta(hours=24)
WHATSAPP_OUTSIDE_WINDOW = (
    "outside WhatsApp's 24-hour customer-service window: only approved templates may be sent"
)


def within_service_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether ``now`` is less than 24 hours after the customer last wrote to us.

    A customer who never wrote is outside. Exactly 24 hours is outside: the provider's window
    is "within 24 hours", and a message sent on the boundary arrives after it.
    """
    if last_inbound_at is None:
        return False
    return now - last_inbound_at < SERVICE_WINDOW


def check_whatsapp_window(command: SendMessage, recipient: Recipient, now: datetime) -> None:
    """Raise SendRefused for free text outside the window; a template may go at any time."""
    if command.template is not None:
        return
    if not within_service_window(recipient.last_inbound_at.get(Channel.whatsapp), now):
        raise SendRefused(WHATSAPP_OUTSIDE_WINDOW)
