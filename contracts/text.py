"""Constrained string and time types shared by the contracts."""

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

__all__ = ["EARLIEST", "LATEST", "HeaderText", "Label", "Ref", "Text", "Url", "UtcDatetime"]

# C0, DEL and C1: invisible in logs and UIs, and a way to smuggle line breaks into headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"[\r\n]")
# NUL has no meaning in text and PostgreSQL's text and jsonb cannot hold it; a lone surrogate
# cannot be encoded as UTF-8 at all (Python code can make one, e.g. with surrogateescape).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"

# A contact happens in the lifetime of a phone system, not at the edge of datetime's range,
# where converting an offset to UTC (or adding a day) overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _reject_control(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise PydanticCustomError(
            "control_characters",
            "must not contain control characters (found {found})",
            {"found": repr(found.group())},
        )
    return value


def _reject_line_breaks(value: str) -> str:
    if _LINE_BREAK.search(value):
        raise PydanticCustomError(
            "line_break", "must not contain CR or LF: it becomes a mail header line"
        )
    return value


def _aware_to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "timezone_aware",
            "must carry a UTC offset such as 'Z' or '+02:00': a naive time is ambiguous",
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise PydanticCustomError(
            "datetime_range",
            "must lie between {earliest} and {latest} (UTC)",
            {"earliest": EARLIEST.isoformat(), "latest": LATEST.isoformat()},
        )
    return utc


def _storable(value: str) -> str:
    # Replace rather than refuse: a customer's message must not be bounced over one
    # invisible character, and U+FFFD shows where something was.
    return _UNSTORABLE.sub(REPLACEMENT, value) if _UNSTORABLE.search(value) else value


Ref = Annotated[
    str, StringConstraints(min_length=1, max_length=512), AfterValidator(_reject_control)
]
"""A provider's identifier: CallSid, MessageSid, Message-ID, ``uidvalidity:uid``, wamid."""

Label = Annotated[
    str, StringConstraints(min_length=1, max_length=320), AfterValidator(_reject_control)
]
"""A short single-line name: an agent, a mailbox, a file name, a consent source."""

Url = Annotated[
    str,
    StringConstraints(max_length=2048, pattern=r"^https?://\S+$"),
    AfterValidator(_reject_control),
]
"""An absolute http(s) URL, such as where a provider keeps a recording."""

HeaderText = Annotated[
    str,
    StringConstraints(max_length=998),
    AfterValidator(_reject_line_breaks),
    AfterValidator(_storable),
]
"""Text that ends up in a mail header (RFC 5322 caps a line at 998 characters)."""

Text = Annotated[str, AfterValidator(_storable)]
"""Free text (a message body, a transcript): any Unicode; NUL and lone surrogates become U+FFFD."""

UtcDatetime = Annotated[datetime, AfterValidator(_aware_to_utc)]
"""An aware datetime converted to UTC, between 1900 and 2200; naive values are rejected because
their zone is a guess."""
