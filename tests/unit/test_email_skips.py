"""A mail read on purpose as no event (a delay notice) is counted and logged with why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from channels.email import ImapIngester, ImapMailbox, LocalBlobStore, SQLiteCheckpointStore
from tests.mail_fixtures import make_bounce, make_mail


class NoSink:
    def deliver(self, events, dead_letters) -> None:  # pragma: no cover - not reached here
        raise AssertionError("reading one mail publishes nothing")


@pytest.fixture
def ingester(tmp_path: Path):
    mailbox = ImapMailbox(
        name="support",
        host="127.0.0.1",
        user="support@support.example.org",
        tls="none",
        password="never-used",
    )
    reading = ImapIngester(
        mailbox,
        sink=NoSink(),
        checkpoints=SQLiteCheckpointStore(tmp_path / "checkpoints.db"),
        blobs=LocalBlobStore(tmp_path / "blobs"),
    )
    yield reading
    reading.close()


def test_a_delay_notice_is_counted_and_logged_with_why_it_records_nothing(
    ingester: ImapIngester, caplog: pytest.LogCaptureFixture
) -> None:
    delayed = make_bounce("<cmd-1@support.example.org>", "bob@example.com", action="delayed")
    with caplog.at_level(logging.INFO, logger="channels.email.imap"):
        outcome = ingester._read(17, 7, delayed, None)

    assert outcome.event is None and outcome.dead_letter is None
    assert ingester.stats.skipped == 1
    (logged,) = [r for r in caplog.records if "UID 17" in r.getMessage()]
    assert logged.levelno == logging.INFO
    assert logged.getMessage() == (
        "mailbox support: UID 17 skipped, no event: delivery delayed notice"
    )
    assert "bob@example.com" not in logged.getMessage()  # the reason, not the mail's parties


def test_a_recorded_mail_logs_no_skip(
    ingester: ImapIngester, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="channels.email.imap"):
        outcome = ingester._read(18, 7, make_mail(), None)
    assert outcome.event is not None and ingester.stats.skipped == 0
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
