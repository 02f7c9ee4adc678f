"""Raw mail -> event: what a customer's mail, a reply, a bounce and hostile input become."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime

import pytest

from channels.email.errors import MailRejected, MailTooLarge, UnattributableBounce
from channels.email.parsing import MailSource, ParsedMail, parse_mail
from contracts import (
    DeliveryStatus,
    DeliveryStatusChanged,
    MessageReceived,
    dump_interaction,
    parse_interaction,
)
from tests.mail_fixtures import make_bounce, make_mail
from tests.mail_samples import Sample, hostile_samples

SOURCE = MailSource(
    "support", "support@support.example.org", 7, 42, datetime(2026, 11, 24, 9, tzinfo=UTC)
)
_LINE_BREAK_OR_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def received(raw: bytes) -> MessageReceived:
    parsed = parse_mail(raw, SOURCE)
    assert isinstance(parsed.event, MessageReceived)
    return parsed.event


def test_a_customer_mail_becomes_message_received_filed_under_the_sender() -> None:
    event = received(
        make_mail(
            sender="=?utf-8?q?J=C3=B6rg?= <Joerg@Example.COM>",
            subject="Rechnung für März",
            message_id="<m1@mail.example.com>",
        )
    )
    assert event.party == "joerg@example.com"
    assert event.endpoint == "support@support.example.org"
    assert event.provider_ref == "<m1@mail.example.com>"
    assert event.subject == "Rechnung für März"
    assert event.occurred_at == SOURCE.received_at  # the server's INTERNALDATE
    assert event.thread_ref == "<m1@mail.example.com>"  # a new conversation is its own root
    assert event.auto_reply is False


def test_the_summary_drops_quote_and_signature_and_the_full_text_is_kept() -> None:
    body = (
        "Danke, das hat geholfen.\n\nMit freundlichen Grüßen\nJörg\n\n"
        "Am 23.11.2026 um 10:00 schrieb Support <s@support.example.org>:\n"
        "> Bitte neu starten.\n"
    )
    event = received(make_mail(body=body))
    assert event.body == "Danke, das hat geholfen."
    assert event.full_body is not None and "> Bitte neu starten." in event.full_body


def test_a_reply_is_threaded_on_the_root_of_its_references() -> None:
    event = received(
        make_mail(in_reply_to="<b@x.org>", references=["<root@x.org>", "<a@x.org>", "<b@x.org>"])
    )
    assert event.thread_ref == "<root@x.org>"
    assert event.in_reply_to == "<b@x.org>"
    assert event.references == ["<root@x.org>", "<a@x.org>", "<b@x.org>"]
    only_parent = received(make_mail(in_reply_to="<b@x.org>"))
    assert only_parent.thread_ref == "<b@x.org>"


def test_html_only_mail_is_read_as_text() -> None:
    event = received(
        make_mail(body="", html="<p>Hello <b>there</b></p><script>evil()</script><p>Bye</p>")
    )
    assert event.body == "Hello there\n\nBye"


@pytest.mark.parametrize(
    ("headers", "subject"),
    [
        ({"Auto-Submitted": "auto-replied"}, "Re: order"),
        ({"X-Autoreply": "yes"}, "Re: order"),
        ({}, "Automatic reply: order"),
        ({}, "Out of Office: order"),
        ({}, "Abwesenheitsnotiz: Bestellung"),
    ],
)
def test_auto_replies_are_flagged(headers: dict[str, str], subject: str) -> None:
    assert received(make_mail(headers=headers, subject=subject)).auto_reply is True


def test_auto_submitted_no_is_a_person() -> None:
    assert received(make_mail(headers={"Auto-Submitted": "no"})).auto_reply is False


def test_attachments_are_returned_with_their_content_and_described_in_the_event() -> None:
    parsed = parse_mail(
        make_mail(
            attachments=[
                ("photo.jpg", "image/jpeg", b"\xff\xd8jpeg"),
                ("a.txt", "text/plain", b"hi"),
            ]
        ),
        SOURCE,
    )
    assert [a.ref.filename for a in parsed.attachments] == ["photo.jpg", "a.txt"]
    assert parsed.attachments[0].content == b"\xff\xd8jpeg"
    assert parsed.event.attachments[0].sha256 == parsed.attachments[0].ref.sha256


def test_a_bounce_is_a_failed_delivery_of_our_mail_not_a_new_customer() -> None:
    parsed = parse_mail(make_bounce("<cmd-1@support.example.org>", "Bob@Example.com"), SOURCE)
    report = parsed.event
    assert isinstance(report, DeliveryStatusChanged)
    assert report.status is DeliveryStatus.failed
    assert report.message_ref == "<cmd-1@support.example.org>"
    assert report.party == "bob@example.com"  # the recipient, not MAILER-DAEMON
    assert report.error_code == "5.1.1"
    assert "User unknown" in (report.error_message or "")


def test_a_bounce_of_a_mail_the_hub_never_sent_is_unattributable_not_a_customer() -> None:
    foreign = make_bounce("<CAF1x@mail.example.com>", "victim@example.net")
    with pytest.raises(UnattributableBounce, match="the hub did not send"):
        parse_mail(foreign, SOURCE)
    # Replies sent under another domain (SmtpConfig.domain) are ours once the mailbox says so.
    other = dataclasses.replace(SOURCE, message_id_domains=frozenset({"mail.example.com"}))
    assert parse_mail(foreign, other).event.message_ref == "<CAF1x@mail.example.com>"


def test_a_report_without_report_type_is_a_bounce_when_it_carries_a_delivery_status() -> None:
    dsn = make_bounce("<cmd-2@support.example.org>", "bob@example.com").replace(
        b"multipart/report; report-type=delivery-status;", b"multipart/report;"
    )
    report = parse_mail(dsn, SOURCE).event
    assert isinstance(report, DeliveryStatusChanged)
    assert report.message_ref == "<cmd-2@support.example.org>"
    assert report.party == "bob@example.com"


def test_a_delay_notice_records_nothing() -> None:
    parsed = parse_mail(
        make_bounce("<cmd-1@support.example.org>", "bob@example.com", action="delayed"), SOURCE
    )
    assert parsed.event is None and parsed.skipped_because


def test_mail_without_message_id_gets_a_mailbox_ref_and_a_content_key() -> None:
    raw = make_mail(message_id=None)
    parsed = parse_mail(raw, SOURCE)
    assert parsed.event.provider_ref == "support:7:42"
    assert parsed.dedupe_key.startswith("sha256:")
    assert parse_mail(raw, SOURCE).dedupe_key == parsed.dedupe_key


def test_a_mail_over_the_size_limit_is_rejected() -> None:
    from channels.email.config import MailLimits

    with pytest.raises(MailTooLarge, match="over the limit of 1000"):
        parse_mail(make_mail(body="x" * 2000), SOURCE, MailLimits(max_message_bytes=1000))


@pytest.mark.parametrize("sample", hostile_samples(), ids=lambda s: s.name)
def test_hostile_mail_is_recorded_or_rejected_with_a_reason_quickly(sample: Sample) -> None:
    started = time.perf_counter()
    try:
        parsed: ParsedMail | None = parse_mail(sample.raw, SOURCE)
    except MailRejected as exc:
        parsed = None
        outcome = type(exc).__name__
        assert exc.reason
    else:
        outcome = "recorded" if parsed.event is not None else "skipped"
    assert time.perf_counter() - started < 2.0, "parsing must stay fast on hostile input"
    assert outcome == sample.expected
    if parsed is not None and parsed.event is not None:
        event = parsed.event
        # What the recorder will do with it: the event survives the wire.
        assert parse_interaction(dump_interaction(event)) == event
        if isinstance(event, MessageReceived):
            for value in (event.subject or "", event.in_reply_to or "", *event.references):
                assert not _LINE_BREAK_OR_CONTROL.search(value), value
            for attachment in event.attachments:
                assert "/" not in attachment.filename and "\\" not in attachment.filename


def test_header_injection_never_reaches_reply_headers() -> None:
    [sample] = [s for s in hostile_samples() if s.name == "header_injection"]
    event = received(sample.raw)
    assert event.subject == "Hello Bcc: victim@example.net injected"
    assert event.in_reply_to == "<parent@example.org>"
    assert event.references == ["<root@example.org>", "<evil@example.org>", "<parent@example.org>"]


def test_copies_of_one_mail_are_one_mail_whatever_the_transport_added() -> None:
    mail = make_mail(message_id="<same@mail.example.com>")
    copy = (
        b"Received: from mx2.example.net by imap.example.org; Tue, 24 Nov 2026 10:01:00 +0100\r\n"
        b"Delivered-To: other@support.example.org\r\nX-Spam-Score: 0.3\r\n" + mail
    ).replace(b"\r\n", b"\n")  # and stored with LF line ends by another server
    first, second = parse_mail(mail, SOURCE), parse_mail(copy, SOURCE)
    assert first.content_digest == second.content_digest
    assert first.dedupe_key == second.dedupe_key
    assert first.event.provider_ref == second.event.provider_ref == "<same@mail.example.com>"


def test_two_different_mails_with_one_message_id_are_told_apart_by_their_content() -> None:
    first = parse_mail(make_mail(message_id="<reused@x.org>", body="first draft"), SOURCE)
    second = parse_mail(make_mail(message_id="<reused@x.org>", body="final text"), SOURCE)
    assert first.message_id == second.message_id == "<reused@x.org>"
    assert first.content_digest != second.content_digest
    assert first.dedupe_key != second.dedupe_key  # so the ingester does not skip the second


def test_a_mail_recorded_under_a_variant_ref_keeps_its_message_id_for_threading() -> None:
    parsed = parse_mail(make_mail(message_id="<reused@x.org>", body="final text"), SOURCE)
    variant = parsed.under_variant_ref().event
    assert variant.provider_ref == f"<reused@x.org>#{parsed.content_digest[:16]}"
    assert variant.thread_ref == "<reused@x.org>"  # what replies to it will reference
    assert parse_interaction(dump_interaction(variant)) == variant
