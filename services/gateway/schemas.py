"""HTTP response shapes (the OpenAPI document is generated from these).

Error bodies are ``services.gateway.problems``: one shape for every route.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class TimelineItem(BaseModel):
    position: int = Field(description="Order in the event store (global, increasing)")
    occurred_at: datetime
    type: str = Field(examples=["message.received.v1"])
    channel: str
    direction: str
    party: str
    provider_ref: str
    summary: str
    payload: dict[str, Any] = Field(description="The interaction as the channel reported it")


class Timeline(BaseModel):
    customer_id: UUID
    items: list[TimelineItem]
    limit: int
    offset: int


class Delivery(BaseModel):
    message_ref: str = Field(
        description="The provider's id of the outbound message, or the "
        "command id when it was never sent"
    )
    customer_id: UUID
    channel: str
    status: str = Field(examples=["delivered"])
    updated_at: datetime = Field(description="When the provider reported this status")
