"""Telegram Bot API webhook: customers' messages to our bot.

Telegram proves a delivery is its own by echoing the ``secret_token`` we gave ``setWebhook`` in
``X-Telegram-Bot-Api-Secret-Token`` (there is no body signature). One POST carries one Update.

Which updates become events:

- ``message``: MessageReceived. ``provider_ref`` is ``<chat id>:<message_id>``: message ids
  count per chat, and a redelivered update carries the same pair. It is also the form our
  outbound sender reports, so replies and quotes (``in_reply_to``) line up with it.
- ``edited_message``: MessageReceived with body ``[edited] …`` and provider_ref
  ``<chat>:<message_id>:edited:<edit_date>``: an edit is new content the agent should see, and
  each edit is a distinct, stably named event; ``in_reply_to`` points at the original.
- everything else (``channel_post`` — broadcasts in channels the bot administers, not customer
  contacts — ``callback_query``, ``my_chat_member``, polls, …): acknowledged and ignored.

The party is ``telegram:<chat id>``: the person for private chats, the group for group chats.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.datastructures import Headers

from channels.publishing import InteractionPublisher
from channels.social.config import TelegramConfig
from channels.social.payload import (
    MalformedPayload,
    at,
    contract_values,
    from_unix,
    optional,
    required,
)
from channels.social.webhook import DELIVERY_RESPONSES, PUBLISHED, json_body, receive
from contracts import Channel, InteractionEvent, MessageReceived

__all__ = ["SECRET_HEADER", "WEBHOOK_PATH", "telegram_events", "telegram_router"]

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# Documents the header only (auto_error off): a wrong or missing one answers 403 like every
# other refused delivery, after the body's size is checked.
SECRET_SCHEME = APIKeyHeader(
    name=SECRET_HEADER,
    scheme_name="TelegramSecretToken",
    auto_error=False,
    description="The secret_token given to setWebhook.",
)
_MESSAGE = {"type": "object", "description": "A Telegram Message: chat.id, message_id, date."}
_UPDATE = json_body(
    {
        "type": "object",
        "properties": {
            "update_id": {"type": "integer"},
            "message": _MESSAGE,
            "edited_message": _MESSAGE,
        },
        "required": ["update_id"],
    }
)

# Content without text, in the order it is looked for; shown as "[photo] caption".
_CONTENT = ("photo", "video", "animation", "audio", "voice", "video_note", "document", "sticker")


def telegram_router(*, publisher: InteractionPublisher, config: TelegramConfig) -> APIRouter:
    """POST /webhooks/telegram."""
    router = APIRouter(tags=["webhooks"])
    expected = config.secret_token.encode()

    def authenticate(_raw: bytes, headers: Headers) -> str | None:
        given = headers.get(SECRET_HEADER)
        if given is None:
            return f"{SECRET_HEADER} is missing"
        if not hmac.compare_digest(given.encode(), expected):
            return f"{SECRET_HEADER} does not match the configured secret token"
        return None

    @router.post(
        WEBHOOK_PATH,
        summary="Telegram webhook updates",
        responses={**PUBLISHED, **DELIVERY_RESPONSES},
        dependencies=[Security(SECRET_SCHEME)],
        openapi_extra=_UPDATE,
    )
    async def updates(request: Request) -> JSONResponse:
        return await receive(
            request,
            provider="Telegram",
            authenticate=authenticate,
            parse=telegram_events,
            publisher=publisher,
            timeout=config.publish_timeout_s,
        )

    return router


def telegram_events(update: Any) -> list[InteractionEvent]:
    """The contract events in one Update (zero or one)."""
    if not isinstance(update, dict):
        raise MalformedPayload("expected a JSON object (an Update) at the top level")
    required(update, "update_id", int)
    for kind in ("message", "edited_message"):
        if kind in update:
            with contract_values(kind):
                return [_received(required(update, kind, dict), kind, edited=kind != "message")]
    log.info("Telegram webhook: ignoring an update with keys %s", sorted(update))
    return []


def _received(message: dict[str, Any], path: str, *, edited: bool) -> MessageReceived:
    chat_id = required(required(message, "chat", dict, path), "id", int, at(path, "chat"))
    ref = f"{chat_id}:{required(message, 'message_id', int, path)}"
    reply = optional(message, "reply_to_message", dict, path)
    in_reply_to = f"{chat_id}:{reply['message_id']}" if reply and "message_id" in reply else None
    body = _readable_body(message)
    when_field = "edit_date" if edited else "date"
    when = required(message, when_field, int, path)
    if edited:
        ref, in_reply_to, body = f"{ref}:edited:{when}", ref, f"[edited] {body}"
    return MessageReceived(
        channel=Channel.telegram,
        party=str(chat_id),
        provider_ref=ref,
        occurred_at=from_unix(when, at(path, when_field)),
        body=body,
        in_reply_to=in_reply_to,
    )


def _readable_body(message: dict[str, Any]) -> str:
    """The text, or for media and the like a bracketed kind and the caption."""
    if isinstance(message.get("text"), str):
        return message["text"]
    caption = message.get("caption") if isinstance(message.get("caption"), str) else ""
    for kind in _CONTENT:
        content = message.get(kind)
        if content:
            name = content.get("file_name") if isinstance(content, dict) else None
            emoji = (
                content.get("emoji") if kind == "sticker" and isinstance(content, dict) else None
            )
            label = " ".join(x for x in (kind.replace("_", " "), name, emoji) if x)
            return f"[{label}] {caption}".rstrip()
    if isinstance(message.get("location"), dict):
        place = message["location"]
        return f"[location] ({place.get('latitude')}, {place.get('longitude')})"
    if isinstance(message.get("contact"), dict):
        contact = message["contact"]
        who = " ".join(
            str(contact[k]) for k in ("first_name", "last_name", "phone_number") if contact.get(k)
        )
        return f"[contact] {who}".rstrip()
    return "[unsupported message]"
