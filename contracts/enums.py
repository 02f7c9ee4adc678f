"""The small vocabularies every contract shares.

They live apart from the envelope so that ``addresses`` can use ``Channel`` without an import cycle.
"""

from enum import StrEnum


class Channel(StrEnum):
    """The medium a contact arrived on or left by."""

    voice = "voice"
    email = "email"
    sms = "sms"
    whatsapp = "whatsapp"
    messenger = "messenger"
    telegram = "telegram"


class Direction(StrEnum):
    """Seen from the contact center: inbound came from the customer."""

    inbound = "inbound"
    outbound = "outbound"
