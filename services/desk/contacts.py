"""Recorded interactions as the desk sees them (``services.domain.desk.Contact``)."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.conversation_rules import ROUTER
from services.domain.customer import Customer
from services.domain.desk import Contact

HANDED_OVER = "handed-over"  # the rule of a routing decision made by a person at the desk


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


@dataclass(frozen=True)
class RoutedMessage:
    contact_key: str  # the routed contact's dedupe key, as ``contact_of`` gives it
    agent: str
    reason: str
    by: str = ROUTER


def routed_to_agent(recorded: Customer.InteractionRecorded) -> RoutedMessage | None:
    """A recorded decision that gives a message to an agent: the router's (not an offer, which
    waits for its answer), or an agent accepting an offer.  Calls are answered, not assigned;
    a hand-over made at the desk is in the desk already."""
    kind = recorded.interaction_type
    if kind not in ("contact.routed.v1", "offer.answered.v1") or recorded.channel == "voice":
        return None
    payload = recorded.payload
    key = f"message.received.v1|{recorded.channel}|{payload['contact_ref']}"
    if kind == "offer.answered.v1":
        if not payload.get("accepted"):
            return None
        agent = str(payload["agent"])
        return RoutedMessage(key, agent, reason=f"{agent} accepted the offer", by=agent)
    target = payload.get("target") or {}
    if target.get("kind") != "agent" or not target.get("agent"):
        return None
    if payload.get("rule") == HANDED_OVER:
        return None  # made at the desk, where it is saved already
    if payload.get("offer_expires_at"):
        return None  # offered: the agent's answer assigns it
    return RoutedMessage(key, str(target["agent"]), reason=str(payload.get("reason") or ""))
