"""What the voice webhook needs to know about a caller while the phone rings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol
from uuid import UUID

from contracts import ContactRouted


class CallerDirectory(Protocol):
    """Address -> customer. ``projections.timeline.TimelineView`` satisfies it.

    Synchronous and fast (an indexed point lookup): the webhook calls it on the event loop.
    """

    def customer_for_address(self, address: str) -> UUID | None: ...


class CallRouter(Protocol):
    """Where a call goes (``services.router.service.Router`` satisfies it).

    ``known`` reads the caller's card (I/O: the webhook may run it in a thread); ``route``
    decides on the event loop, without I/O, and returns the decision to publish.
    """

    @property
    def offer_timeout_s(self) -> float: ...

    def overflow_after_s(self, queue: str | None) -> float | None: ...

    def known(self, address: str) -> Any: ...

    def customer_of(self, known: Any) -> UUID | None: ...

    def route(
        self,
        *,
        channel: str,
        party: str,
        contact_ref: str,
        known: Any = ...,
        dialled: str | None = None,
        attempt: int = 1,
        exclude: Iterable[str] = (),
        waited_s: float = 0.0,
    ) -> ContactRouted: ...
