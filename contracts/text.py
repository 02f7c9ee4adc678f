"""Constrained string and time types shared by the contracts."""

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

__all__ = ["HeaderText", "Label", "Ref", "Url", "UtcDatetime"]

# C0, DEL and C1: invisible in logs and UIs, and a way to smuggle line breaks into headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"[\r\n]")


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
    return value.astimezone(UTC)


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

HeaderText = Annotated[str, StringConstraints(max_length=998), AfterValidator(_reject_line_breaks)]
"""Text that ends up in a mail header (RFC 5322 caps a line at 998 characters)."""

UtcDatetime = Annotated[datetime, AfterValidator(_aware_to_utc)]
"""An aware datetime converted to UTC; naive values are rejected because their zone is a guess."""
