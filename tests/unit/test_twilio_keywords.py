"""SMS keywords: STOP and friends withdraw all consent, START restores service, HELP helps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.sms.keywords import Keyword, consent_changes, keyword_in
from contracts import Channel

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ("STOP", "STOP"),
        ("stop", "STOP"),
        ("  Stop \n", "STOP"),
        ("\tsToP", "STOP"),
        ("STOPALL", "STOPALL"),
        ("unsubscribe", "UNSUBSCRIBE"),
        ("Cancel", "CANCEL"),
        ("end", "END"),
        ("QUIT ", "QUIT"),
    ],
)
def test_opt_out_keywords_in_any_case_and_spacing(body: str, word: str) -> None:
    assert keyword_in(body) == (Keyword.opt_out, word)


@pytest.mark.parametrize("body", ["START", " start", "Unstop\r\n"])
def test_opt_in_keywords(body: str) -> None:
    assert keyword_in(body)[0] is Keyword.opt_in  # type: ignore[index]


def test_help_keyword() -> None:
    assert keyword_in(" help ") == (Keyword.help, "HELP")


@pytest.mark.parametrize(
    "body",
    ["", "Stop sending me the invoice twice", "please stop", "STOP.", "S TOP", "ending", "helpful"],
)
def test_a_sentence_containing_a_keyword_is_an_ordinary_message(body: str) -> None:
    assert keyword_in(body) is None


def _changes(keyword: Keyword, word: str):
    return consent_changes(
        keyword,
        word,
        channel=Channel.sms,
        party="+14155552671",
        message_sid="SM1",
        endpoint="+18005550100",
        occurred_at=NOW,
    )


def test_opt_out_withdraws_service_and_marketing_with_distinct_refs() -> None:
    changes = _changes(Keyword.opt_out, "QUIT")
    assert [(c.purpose, c.granted) for c in changes] == [("service", False), ("marketing", False)]
    assert [c.provider_ref for c in changes] == ["SM1:consent:service", "SM1:consent:marketing"]
    assert {(c.source, c.keyword, c.party, str(c.channel)) for c in changes} == {
        ("sms-keyword", "QUIT", "+14155552671", "sms")
    }


def test_opt_in_restores_service_only() -> None:
    changes = _changes(Keyword.opt_in, "START")
    assert [(c.purpose, c.granted) for c in changes] == [("service", True)]


def test_help_changes_no_consent() -> None:
    assert _changes(Keyword.help, "HELP") == []
