"""Customer addresses, normalized once at the edge so that one person has one key everywhere.

Phone numbers become E.164, e-mail addresses lower case with an IDNA (ASCII) domain, and the social
channels a prefixed id: ``whatsapp:+4915112345678``, ``telegram:-1001234567890``,
``messenger:6543210987654321``. Every normalizer is idempotent: its output is accepted as input
and comes back unchanged, so a consumer may re-validate an event that a producer already built.
"""

import re
from collections.abc import Callable
from email.utils import getaddresses
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from contracts.enums import Channel
from contracts.errors import InputError

__all__ = [
    "AddressError",
    "call_party",
    "identity_of",
    "is_withheld_caller",
    "is_withheld_party",
    "normalize_email",
    "normalize_party",
    "normalize_phone",
    "parse_any_address",
    "withheld_caller",
]

# The consumer validates every record and phonenumbers.parse costs tens of microseconds; the set
# of distinct customers seen in a busy hour fits comfortably (roughly 20 MB at the limit).
_CACHE_SIZE = 100_000
_MAX_RAW_LENGTH = 320

# Caller-id values that carriers and Twilio send when the number is withheld. Twilio also
# uses "+266696687" (a number in Lesotho that is never assigned) for anonymous callers.
_WITHHELD = frozenset(
    {"anonymous", "restricted", "private", "unknown", "unavailable", "blocked", "+266696687"}
)
_PARSE_FAILURES = {
    NumberParseException.INVALID_COUNTRY_CODE: (
        "it has no valid country code (write it as +<country code>... or pass default_region)"
    ),
    NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
    NumberParseException.TOO_SHORT_NSN: "it is too short",
    NumberParseException.TOO_LONG: "it is too long",
}
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TELEGRAM_CHAT_ID = re.compile(r"-?[0-9]{1,20}")
_MESSENGER_PSID = re.compile(r"[0-9]{1,32}")
_WITHHELD_PREFIX = "anonymous:"
_WITHHELD_CALLER = re.compile(r"anonymous:[A-Za-z0-9._-]{1,64}")


class AddressError(InputError):
    """An address that cannot be normalized; the message names the input and the reason."""


def _shown(raw: str) -> str:
    """The input as quoted in an error message, cut short so a huge value cannot flood a log."""
    return repr(raw) if len(raw) <= 80 else repr(raw[:77] + "...")


def _strip_prefix(raw: str, prefix: str) -> str:
    text = raw.strip()
    if text[: len(prefix)].lower() == prefix:
        text = text[len(prefix) :].strip()
    return text


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """Return ``raw`` as an E.164 number such as ``+14155552671``.

    ``default_region`` (ISO 3166 alpha-2, e.g. ``"US"``) is used only when the number has no
    leading ``+`` or international prefix. Raises AddressError for withheld caller ids
    (``anonymous``), Twilio client or SIP identities, and anything phonenumbers rejects.
    """
    # Positional call: lru_cache keys keyword and positional calls differently.
    return _cached_e164(raw, default_region.upper() if default_region else None)


