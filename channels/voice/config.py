"""Configuration of the voice adapters: plain values, built by the composition root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TwilioVoiceConfig:
    """One Twilio account's voice webhooks.

    ``public_base_url`` is the URL at which Twilio reaches the application's root (behind a
    reverse proxy: the proxy's public URL, e.g. ``https://hooks.example.com/switchboard``);
    signatures are checked against it, and callback URLs in our TwiML are built from it.
    """

    auth_token: str
    public_base_url: str
    # Until inbound routing exists, every call waits in this queue ...
    default_queue: str = "support"
    # ... unless calls go straight to one Voice SDK client identity.
    dial_client: str | None = None
    # A TaskRouter workflow: Enqueue with the caller's customer id in the task attributes.
    workflow_sid: str | None = None
    # The secret of a Twilio SharedKey, for requests signed with HMAC-SHA256 by one.
    shared_key_secret: str | None = None
    # Region for national numbers without "+", e.g. "DE" (Twilio sends E.164 anyway).
    default_region: str | None = None
    # How long a webhook waits for Kafka's confirmation before answering 503.
    publish_timeout_s: float = 2.0
    # Longest voicemail a caller may leave when they leave the queue.
    voicemail_max_s: int = 120
    # The directory lookup is an indexed point query (tens of microseconds); a thread hop
    # costs more than it saves (bench/webhooks.py measures both). Set for slow directories.
    lookup_in_threadpool: bool = False

    def __post_init__(self) -> None:
        if self.publish_timeout_s <= 0:
            raise ValueError("publish_timeout_s must be positive")
        if self.dial_client is not None and self.workflow_sid is not None:
            raise ValueError("set dial_client or workflow_sid, not both: a call goes one way")


@dataclass(frozen=True)
class CtiConfig:
    """The generic CTI webhook: any phone system posts call events with a bearer token."""

    token: str
    default_region: str | None = None
    publish_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise ValueError("the CTI token must be at least 16 characters (use a random one)")
        if self.publish_timeout_s <= 0:
            raise ValueError("publish_timeout_s must be positive")
