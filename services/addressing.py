"""Turn whatever a person typed (a phone number, an e-mail, a social id) into our address form."""

from __future__ import annotations

from contracts import Channel, normalize_party

_PREFIXED = {
    "whatsapp:": Channel.whatsapp,
    "telegram:": Channel.telegram,
    "messenger:": Channel.messenger,
}


def parse_any_address(raw: str, *, default_region: str | None = None) -> str:
    text = raw.strip()
    for prefix, channel in _PREFIXED.items():
        if text.lower().startswith(prefix):
            return normalize_party(channel, text)
    if "@" in text:
        return normalize_party(Channel.email, text)
    return normalize_party(Channel.voice, text, default_region=default_region)
