"""What every channel's webhook does: 400 naming the field, and last, publish its events,
confirmed by Kafka, or 503.

A provider may be answered 2xx only once its contact is safely in Kafka; anything else
answers 503 (with Retry-After) so the provider retries, and the recorder deduplicates a
retry of what did get through by provider_ref.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from channels.publishing import InteractionPublisher
from contracts import InteractionEvent

log = logging.getLogger(__name__)

RETRY_AFTER_S = "5"


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def refused_values(exc: ValidationError, *, whole: str) -> str:
    """``field: reason; ...`` for each value pydantic refused; ``whole`` names a refusal of
    the whole model (it has no field)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or whole}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def invalid_event(exc: ValidationError) -> HTTPException:
    """400 for a request whose values do not make a valid contract event."""
    return bad_request(
        "the request does not make a valid event: " + refused_values(exc, whole="event")
    )


async def publish_confirmed(
    publisher: InteractionPublisher,
    events: Iterable[InteractionEvent],
    *,
    timeout_s: float,
    provider: str,
    topic: str | None = None,
) -> None:
    """Publish ``events`` in order, each confirmed by Kafka within ``timeout_s`` overall.

    One at a time: one party's events share a key, and their order is the order the
    provider reported them in.  On the deadline the pending write is left to finish
    (shielded) rather than cancelled half-way; if it lands, the retry is a no-op.
    """
    deadline = time.monotonic() + timeout_s
    for event in events:
        await confirmed(
            publisher.publish(event) if topic is None else publisher.publish(event, topic=topic),
            timeout_s=max(0.0, deadline - time.monotonic()),
            what=f"{provider} webhook: {event.provider_ref}",
            context={"provider_ref": event.provider_ref, "event_id": str(event.event_id)},
        )


async def confirmed(
    write: Awaitable[Any], *, timeout_s: float, what: str, context: dict[str, str] | None = None
) -> None:
    """Wait for Kafka to confirm ``write``; 503 with Retry-After when it does not in time
    or fails (the caller retries; a write that lands late makes that retry a no-op)."""
    pending = asyncio.ensure_future(write)
    pending.add_done_callback(_consume_outcome)
    try:
        await asyncio.wait_for(asyncio.shield(pending), timeout_s)
    except TimeoutError:
        log.error("%s: Kafka did not confirm within %gs", what, timeout_s, extra=context)
        raise HTTPException(
            503,
            f"Kafka did not confirm within {timeout_s:g}s; retry",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from None
    except Exception as exc:
        log.warning("%s: publishing failed: %r", what, exc, extra=context)
        raise HTTPException(
            503,
            f"could not publish to Kafka ({type(exc).__name__}); retry",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from None


def _consume_outcome(future: asyncio.Future) -> None:
    # A write abandoned after the deadline must not log "exception never retrieved".
    if not future.cancelled():
        future.exception()
