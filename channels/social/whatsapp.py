"""WhatsApp Cloud API webhooks: customers' messages and our messages' delivery statuses.

A delivery is ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":
"messages", "value": {...}}]}]}``; each value carries ``messages[]`` (from customers) and/or
``statuses[]`` (about messages we sent). Other fields (account, template and quality updates)
are acknowledged and ignored: answering them with an error would make Meta retry for a day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from channels.publishing import InteractionPublisher
from channels.social.config import WhatsAppConfig
from channels.social.meta import meta_entries, meta_router
from channels.social.payload import (
    at,
    contract_values,
    from_unix,
    objects,
    optional,
    required,
)
from contracts import (
    Channel,
    DeliveryStatus,
    DeliveryStatusChanged,
    InteractionEvent,
    MessageReceived,
)

__all__ = ["WEBHOOK_PATH", "whatsapp_events", "whatsapp_router"]

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp"
_OBJECT = "whatsapp_business_account"
_MAX_ERROR_CHARS = 2000  # DeliveryStatusChanged.error_message's limit
_STATUSES = {
    "sent": DeliveryStatus.sent,
    "delivered": DeliveryStatus.delivered,
    "read": DeliveryStatus.read,
    "failed": DeliveryStatus.failed,
}


def whatsapp_router(*, publisher: InteractionPublisher, config: WhatsAppConfig) -> APIRouter:
    """GET (Meta's handshake) and POST (deliveries) on /webhooks/whatsapp."""
    return meta_router(
        path=WEBHOOK_PATH,
        provider="WhatsApp",
        object_name=_OBJECT,
        config=config,
        parse=whatsapp_events,
        publisher=publisher,
    )


def whatsapp_events(payload: Any) -> list[InteractionEvent]:
    """The contract events in one webhook delivery, in the order Meta listed them."""
    events: list[InteractionEvent] = []
    for entry_path, entry in meta_entries(payload, _OBJECT):
        for path, change in objects(entry, "changes", entry_path, must=True):
            field = required(change, "field", str, path)
            if field != "messages":
                log.info("WhatsApp webhook: ignoring a %r change", field)
                continue
            events.extend(_value_events(required(change, "value", dict, path), at(path, "value")))
    return events


def _value_events(value: dict[str, Any], path: str) -> list[InteractionEvent]:
    metadata = required(value, "metadata", dict, path)
    endpoint = optional(metadata, "display_phone_number", str, at(path, "metadata")) or required(
        metadata, "phone_number_id", str, at(path, "metadata")
    )
    for error_path, error in objects(value, "errors", path):
        # Errors about the account or a webhook as a whole, with no message to attach them to.
        log.warning("WhatsApp reported an error at %s: %s", error_path, error)
    events: list[InteractionEvent] = []
    for message_path, message in objects(value, "messages", path):
        events.append(_message_received(message, message_path, endpoint))
    for status_path, status in objects(value, "statuses", path):
        event = _status_changed(status, status_path, endpoint)
        if event is not None:
            events.append(event)
    return events


def _message_received(message: dict[str, Any], path: str, endpoint: str) -> MessageReceived:
    context = optional(message, "context", dict, path) or {}
    kind = required(message, "type", str, path)
    in_reply_to = optional(context, "id", str, at(path, "context"))
    if kind == "reaction":
        reaction = required(message, "reaction", dict, path)
        in_reply_to = optional(reaction, "message_id", str, at(path, "reaction"))
    with contract_values(path):
        return MessageReceived(
            channel=Channel.whatsapp,
            party=required(message, "from", str, path),
            provider_ref=required(message, "id", str, path),
            occurred_at=from_unix(required(message, "timestamp", str, path), at(path, "timestamp")),
            endpoint=endpoint,
            body=_readable_body(message, kind, path),
            in_reply_to=in_reply_to,
        )


def _readable_body(message: dict[str, Any], kind: str, path: str) -> str:
    """What an agent reads on the timeline. Media stay at Meta, so their ids are kept."""
    if kind == "text":
        return required(required(message, "text", dict, path), "body", str, at(path, "text"))
    if kind == "contacts":
        return _joined("[contacts]", *_contact_lines(message.get("contacts")))
    content = message.get(kind)
    describe = _DESCRIBE.get(kind)
    if describe is None or not isinstance(content, dict):
        return f"[{kind}]"  # "unsupported", "unknown", and types Meta adds later
    return describe(content)


def _joined(*parts: Any) -> str:
    return " ".join(str(part) for part in parts if part not in (None, ""))


def _media(kind: str) -> Callable[[dict[str, Any]], str]:
    def describe(media: dict[str, Any]) -> str:
        media_id = media.get("id")
        return _joined(
            f"[{kind}]",
            media.get("filename"),
            media.get("caption"),
            media_id and f"(media {media_id})",
        )

    return describe


def _location(place: dict[str, Any]) -> str:
    where = f"({place.get('latitude')}, {place.get('longitude')})"
    return _joined("[location]", place.get("name"), place.get("address"), where)


def _reaction(reaction: dict[str, Any]) -> str:
    emoji = reaction.get("emoji")
    # An empty emoji is how WhatsApp reports that the customer took a reaction back.
    return f"[reaction] {emoji}" if emoji else "[reaction removed]"


def _interactive(content: dict[str, Any]) -> str:
    kind = str(content.get("type") or "interactive")
    reply = content.get(kind)
    reply = reply if isinstance(reply, dict) else {}
    return _joined(f"[{kind.replace('_', ' ')}]", reply.get("title") or reply.get("body"))


def _contact_lines(contacts: Any) -> list[str]:
    lines = []
    for contact in contacts if isinstance(contacts, list) else []:
        if isinstance(contact, dict):
            name = contact.get("name")
            phones = [p.get("phone") for p in contact.get("phones") or [] if isinstance(p, dict)]
            lines.append(
                _joined(name.get("formatted_name") if isinstance(name, dict) else None, *phones)
            )
    return lines


_DESCRIBE: dict[str, Callable[[dict[str, Any]], str]] = {
    **{kind: _media(kind) for kind in ("image", "video", "audio", "document", "sticker")},
    "location": _location,
    "reaction": _reaction,
    "button": lambda button: _joined("[button]", button.get("text") or button.get("payload")),
    "interactive": _interactive,
    "system": lambda system: _joined("[system]", system.get("body") or system.get("type")),
}


def _status_changed(
    status: dict[str, Any], path: str, endpoint: str
) -> DeliveryStatusChanged | None:
    reported = required(status, "status", str, path)
    if reported not in _STATUSES:
        # e.g. "deleted" (retired) or kinds Meta adds later: a 400 would be retried for a day.
        log.info("WhatsApp webhook: ignoring status %r at %s", reported, path)
        return None
    wamid = required(status, "id", str, path)
    error_code, error_message = _first_error(status, path)
    with contract_values(path):
        return DeliveryStatusChanged(
            channel=Channel.whatsapp,
            party=required(status, "recipient_id", str, path),
            # One message has one report per status, so the status names the report.
            provider_ref=f"{wamid}:{reported}",
            message_ref=wamid,
            status=_STATUSES[reported],
            occurred_at=from_unix(required(status, "timestamp", str, path), at(path, "timestamp")),
            endpoint=endpoint,
            error_code=error_code,
            error_message=error_message,
        )


def _first_error(status: dict[str, Any], path: str) -> tuple[str | None, str | None]:
    """Code and explanation of a failed status: ``errors[0]`` with its title and details."""
    errors = objects(status, "errors", path)
    if not errors:
        return None, None
    error = errors[0][1]
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    text = _joined(error.get("title") or error.get("message"), details and f"- {details}")
    code = error.get("code")
    return (None if code is None else str(code)), (text[:_MAX_ERROR_CHARS] or None)
