"""Twilio call status callbacks -> call events.

Which leg is the customer's:
- A leg *to* an agent (``To`` is ``client:<identity>`` or a SIP address, as with our
  ``<Dial><Client>``) reports only that the agent picked up: ``in-progress`` becomes
  CallAnswered(agent=identity) on the parent call. Its other statuses (the agent did not
  answer, the agent leg ended) are not the customer's outcome and are not recorded; the
  customer's own leg reports the end of the call.
- Any other leg is the customer's: for ``Direction=inbound`` the customer is ``From``,
  otherwise (``outbound-api``, ``outbound-dial``, or ``From`` is an agent's client) ``To``.
  in-progress -> CallAnswered, completed -> CallEnded(duration_s=CallDuration),
  busy / no-answer / canceled / failed -> CallMissed(reason).

``provider_ref`` is ``<CallSid>:<CallStatus>``: a call reaches each status once, so a retried
callback is one event and different statuses stay distinct, even where Twilio sends no
``SequenceNumber``. ``SequenceNumber`` orders the events instead: Twilio's ``Timestamp`` has
one-second resolution, and adding the sequence number in microseconds keeps two callbacks of
the same second in the order Twilio fired them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channels.twilio import TwilioForm
from channels.webhooks import bad_request
from contracts import CallAnswered, CallEnded, CallMissed, Channel, Direction
from contracts.calls import CallEvent

# Statuses before anyone answered; the ringing event comes from the incoming-call webhook.
_NOT_RECORDED = frozenset({"queued", "initiated", "ringing"})
_MISSED = {"busy": "busy", "no-answer": "no-answer", "canceled": "canceled", "failed": "failed"}
_ANSWERED = frozenset({"in-progress", "answered"})
_KNOWN = _NOT_RECORDED | _ANSWERED | {"completed"} | set(_MISSED)
_AGENT_PREFIXES = ("client:", "sip:", "sips:")


def agent_identity(address: str | None) -> str | None:
    """``client:agent_42`` -> ``agent_42``; None for a phone number."""
    if address is None or not address.lower().startswith(_AGENT_PREFIXES):
        return None
    prefix, _, identity = address.partition(":")
    return identity or prefix


def occurred_at(form: TwilioForm) -> datetime:
    moment = form.timestamp("Timestamp") or datetime.now(UTC)
    sequence = form.integer("SequenceNumber")
    if sequence is not None and 0 <= sequence < 1_000_000:
        moment += timedelta(microseconds=sequence)
    return moment


def call_event_from_status(form: TwilioForm, *, default_region: str | None) -> CallEvent | None:
    """The event one status callback reports, or None when it reports nothing we record.

    Raises HTTPException 400 naming the field for malformed callbacks; the call of a withheld
    or unreadable caller id is filed under ``anonymous:<CallSid>`` (``contracts.call_party``).
    """
    call_sid = form.required("CallSid")
    status = form.required("CallStatus").lower()
    if status not in _KNOWN:
        raise bad_request(f"CallStatus {status!r} is unknown; expected one of {sorted(_KNOWN)}")
    if status in _NOT_RECORDED:
        return None
    to_agent = agent_identity(form.optional("To"))
    from_agent = agent_identity(form.optional("From"))
    if to_agent is not None and from_agent is not None:
        return None  # an internal call between two agents: no customer on it
    common = {
        "provider_ref": f"{call_sid}:{status}",
        "occurred_at": occurred_at(form),
        "endpoint": None,
    }
    if to_agent is not None:
        if status not in _ANSWERED:
            return None
        # The agent's leg of a customer's call: the customer's call is the parent.
        call_field = "ParentCallSid" if form.optional("ParentCallSid") else "CallSid"
        party = form.address(
            "From", Channel.voice, default_region=default_region, call_field=call_field
        )
        return CallAnswered(
            direction=Direction.inbound,
            party=party,
            call_id=form.required(call_field),
            agent=to_agent,
            **common,
        )
    inbound = from_agent is None and form.optional("Direction") in (None, "inbound")
    customer_field, our_field = ("From", "To") if inbound else ("To", "From")
    party = form.address(customer_field, Channel.voice, default_region=default_region)
    common["endpoint"] = None if from_agent else form.optional(our_field)
    direction = Direction.inbound if inbound else Direction.outbound
    if status in _ANSWERED:
        return CallAnswered(
            direction=direction, party=party, call_id=call_sid, agent=from_agent, **common
        )
    if status == "completed":
        duration = form.number("CallDuration", required=True)
        return CallEnded(
            direction=direction,
            party=party,
            call_id=call_sid,
            duration_s=duration,
            agent=from_agent,
            **common,
        )
    return CallMissed(
        direction=direction, party=party, call_id=call_sid, reason=_MISSED[status], **common
    )
