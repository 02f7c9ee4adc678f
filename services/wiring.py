"""Which channels are on: build their webhook routers and outbound senders from the settings.

A channel is wired when its settings are present; an unconfigured one simply has no
webhooks and no sender (commands for it fail with a clear "no sender configured").
"""

from __future__ import annotations

from fastapi import APIRouter

from channels.outbound import Sender
from channels.publishing import InteractionPublisher
from contracts import Channel
from projections.timeline import TimelineView
from services.settings import Settings


def build_webhook_routers(
    settings: Settings, *, publisher: InteractionPublisher, directory: TimelineView
) -> list[APIRouter]:
    routers: list[APIRouter] = []
    return routers


def build_senders(settings: Settings) -> dict[Channel, Sender]:
    senders: dict[Channel, Sender] = {}
    return senders
