"""What every social webhook does once the provider-specific parts are known.

Read the raw body (bounded), authenticate it, parse it into contract events, publish them all
and wait for Kafka to confirm, and only then answer 2xx. Any failure to confirm answers 503 so
that the provider retries; provider ids make the retry a no-op in the recorder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import Headers

from channels.publishing import InteractionPublisher
from channels.social.payload import MalformedPayload, describe_validation_error, parse_json
from channels.webhooks import publish_confirmed
from contracts import InteractionEvent

__all__ = [
    "DELIVERY_RESPONSES",
    "MAX_BODY_BYTES",
    "PUBLISHED",
    "Authenticate",
    "ParseEvents",
    "json_body",
    "receive",
]

log = logging.getLogger(__name__)

# Meta and Telegram updates are a few kilobytes; the cap is checked before the signature, so
# an unauthenticated caller cannot make us buffer and hash megabytes.
MAX_BODY_BYTES = 1024 * 1024

# What the OpenAPI document says every social POST answers besides 200.
DELIVERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed payload; the detail names the field by its path."},
    403: {"description": "Not authenticated as the provider; nothing was published."},
    413: {"description": f"The body is over {MAX_BODY_BYTES} bytes."},
    503: {"description": "Kafka did not confirm; the provider should retry."},
}
PUBLISHED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Kafka confirmed every event of the delivery.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"published": {"type": "integer", "minimum": 0}},
                    "required": ["published"],
                }
            }
        },
    }
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a provider's JSON delivery. The body is read as JSON whatever its
    content type says (providers are not consistent), but JSON is what they send."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# (raw body, headers) -> None if genuine, else why not (answered with 403).
Authenticate = Callable[[bytes, Headers], str | None]
ParseEvents = Callable[[Any], Sequence[InteractionEvent]]


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(
    request: Request,
    *,
    provider: str,
    authenticate: Authenticate,
    parse: ParseEvents,
    publisher: InteractionPublisher,
    timeout: float,
) -> JSONResponse:
    """The whole POST handling of a webhook; the router supplies the provider's parts."""
    raw = await read_body(request)
    refusal = authenticate(raw, request.headers)
    if refusal is not None:
        log.warning("%s webhook refused: %s", provider, refusal)
        raise HTTPException(403, refusal)
    try:
        events = parse(parse_json(raw))
    except MalformedPayload as exc:
        log.warning("%s webhook: malformed payload: %s", provider, exc)
        raise HTTPException(400, f"malformed {provider} payload: {exc}") from None
    except ValidationError as exc:
        # Parsers name the payload path of a refused value; this is the safety net.
        reason = describe_validation_error(exc)
        log.warning("%s webhook: invalid values: %s", provider, reason)
        raise HTTPException(400, f"malformed {provider} payload: {reason}") from None
    await publish_confirmed(publisher, events, timeout_s=timeout, provider=provider)
    return JSONResponse({"published": len(events)})
