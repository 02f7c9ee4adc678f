"""Messenger Platform webhooks: customers' messages and delivery/read receipts.

A delivery is ``{"object": "page", "entry": [{"id": <page id>, "messaging": [...]}]}``; each
messaging item has ``sender.id`` (the customer's page-scoped id, PSID; never a phone number),
``recipient.id`` (our page), ``timestamp`` (ms) and one of ``message``, ``delivery``, ``read``,
``postback`` and kinds we do not record (``optin``, ``referral``, ``reaction``, handover
``standby``), which are acknowledged and ignored.

Echoes (``message.is_echo``) are the page's own outbound messages: the outbound dispatcher
records those as message.sent.v1 itself, so they are skipped here.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from channels.publishing import InteractionPublisher
from channels.social.config import MessengerConfig
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

__all__ = ["WATERMARK_PREFIX", "WEBHOOK_PATH", "messenger_events", "messenger_router"]

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/messenger"
# message_ref of a receipt that covers "everything we sent before this time" (see _receipts).
WATERMARK_PREFIX = "watermark:"
_OBJECT = "page"
_RECEIPTS = {"delivery": DeliveryStatus.delivered, "read": DeliveryStatus.read}


def messenger_router(*, publisher: InteractionPublisher, config: MessengerConfig) -> APIRouter:
    """GET (Meta's handshake) and POST (deliveries) on /webhooks/messenger."""
    return meta_router(
        path=WEBHOOK_PATH,
        provider="Messenger",
        object_name=_OBJECT,
        config=config,
        parse=messenger_events,
        publisher=publisher,
    )


def messenger_events(payload: Any) -> list[InteractionEvent]:
    """The contract events in one webhook delivery, in the order Meta listed them."""
    events: list[InteractionEvent] = []
    for entry_path, entry in meta_entries(payload, _OBJECT):
        for path, item in objects(entry, "messaging", entry_path):
            with contract_values(path):
                events.extend(_item_events(item, path))
    return events


def _item_events(item: dict[str, Any], path: str) -> list[InteractionEvent]:
    kind = next((k for k in ("message", "postback", *_RECEIPTS) if k in item), None)
    if kind is None:
        log.info("Messenger webhook: ignoring a messaging item with keys %s", sorted(item))
        return []
    content = required(item, kind, dict, path)
    if kind == "message" and content.get("is_echo"):
        return []
    psid = required(required(item, "sender", dict, path), "id", str, at(path, "sender"))
    page = optional(optional(item, "recipient", dict, path) or {}, "id", str)
    common: dict[str, Any] = {"channel": Channel.messenger, "party": psid, "endpoint": page}
    if kind in _RECEIPTS:
        # Meta's delivery items may come without a timestamp; the watermark says when, then.
        when = optional(item, "timestamp", int, path) or required(
            content, "watermark", int, at(path, kind)
        )
        common["occurred_at"] = from_unix(when, at(path, "timestamp"), millis=True)
        return _receipts(content, at(path, kind), _RECEIPTS[kind], common)
    timestamp = required(item, "timestamp", int, path)
    common["occurred_at"] = from_unix(timestamp, at(path, "timestamp"), millis=True)
    if kind == "message":
        return [_message_received(content, at(path, "message"), common)]
    # A postback (a button the customer tapped). Older ones have no mid; sender and time are
    # what a redelivery repeats exactly.
    ref = optional(content, "mid", str, at(path, kind)) or f"postback:{psid}:{timestamp}"
    title = content.get("title") or content.get("payload") or ""
    return [MessageReceived(**common, provider_ref=ref, body=f"[postback] {title}".rstrip())]


def _message_received(
    message: dict[str, Any], path: str, common: dict[str, Any]
) -> MessageReceived:
    kinds = [
        str(attachment.get("type") or "attachment")
        for _, attachment in objects(message, "attachments", path)
    ]
    text = optional(message, "text", str, path)
    body = " ".join([text or "", *(f"[{kind}]" for kind in kinds)]).strip()
    reply_to = optional(message, "reply_to", dict, path) or {}
    return MessageReceived(
        **common,
        provider_ref=required(message, "mid", str, path),
        body=body or "[message]",
        in_reply_to=optional(reply_to, "mid", str, at(path, "reply_to")),
    )


def _receipts(
    receipt: dict[str, Any], path: str, status: DeliveryStatus, common: dict[str, Any]
) -> list[InteractionEvent]:
    """One status event per message id, or one for the watermark when there are no ids.

    Meta's ``delivery`` usually names the delivered ``mids``; ``read`` never does, it only
    says "everything sent to this person before ``watermark`` (ms) has been read". Mapping that
    to our messages needs the list of what we sent, which this stateless adapter does not
    have; dropping it would lose the fact. So it is recorded as a status whose message_ref is
    ``watermark:<ms>``: a reader that knows the conversation (a projection) can apply it to
    every message sent to this party before that time. A plain status view will simply find
    no message with that ref.
    """
    mids = [mid for mid in optional(receipt, "mids", list, path) or [] if isinstance(mid, str)]
    if mids:
        return [
            DeliveryStatusChanged(
                **common, status=status, message_ref=mid, provider_ref=f"{mid}:{status}"
            )
            for mid in mids
        ]
    watermark = required(receipt, "watermark", int, path)
    return [
        DeliveryStatusChanged(
            **common,
            status=status,
            message_ref=f"{WATERMARK_PREFIX}{watermark}",
            # Watermarks are per conversation, so the PSID makes the report's id unique.
            provider_ref=f"{common['party']}:{status}:{WATERMARK_PREFIX}{watermark}",
        )
    ]
