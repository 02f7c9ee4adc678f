"""What the voice webhook needs to know about a caller while the phone rings."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID


class CallerDirectory(Protocol):
    """Address -> customer. ``projections.timeline.TimelineView`` satisfies it.

    Synchronous and fast (an indexed point lookup): the webhook calls it on the event loop.
    """

    def customer_for_address(self, address: str) -> UUID | None: ...
