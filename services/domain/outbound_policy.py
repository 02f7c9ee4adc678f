"""May we send this message to this customer?  Pure decision code."""

from __future__ import annotations


def consent_refusal(*, channel: str, purpose: str, consent: dict[str, bool]) -> str | None:
    """The reason not to send, or None.

    An opt-out on a channel (STOP) stops every message there, service ones too; marketing
    needs an explicit opt-in on that channel.
    """
    if consent.get(f"{channel}:service") is False:
        return f"the customer opted out of messages on {channel}"
    if purpose == "marketing":
        granted = consent.get(f"{channel}:marketing")
        if granted is False:
            return f"the customer opted out of marketing on {channel}"
        if granted is None:
            return f"no marketing opt-in on {channel}"
    return None
