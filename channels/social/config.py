"""What the social channels need to know, built by the composition root and handed down.

Plain dataclasses: the settings object in ``services/`` owns the environment; these only
check that what they were given can work, so a misconfiguration fails at start-up rather
than on the first webhook.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MessengerConfig", "TelegramConfig", "WhatsAppConfig"]

GRAPH_BASE_URL = "https://graph.facebook.com"
GRAPH_API_VERSION = "v21.0"
TELEGRAM_BASE_URL = "https://api.telegram.org"
# How long a webhook waits for Kafka to confirm before answering 503 (the provider retries).
PUBLISH_TIMEOUT_S = 10.0

# setWebhook's secret_token: 1-256 characters, only A-Z, a-z, 0-9, _ and - (Bot API docs).
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _require(name: str, value: str, hint: str) -> None:
    # An empty secret would make every forged request match it.
    if not value:
        raise ValueError(f"{name} is empty: {hint}")


@dataclass(frozen=True)
class WhatsAppConfig:
    """WhatsApp Cloud API: one business phone number of one Meta app."""

    app_secret: str  # signs X-Hub-Signature-256
    verify_token: str  # our choice, typed into the app dashboard for the GET handshake
    access_token: str  # system-user token for the Graph API
    phone_number_id: str  # the business number's Graph id (not the number itself)
    graph_base_url: str = GRAPH_BASE_URL
    api_version: str = GRAPH_API_VERSION
    publish_timeout_s: float = PUBLISH_TIMEOUT_S

    def __post_init__(self) -> None:
        _require("WhatsApp app_secret", self.app_secret, "copy it from the Meta app dashboard")
        _require("WhatsApp verify_token", self.verify_token, "choose one and enter it at Meta")
        _require("WhatsApp phone_number_id", self.phone_number_id, "see WhatsApp > API Setup")


@dataclass(frozen=True)
class MessengerConfig:
    """Messenger Platform: one Facebook page of one Meta app."""

    app_secret: str
    verify_token: str
    page_access_token: str
    graph_base_url: str = GRAPH_BASE_URL
    api_version: str = GRAPH_API_VERSION
    # Sent with messages outside the 24-hour standard messaging window (e.g. "HUMAN_AGENT",
    # which the app must be approved for); None refuses such messages instead.
    message_tag: str | None = None
    publish_timeout_s: float = PUBLISH_TIMEOUT_S

    def __post_init__(self) -> None:
        _require("Messenger app_secret", self.app_secret, "copy it from the Meta app dashboard")
        _require("Messenger verify_token", self.verify_token, "choose one and enter it at Meta")


@dataclass(frozen=True)
class TelegramConfig:
    """Telegram Bot API: one bot."""

    bot_token: str  # from @BotFather
    secret_token: str  # passed to setWebhook; Telegram echoes it in every update's header
    api_base_url: str = TELEGRAM_BASE_URL
    publish_timeout_s: float = PUBLISH_TIMEOUT_S

    def __post_init__(self) -> None:
        _require("Telegram bot_token", self.bot_token, "ask @BotFather for it")
        if not _TELEGRAM_SECRET.fullmatch(self.secret_token):
            raise ValueError(
                "Telegram secret_token must be 1-256 characters of A-Z, a-z, 0-9, _ and - "
                "(setWebhook's rule); secrets.token_urlsafe(32) makes a good one"
            )
