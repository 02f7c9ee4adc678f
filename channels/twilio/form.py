"""The verified parameters of one Twilio webhook request, read field by field.

Every accessor answers 400 naming the missing or invalid field, so a route reads what it
needs and never formats an error itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

from starlette.datastructures import FormData, QueryParams

from channels.webhooks import bad_request
from contracts import AddressError, Channel, call_party, normalize_party
from contracts.addresses import is_withheld_caller
from contracts.errors import SwitchboardError

__all__ = ["TwilioForm", "WithheldAddress"]


class WithheldAddress(SwitchboardError):
    """The customer's address is withheld: the contact cannot be filed under anyone."""


@dataclass(frozen=True)
class TwilioForm:
    """The verified parameters of one Twilio webhook request.

    ``query`` holds the query string's parameters: the signature covers them as well, so a
    callback URL we handed to Twilio can carry values back (see ``channels.voice.twiml``).
    """

    params: FormData
    idempotency_token: str | None = None
    query: QueryParams = field(default_factory=QueryParams)

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if value is None or not str(value).strip():
            raise bad_request(f"{name} is missing: Twilio always sends it on this webhook")
        return str(value).strip()

    def optional(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None or not str(value).strip():
            return None
        return str(value).strip()

    def number(self, name: str, *, required: bool = False) -> float | None:
        raw = self.required(name) if required else self.optional(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise bad_request(f"{name} must be a number of seconds, not {raw!r}") from None
        if not value >= 0 or value == float("inf"):
            raise bad_request(f"{name} must be zero or more seconds, not {raw!r}")
        return value

    def integer(self, name: str) -> int | None:
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise bad_request(f"{name} must be an integer, not {raw!r}") from None

    def timestamp(self, name: str) -> datetime | None:
        """Twilio's ``Timestamp`` is RFC 2822 (``Mon, 16 Aug 2010 03:45:01 +0000``)."""
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            moment = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            moment = None
        if moment is None or moment.tzinfo is None:
            raise bad_request(
                f"{name} must be an RFC 2822 date with an offset such as "
                f"'Mon, 16 Aug 2010 03:45:01 +0000', not {raw!r}"
            )
        return moment

    def address(
        self,
        name: str,
        channel: Channel,
        *,
        default_region: str | None = None,
        call_field: str = "CallSid",
    ) -> str:
        """The field as a normalized party address; 400 if it is not one.

        On a call (``Channel.voice``) the caller id follows ``contracts.call_party``: withheld
        or unreadable, the call is filed under itself, ``anonymous:<call id>``, the call id
        being ``call_field`` (400 naming it if it cannot make a party). Elsewhere a withheld
        id (``contracts.addresses.is_withheld_caller``) is not malformed, the sender chose to
        hide it: it raises WithheldAddress.
        """
        raw = self.required(name)
        if channel is Channel.voice:
            call_id = self.required(call_field)
            try:
                return call_party(raw, call_id, default_region)
            except AddressError as exc:
                raise bad_request(f"{call_field}: {exc}") from None
        if is_withheld_caller(raw):
            raise WithheldAddress(f"{name} is withheld ({raw!r})")
        try:
            return normalize_party(channel, raw, default_region)
        except AddressError as exc:
            raise bad_request(f"{name}: {exc}") from None
