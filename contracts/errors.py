"""Switchboard's exceptions: one small tree with one base to catch (as httpx's ``_exceptions``).

::

    SwitchboardError
    ├── InputError            something from outside we cannot accept; ``reason`` says what
    │   ├── InvalidInteraction, InvalidCommand      (contracts: a Kafka payload)
    │   ├── AddressError                            (contracts: an address)
    │   ├── MalformedPayload                        (channels.social: a webhook body)
    │   └── MailRejected and its kinds              (channels.email: an inbound mail)
    ├── ConfigError           a setting is missing or wrong; the message names it
    ├── NotFound              what was asked for does not exist (CustomerNotFound, UnknownUser,
    │                         BlobNotFound ...)
    ├── Conflict              what was asked contradicts what exists (UserExists)
    ├── DeliveryError         a provider did not take an outbound message (OutboundError ...)
    └── Unavailable           a server we depend on does not answer: try again later
        ├── PublishFailed, ConnectionLost           (channels.email)
        └── KafkaLaunchError                        (deploy: the local broker)

Each boundary translates them once: a consumer dead-letters an ``InputError``; the HTTP API
answers 400/404/409 for ``InputError``/``NotFound``/``Conflict`` and 503 for ``Unavailable``;
the command line prints one line for any ``SwitchboardError``.  The stdlib bases some of them
had (``ValueError``, ``OSError``) stay, so existing ``except`` clauses keep working.

This module imports nothing, so every layer may raise these.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "DeliveryError",
    "InputError",
    "NotFound",
    "SwitchboardError",
    "Unavailable",
]


class SwitchboardError(Exception):
    """Base of every error the hub raises on purpose."""


class InputError(SwitchboardError, ValueError):
    """Input from outside (a record, a request, a mail) that cannot be accepted as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(SwitchboardError, ValueError):
    """A setting is missing or wrong; the message names the setting and what to do."""


class NotFound(SwitchboardError, LookupError):
    """What was asked for does not exist."""


class Conflict(SwitchboardError):
    """What was asked contradicts what exists (a user name that is taken, say)."""


class DeliveryError(SwitchboardError):
    """An outbound message was not taken by its provider."""


class Unavailable(SwitchboardError):
    """A server we depend on (Kafka, the store, a mail server) does not answer; try again."""
