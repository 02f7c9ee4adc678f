"""Which channels are on: build their webhook routers and outbound senders from the settings.

A channel is wired when its credentials are set; an unconfigured one simply has no
webhooks and no sender (commands for it fail with a clear "no sender configured").
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from pydantic import SecretStr

from channels.outbound import Sender
from channels.publishing import InteractionPublisher
from channels.social import (
    MessengerConfig,
    MessengerSender,
    TelegramConfig,
    TelegramSender,
    WhatsAppConfig,
    WhatsAppSender,
    messenger_router,
    telegram_router,
    whatsapp_router,
)
from contracts import Channel
from projections.timeline import TimelineView
from services.settings import Settings


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


@dataclass
class ChannelConfigs:
    whatsapp: WhatsAppConfig | None = None
    messenger: MessengerConfig | None = None
    telegram: TelegramConfig | None = None


def channel_configs(settings: Settings) -> ChannelConfigs:
    configs = ChannelConfigs()
    if settings.whatsapp_app_secret is not None:
        configs.whatsapp = WhatsAppConfig(
            app_secret=_secret(settings.whatsapp_app_secret),
            verify_token=_secret(settings.whatsapp_verify_token),
            access_token=_secret(settings.whatsapp_access_token),
            phone_number_id=settings.whatsapp_phone_number_id or "",
            graph_base_url=settings.graph_base_url,
            api_version=settings.graph_api_version,
        )
    if settings.messenger_app_secret is not None:
        configs.messenger = MessengerConfig(
            app_secret=_secret(settings.messenger_app_secret),
            verify_token=_secret(settings.messenger_verify_token),
            page_access_token=_secret(settings.messenger_page_access_token),
            graph_base_url=settings.graph_base_url,
            api_version=settings.graph_api_version,
            message_tag=settings.messenger_message_tag,
        )
    if settings.telegram_bot_token is not None:
        configs.telegram = TelegramConfig(
            bot_token=_secret(settings.telegram_bot_token),
            secret_token=_secret(settings.telegram_secret_token),
            api_base_url=settings.telegram_api_base_url,
        )
    return configs


def build_webhook_routers(
    settings: Settings, *, publisher: InteractionPublisher, directory: TimelineView
) -> list[APIRouter]:
    configs = channel_configs(settings)
    routers: list[APIRouter] = []
    if configs.whatsapp:
        routers.append(whatsapp_router(publisher=publisher, config=configs.whatsapp))
    if configs.messenger:
        routers.append(messenger_router(publisher=publisher, config=configs.messenger))
    if configs.telegram:
        routers.append(telegram_router(publisher=publisher, config=configs.telegram))
    return routers


def build_senders(settings: Settings) -> dict[Channel, Sender]:
    configs = channel_configs(settings)
    senders: dict[Channel, Sender] = {}
    if configs.whatsapp:
        senders[Channel.whatsapp] = WhatsAppSender(configs.whatsapp)
    if configs.messenger:
        senders[Channel.messenger] = MessengerSender(configs.messenger)
    if configs.telegram:
        senders[Channel.telegram] = TelegramSender(configs.telegram)
    return senders
