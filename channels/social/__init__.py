"""Social messaging channels: WhatsApp Cloud API, Messenger and Telegram.

Inbound: FastAPI routers for the providers' webhooks (``whatsapp_router``, ``messenger_router``,
``telegram_router``), which publish contract events and answer 2xx only once Kafka confirmed.
Outbound: ``WhatsAppSender``, ``MessengerSender`` and ``TelegramSender`` for the dispatcher.
"""

from channels.social.config import MessengerConfig, TelegramConfig, WhatsAppConfig
from channels.social.messenger import messenger_router
from channels.social.outbound import MessengerSender, TelegramSender, WhatsAppSender
from channels.social.telegram import telegram_router
from channels.social.whatsapp import whatsapp_router
from channels.social.window import within_service_window

__all__ = [
    "MessengerConfig",
    "MessengerSender",
    "TelegramConfig",
    "TelegramSender",
    "WhatsAppConfig",
    "WhatsAppSender",
    "messenger_router",
    "telegram_router",
    "whatsapp_router",
    "within_service_window",
]