@lru_cache(maxsize=_CACHE_SIZE)
def _cached_e164(raw: str, default_region: str | None) -> str:
    text = _strip_prefix(raw, "tel:")
    lowered = text.lower()
    if not text:
        raise AddressError(f"{_shown(raw)} is not a phone number: it is empty")
    if is_withheld_caller(text):
        raise AddressError(f"{_shown(raw)} is not a phone number: the caller id is withheld")
    if lowered.startswith(("client:", "sip:", "sips:")):
        raise AddressError(f"{_shown(raw)} is not a phone number: it is a client or SIP identity")
    if len(text) > _MAX_RAW_LENGTH:
        raise AddressError(f"{_shown(raw)} is not a phone number: it is too long")
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        why = _PARSE_FAILURES.get(exc.error_type, str(exc))
        raise AddressError(f"{_shown(raw)} is not a phone number: {why}") from None
    if not phonenumbers.is_valid_number(number):
        raise AddressError(
            f"{_shown(raw)} is not a valid phone number: no assigned number range "
            f"matches it under country code +{number.country_code}"
        )
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Return the addr-spec of ``raw`` in lower case with an IDNA-encoded domain.

    Accepts a bare address or a display form (``"Ann <Ann@Bücher.DE>"`` gives
    ``"ann@xn--bcher-kva.de"``). Raises AddressError when there is not exactly one valid address.
    """
    return _cached_email(raw)


@lru_cache(maxsize=_CACHE_SIZE)
def _cached_email(raw: str) -> str:
    def reject(why: str) -> AddressError:
        return AddressError(f"{_shown(raw)} is not an e-mail address: {why}")

    if len(raw) > _MAX_RAW_LENGTH * 2:
        raise reject("it is too long")
    if "\r" in raw or "\n" in raw:
        raise reject("it contains a line break")
    # getaddresses, not parseaddr alone: Python 3.11's parseaddr silently keeps only the first of
    # "a@x.de, b@y.de", which would file the contact under the wrong person.
    pairs = getaddresses([raw])
    if len(pairs) != 1:
        raise reject("it holds more than one address")
    addr = pairs[0][1]
    # The parser quietly repairs some malformed input ("ann@exa mple.com" becomes
    # "ann@example.com"); a repaired address is a guess, so it must appear verbatim.
    if addr not in raw:
        raise reject("it is not a well-formed address")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise reject("there is no local-part@domain in it")
    if _CONTROL_OR_SPACE.search(addr):
        raise reject("it contains spaces or control characters")
    if len(local) > 64:
        raise reject("the local part is longer than 64 characters")
    try:
        # The stdlib codec implements IDNA 2003, enough for the mail domains customers write.
        ascii_domain = domain.rstrip(".").lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise reject(f"the domain {domain!r} is not a valid host name") from None
    if not all(_DNS_LABEL.fullmatch(label) for label in ascii_domain.split(".")):
        raise reject(f"the domain {domain!r} is not a valid host name")
    normalized = f"{local.lower()}@{ascii_domain}"
    if len(normalized) > 254:
        raise reject("it is longer than 254 characters")
    return normalized


def _normalize_whatsapp(raw: str, default_region: str | None) -> str:
    number = _strip_prefix(raw, "whatsapp:")
    # Meta's wa_id is the international number without "+"; a bare national number never
    # appears on this channel, so digits alone are always read as international.
    if number.isascii() and number.isdigit():
        number = f"+{number}"
    return f"whatsapp:{normalize_phone(number, default_region)}"


def _normalize_telegram(raw: str, default_region: str | None) -> str:
    chat_id = _strip_prefix(raw, "telegram:")
    if not _TELEGRAM_CHAT_ID.fullmatch(chat_id):
        raise AddressError(
            f"{_shown(raw)} is not a Telegram chat id: expected an integer such as "
            "123456789 or -1001234567890"
        )
    return f"telegram:{int(chat_id)}"


def _normalize_messenger(raw: str, default_region: str | None) -> str:
    psid = _strip_prefix(raw, "messenger:")
    if not _MESSENGER_PSID.fullmatch(psid):
        raise AddressError(f"{_shown(raw)} is not a Messenger page-scoped id: expected digits only")
    return f"messenger:{psid}"


def is_withheld_caller(caller_id: str) -> bool:
    """Whether a caller id says that the number is withheld, rather than being a number.

    The one place that decides it: the phone normalizer refuses such an id, and the call
    adapters file the call under ``withheld_caller`` instead.
    """
    return caller_id.strip().lower() in _WITHHELD


def withheld_caller(call_id: str) -> str:
    """The party of a call whose caller id is withheld: ``anonymous:<call id>``.

    A withheld call is still a contact that must be recorded; filed under its own call it
    becomes a customer of one call, which an agent can later merge with a known one.
    """
    party = f"{_WITHHELD_PREFIX}{call_id}"
    if not _WITHHELD_CALLER.fullmatch(party):
        raise AddressError(f"{call_id!r} is not a call id (letters, digits, . _ -; at most 64)")
    return party


def is_withheld_party(party: str) -> bool:
    """Whether a normalized party is a call's own ``anonymous:<call id>`` (see
    ``withheld_caller``) rather than somebody's address: there is nobody to look up."""
    return party.startswith(_WITHHELD_PREFIX)


