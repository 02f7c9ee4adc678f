"""What every channel's outbound adapter implements, and the errors it may raise.

The dispatcher (``services/outbound.py``) consumes ``sb.outbound.v1``, checks consent,
keeps the idempotency ledger, and calls the channel's ``Sender``; the sender only
talks to its provider.  It reports the outcome by returning a receipt or raising:

- ``TransientSendError``: try again later (SMTP 4xx, HTTP 429/5xx, timeouts, refused
  connections).  The dispatcher retries with backoff, then gives up as failed.
- ``PermanentSendError``: the provider refused for good (SMTP 5xx, HTTP 4xx such as an
  invalid number).  Reported as a failed delivery, never retried.
- ``SendRefused``: our own policy says no before anything is sent (no consent, outside
  WhatsApp's 24-hour window without a template).  Reported as failed, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from contracts import Channel, DeliveryStatus, SendMessage
from contracts.errors import DeliveryError


class OutboundError(DeliveryError):
    """Base of the outbound errors; ``code`` is the provider's error code if it gave one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientSendError(OutboundError):
    """Try again later."""


class PermanentSendError(OutboundError):
    """The provider will never accept this message."""


class SendRefused(OutboundError):
    """Our policy forbids sending it (consent, messaging window)."""


@dataclass(frozen=True)
class Recipient:
    """What a sender may need to know about the customer (read from the customer history)."""

    address: str
    customer_id: UUID | None = None
    consent: dict[str, bool] = field(default_factory=dict)  # "sms:marketing" -> granted
    last_inbound_at: dict[str, datetime] = field(default_factory=dict)  # channel -> time


@dataclass(frozen=True)
class SendReceipt:
    """The provider accepted the message."""

    provider_ref: str  # the provider's id: MessageSid, wamid, Message-ID, Telegram message_id
    status: DeliveryStatus = DeliveryStatus.sent  # as reported in the provider's response
    # e.g. {"segments": "2", "encoding": "UCS-2"}
    details: dict[str, str] = field(default_factory=dict)


class Sender(Protocol):
    channel: Channel

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt: ...

    async def close(self) -> None: ...
