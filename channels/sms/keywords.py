"""SMS keywords: a body that is only STOP, START or HELP changes consent or asks for help.

Matching is case- and whitespace-insensitive ("  stop\\n" is STOP) but exact otherwise:
"Stop sending me the invoice twice" is an ordinary message, as carriers treat it.

- Opt-out (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) means no messages at all on this
  channel: consent is withdrawn for both purposes, service and marketing.
- Opt-in (START, UNSTOP) undoes an opt-out for service messages only. Marketing needs an
  explicit opt-in of its own (a web form, an agent), so START does not grant it.
- HELP is answered with the configured help text; consent does not change.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from contracts import Channel, ConsentChanged

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "UNSTOP"})
HELP = frozenset({"HELP"})


class Keyword(StrEnum):
    opt_out = "opt-out"
    opt_in = "opt-in"
    help = "help"


def keyword_in(body: str) -> tuple[Keyword, str] | None:
    """The keyword a message body is, with the word as the customer meant it, or None."""
    word = " ".join(body.split()).upper()
    if word in OPT_OUT:
        return Keyword.opt_out, word
    if word in OPT_IN:
        return Keyword.opt_in, word
    if word in HELP:
        return Keyword.help, word
    return None


def consent_changes(
    keyword: Keyword,
    word: str,
    *,
    channel: Channel,
    party: str,
    message_sid: str,
    endpoint: str | None,
    occurred_at: datetime,
) -> list[ConsentChanged]:
    """The consent events a keyword message means (none for HELP)."""
    if keyword is Keyword.opt_out:
        granted, purposes = False, ("service", "marketing")
    elif keyword is Keyword.opt_in:
        granted, purposes = True, ("service",)
    else:
        return []
    return [
        ConsentChanged(
            channel=channel,
            direction="inbound",
            party=party,
            endpoint=endpoint,
            provider_ref=f"{message_sid}:consent:{purpose}",
            occurred_at=occurred_at,
            purpose=purpose,
            granted=granted,
            source="sms-keyword",
            keyword=word,
        )
        for purpose in purposes
    ]