def call_party(raw: str, call_id: str, default_region: str | None = None) -> str:
    """The customer's party on a call, from the caller id as the phone system sent it.

    The one rule every call adapter (Twilio, CTI) follows: a readable number is the party
    (E.164); a withheld or unreadable caller id (``anonymous``, a SIP URI, garbage) files the
    call under itself (``withheld_caller``): the call is a contact either way and nothing is
    lost.  Raises AddressError only when ``call_id`` cannot make a party; the adapter names
    its call-id field in the 400.  ``is_withheld_caller(raw)`` tells withheld from unreadable.
    """
    try:
        return normalize_party(Channel.voice, raw, default_region)
    except AddressError:
        return withheld_caller(call_id)


def _normalize_voice(raw: str, default_region: str | None) -> str:
    if is_withheld_party(raw):
        if not _WITHHELD_CALLER.fullmatch(raw):
            raise AddressError(f"{raw[:80]!r} is not anonymous:<call id>")
        return raw
    return normalize_phone(raw, default_region)


_NORMALIZERS: dict[Channel, Callable[[str, str | None], str]] = {
    Channel.voice: _normalize_voice,
    Channel.sms: normalize_phone,
    Channel.email: lambda raw, _region: normalize_email(raw),
    Channel.whatsapp: _normalize_whatsapp,
    Channel.telegram: _normalize_telegram,
    Channel.messenger: _normalize_messenger,
}


def normalize_party(channel: Channel | str, raw: str, default_region: str | None = None) -> str:
    """Return the customer's address on ``channel`` in its one canonical form.

    voice, sms: E.164. email: see normalize_email. whatsapp: ``whatsapp:+<E.164>`` (from
    ``whatsapp:+49...``, ``+49...`` or a wa_id ``49...``). telegram: ``telegram:<chat id>``.
    messenger: ``messenger:<psid>``. Already-normalized input comes back unchanged.
    """
    try:
        # Channel(x) of a Channel costs ~2 µs (EnumType.__call__): skipped, every record parsed
        # comes here with one.
        kind = channel if type(channel) is Channel else Channel(channel)
    except ValueError:
        known = ", ".join(Channel)
        raise AddressError(f"unknown channel {channel!r}; expected one of {known}") from None
    return _NORMALIZERS[kind](raw, default_region)


_PREFIXED = {
    "whatsapp:": Channel.whatsapp,
    "telegram:": Channel.telegram,
    "messenger:": Channel.messenger,
}


def parse_any_address(raw: str, *, default_region: str | None = None) -> str:
    """Whatever a person typed (a phone number, an e-mail, a social id) in our address form:
    what an agent searches for, or an operator passes to the command line."""
    text = raw.strip()
    for prefix, channel in _PREFIXED.items():
        if text.lower().startswith(prefix):
            return normalize_party(channel, text)
    if "@" in text:
        return normalize_party(Channel.email, text)
    return normalize_party(Channel.voice, text, default_region=default_region)


def identity_of(address: str) -> str:
    """The person an address reaches, as one key: a phone number is one identity across
    voice, SMS and WhatsApp (``whatsapp:+4930…`` and ``+4930…`` give ``+4930…``); every
    other address is its own key.  ``address`` is already normalized."""
    if address.startswith("whatsapp:+"):
        return address[9:]
    return address
