"""Meta webhooks (WhatsApp Cloud API and Messenger): signature, handshake, and their router.

Meta signs every POST with ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw
body under the app secret. It is checked over the bytes as received: re-serialized JSON differs
(key order, escapes such as ``\\u00e9`` or ``\\/``) and would fail on genuine deliveries. The GET
handshake proves to Meta, when the webhook is configured, that the URL is ours.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from starlette.datastructures import Headers

from channels.publishing import InteractionPublisher
from channels.social.payload import MalformedPayload, objects, required
from channels.social.webhook import (
    DELIVERY_RESPONSES,
    PUBLISHED,
    ParseEvents,
    json_body,
    receive,
)

__all__ = [
    "SIGNATURE_HEADER",
    "MetaWebhookConfig",
    "meta_entries",
    "meta_router",
    "meta_signature",
    "verify_meta_signature",
]

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="

# Documents the header only (auto_error off): the signature covers the raw body, so it is
# checked once that is read (channels.social.webhook.receive).
SIGNATURE_SCHEME = APIKeyHeader(
    name=SIGNATURE_HEADER,
    scheme_name="MetaSignature",
    auto_error=False,
    description="sha256=<hex HMAC-SHA256 of the raw body under the app secret>.",
)
# The handshake's parameter names contain dots, which FastAPI's query parameters cannot
# express; they are read from the query string and documented here.
_HANDSHAKE = {
    "parameters": [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in (
            ("hub.mode", "Always subscribe."),
            ("hub.verify_token", "The verify token configured for this webhook."),
            ("hub.challenge", "What to echo back."),
        )
    ]
}
_HANDSHAKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The challenge, echoed.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    400: {"description": "hub.challenge is missing."},
    403: {"description": "hub.mode is not subscribe, or hub.verify_token does not match."},
}


def meta_signature(raw_body: bytes, app_secret: str) -> str:
    """The header value Meta sends for ``raw_body``: ``sha256=<lower-case hex>``."""
    return _PREFIX + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_meta_signature(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``header`` is Meta's signature of exactly these bytes under ``app_secret``."""
    if not header or not header.startswith(_PREFIX):
        return False
    # Compared as bytes: compare_digest rejects non-ASCII str, and a forged header may hold any.
    expected = meta_signature(raw_body, app_secret).encode()
    return hmac.compare_digest(expected, header.strip().lower().encode("utf-8", "replace"))


def handshake_answer(
    *, mode: str | None, token: str | None, challenge: str | None, verify_token: str
) -> str:
    """The challenge to echo when Meta's GET handshake is genuine, else HTTPException."""
    genuine = mode == "subscribe" and hmac.compare_digest(
        (token or "").encode(), verify_token.encode()
    )
    if not genuine:
        raise HTTPException(403, "hub.mode must be 'subscribe' and hub.verify_token must match")
    if not challenge:
        raise HTTPException(400, "hub.challenge is missing")
    return challenge


class MetaWebhookConfig(Protocol):
    """What the WhatsApp and Messenger configs both carry for their webhooks."""

    @property
    def app_secret(self) -> str: ...
    @property
    def verify_token(self) -> str: ...
    @property
    def publish_timeout_s(self) -> float: ...


def meta_entries(payload: Any, expected_object: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``entry[]`` objects of a delivery, after checking it is about ``expected_object``."""
    if not isinstance(payload, dict):
        raise MalformedPayload("expected a JSON object at the top level")
    kind = required(payload, "object", str)
    if kind != expected_object:
        raise MalformedPayload(f"object: expected {expected_object!r}, got {kind!r}")
    return objects(payload, "entry", must=True)


def meta_router(
    *,
    path: str,
    provider: str,
    object_name: str,
    config: MetaWebhookConfig,
    parse: ParseEvents,
    publisher: InteractionPublisher,
) -> APIRouter:
    """GET (handshake) and POST (deliveries) on ``path``, as WhatsApp and Messenger share them."""
    router = APIRouter(tags=["webhooks"])
    app_secret, verify_token = config.app_secret, config.verify_token

    def authenticate(raw: bytes, headers: Headers) -> str | None:
        header = headers.get(SIGNATURE_HEADER)
        if header is None:
            return f"{SIGNATURE_HEADER} is missing"
        if not verify_meta_signature(raw, header, app_secret):
            return f"{SIGNATURE_HEADER} does not match the body (wrong app secret, or altered)"
        return None

    @router.get(
        path,
        response_class=PlainTextResponse,
        summary=f"{provider} webhook handshake",
        responses=_HANDSHAKE_RESPONSES,
        openapi_extra=_HANDSHAKE,
    )
    async def handshake(request: Request) -> PlainTextResponse:
        query = request.query_params
        challenge = handshake_answer(
            mode=query.get("hub.mode"),
            token=query.get("hub.verify_token"),
            challenge=query.get("hub.challenge"),
            verify_token=verify_token,
        )
        return PlainTextResponse(challenge)

    delivery = json_body(
        {
            "type": "object",
            "properties": {
                "object": {"type": "string", "enum": [object_name]},
                "entry": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["object", "entry"],
        }
    )

    @router.post(
        path,
        summary=f"{provider} webhook deliveries",
        responses={**PUBLISHED, **DELIVERY_RESPONSES},
        dependencies=[Security(SIGNATURE_SCHEME)],
        openapi_extra=delivery,
    )
    async def deliveries(request: Request) -> JSONResponse:
        return await receive(
            request,
            provider=provider,
            authenticate=authenticate,
            parse=parse,
            publisher=publisher,
            timeout=config.publish_timeout_s,
        )

    return router
