"""Twilio's message statuses in our delivery vocabulary (used for callbacks and send receipts)."""

from __future__ import annotations

from contracts import DeliveryStatus

# Twilio reports more steps than we track: everything before "sent" is still queued with us,
# and a canceled (scheduled) message will never arrive, which is a failure to the agent.
TWILIO_MESSAGE_STATUS = {
    "accepted": DeliveryStatus.queued,
    "scheduled": DeliveryStatus.queued,
    "queued": DeliveryStatus.queued,
    "sending": DeliveryStatus.queued,
    "sent": DeliveryStatus.sent,
    "delivered": DeliveryStatus.delivered,
    "read": DeliveryStatus.read,
    "undelivered": DeliveryStatus.undelivered,
    "failed": DeliveryStatus.failed,
    "canceled": DeliveryStatus.failed,
}
# Statuses of messages *to* us; a status callback never needs them.
INBOUND_MESSAGE_STATUSES = frozenset({"receiving", "received"})


def delivery_status(twilio_status: str) -> DeliveryStatus | None:
    """Our status for Twilio's, None for an inbound-only status; KeyError if unknown."""
    status = twilio_status.strip().lower()
    if status in INBOUND_MESSAGE_STATUSES:
        return None
    return TWILIO_MESSAGE_STATUS[status]
