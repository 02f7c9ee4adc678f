"""Why an inbound mail was not turned into an event; each becomes a dead letter with its reason.

Catch ``MailRejected`` for all of them. ``reason`` is for people reading the dead-letter topic:
it says what was wrong and, where it helps, which limit to raise.
"""

from __future__ import annotations

from contracts.errors import InputError

__all__ = [
    "HeaderTooLarge",
    "MailRejected",
    "MailTooLarge",
    "MalformedMail",
    "MimeTooComplex",
    "NoSender",
    "UnattributableBounce",
]


class MailRejected(InputError):
    """The mail cannot be recorded as it is; it goes to the dead-letter topic, raw."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MailTooLarge(MailRejected):
    """Bigger than MailLimits.max_message_bytes."""


class HeaderTooLarge(MailRejected):
    """A header field, or all of a part's header fields, beyond the limits."""


class MimeTooComplex(MailRejected):
    """MIME nesting deeper, or more parts, than the limits allow."""


class MalformedMail(MailRejected):
    """The parser or the event model refused it."""


class NoSender(MailRejected):
    """No usable From (or Sender) address: there is no customer to file it under."""


class UnattributableBounce(MailRejected):
    """A delivery report that names no message of ours or no recipient."""
