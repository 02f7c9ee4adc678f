"""Configuration of the Twilio Messaging adapter: plain values, built by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HELP_TEXT = (
    "You are texting our customer service. Reply STOP to stop all messages, "
    "START to receive them again. Msg&data rates may apply."
)


@dataclass(frozen=True)
class TwilioSmsConfig:
    """One Twilio account's SMS webhooks and sender.

    ``public_base_url`` is the URL at which Twilio reaches the application's root (behind a
    reverse proxy, the proxy's): signatures are checked against it and the status callback
    URL of every sent message is built from it. Send from ``from_number`` or through a
    Messaging Service (``messaging_service_sid``).
    """

    account_sid: str
    auth_token: str
    public_base_url: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    help_text: str = DEFAULT_HELP_TEXT
    # Test seam: the Twilio client's "api" domain (Messages) at a local stand-in.
    api_base_url: str | None = None
    # The secret of a Twilio SharedKey, for requests signed with HMAC-SHA256 by one.
    shared_key_secret: str | None = None
    default_region: str | None = None
    # How long a webhook waits for Kafka's confirmation before answering 503.
    publish_timeout_s: float = 2.0
    # How long one send may take before it counts as a transient failure.
    send_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.account_sid.startswith("AC"):
            raise ValueError(
                f"account_sid must be a Twilio Account SID (AC…), not {self.account_sid!r}"
            )
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("set exactly one of from_number and messaging_service_sid")
        if self.publish_timeout_s <= 0 or self.send_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
