"""Recorded interactions as the desk sees them (``services.domain.desk.Contact``)."""

from __future__ import annotations

from services.domain.customer import Customer
from services.domain.desk import Contact


def contact_of(notification_id: int, recorded: Customer.InteractionRecorded) -> Contact:
    """The stored event as a ``Contact``: its dedupe key, and the keys that thread it."""
    payload = recorded.payload
    keys: list[str] = []
    if payload.get("in_reply_to"):
        keys.append(str(payload["in_reply_to"]))
    keys.extend(str(ref) for ref in payload.get("references") or ())
    thread_ref = payload.get("thread_ref")
    if thread_ref and thread_ref != recorded.provider_ref:
        keys.append(str(thread_ref))
    call_id = payload.get("call_id")
    return Contact(
        key=f"{recorded.interaction_type}|{recorded.channel}|{recorded.provider_ref}",
        notification_id=notification_id,
        interaction_type=recorded.interaction_type,
        channel=recorded.channel,
        direction=recorded.direction,
        party=recorded.party,
        provider_ref=recorded.provider_ref,
        occurred_at=recorded.occurred_at,
        thread_keys=tuple(dict.fromkeys(keys)),
        call_id=str(call_id) if call_id else None,
        automatic=bool(payload.get("auto_reply", False)),
    )
