"""Real Dovecot -> EmailIngestion -> real Kafka -> recorder -> customer history and timeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from imapclient.exceptions import IMAPClientError

from channels.email import ImapMailbox, MailLimits
from channels.email.checkpoints import SQLiteCheckpointStore
from contracts import DeadLetter, DeliveryStatus
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.helpers import eventually, read_topic, recorded_refs
from tests.mail_fixtures import (
    FAST,
    DovecotServer,
    StartIngestion,
    TcpProxy,
    make_bounce,
    make_mail,
    timeline_of,
)
from tests.mail_samples import Sample, hostile_samples


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The e-mail channel does not care which store records its events: SQLite only."""
    return f"sqlite:///{tmp_path / 'history.db'}"


async def test_new_mail_appears_in_the_customer_timeline_with_its_attachment(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    invoice = b"%PDF-1.4 invoice 4711\n" * 100
    dovecot.append(
        imap_mailbox,
        make_mail(
            sender="Ann Example <Ann@Example.com>",
            subject="Order 4711",
            body="Where is my order?\n\nBest regards,\nAnn\n\nOn Monday, Support wrote:\n> Soon.\n",
            message_id="<first-4711@mail.example.com>",
            attachments=[("invoice.pdf", "application/pdf", invoice)],
        ),
    )
    await start_ingestion(imap_mailbox)
    entries, _ = timeline_of(hub_settings, "ann@example.com")
    await eventually(lambda: len(entries()) == 1, what="the mail on Ann's timeline")
    [entry] = entries()
    assert entry.type == "message.received.v1"
    assert entry.channel == "email"
    assert entry.provider_ref == "<first-4711@mail.example.com>"
    payload = entry.payload
    assert payload["subject"] == "Order 4711"
    assert payload["body"] == "Where is my order?"
    assert "> Soon." in payload["full_body"]
    assert payload["endpoint"] == imap_mailbox.address
    [attachment] = payload["attachments"]
    assert attachment["filename"] == "invoice.pdf"
    assert attachment["size"] == len(invoice)
    blobs = bootstrap(hub_settings).blobs()  # the hub's: sealed with the file's key
    assert blobs.get(attachment["sha256"]) == invoice
    assert invoice not in blobs.path_for(attachment["sha256"]).read_bytes()


async def test_a_reply_joins_its_conversation_and_an_auto_reply_is_flagged(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    root = "<root-1@mail.example.com>"
    ours = "<c0ffee@support.example.org>"
    dovecot.append(
        imap_mailbox,
        make_mail(message_id=root, body="My parcel is late."),
        make_mail(
            message_id="<reply-2@mail.example.com>",
            in_reply_to=ours,
            references=[root, ours],
            subject="Re: Where is my order?",
            body="Thanks, it arrived.\n\nOn Tue, Support <support@support.example.org> wrote:\n"
            "> It ships today.\n",
        ),
        make_mail(
            message_id="<ooo-3@mail.example.com>",
            subject="Out of Office: Where is my order?",
            body="I am away until Monday.",
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    await start_ingestion(imap_mailbox)
    entries, _ = timeline_of(hub_settings, "ann@example.com")
    await eventually(lambda: len(entries()) == 3, what="three mails on the timeline")
    by_ref = {e.provider_ref: e.payload for e in entries()}
    first, reply, away = (
        by_ref[root],
        by_ref["<reply-2@mail.example.com>"],
        by_ref["<ooo-3@mail.example.com>"],
    )
    assert first["thread_ref"] == root and reply["thread_ref"] == root
    assert reply["in_reply_to"] == ours
    assert reply["references"] == [root, ours]
    assert reply["body"] == "Thanks, it arrived."
    assert away["auto_reply"] is True
    assert first["auto_reply"] is False and reply["auto_reply"] is False


async def test_a_bounce_marks_the_original_outbound_mail_failed_and_creates_no_customer(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    ours = "<cmd-42@support.example.org>"
    dovecot.append(imap_mailbox, make_bounce(ours, "Bob@Example.com"))
    await start_ingestion(imap_mailbox)
    entries, view = timeline_of(hub_settings, "bob@example.com")
    await eventually(lambda: len(entries()) == 1, what="the bounce on Bob's timeline")
    [entry] = entries()
    assert entry.type == "delivery.status.v1"
    assert entry.payload["message_ref"] == ours
    assert entry.payload["error_code"] == "5.1.1"
    report = view.delivery_status(ours)
    assert report is not None and report.status is DeliveryStatus.failed
    assert view.customer_for_address("mailer-daemon@mx.example.net") is None


async def test_restarted_ingester_resumes_after_its_checkpoint(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    first = [make_mail(body=f"first run {i}") for i in range(5)]
    dovecot.append(imap_mailbox, *first)
    run = await start_ingestion(imap_mailbox)
    await eventually(lambda: run.stats.last_uid == 5, what="five mails read")
    await run.stop()
    dovecot.append(imap_mailbox, *[make_mail(body=f"second run {i}") for i in range(3)])
    again = await start_ingestion(imap_mailbox)
    await eventually(lambda: again.stats.last_uid == 8, what="three more mails read")
    assert again.stats.published == 3  # nothing before the checkpoint was read again
    await eventually(
        lambda: sum(recorded_refs(hub_settings).values()) == 8, what="eight mails recorded"
    )
    assert set(recorded_refs(hub_settings).values()) == {1}


async def test_a_uidvalidity_change_rereads_the_mailbox_without_duplicates(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    # One mail without a Message-ID: its provider_ref holds the UIDVALIDITY, so only the
    # ingester's seen-keys (content hash) keep it from being recorded twice.
    dovecot.append(
        imap_mailbox,
        *[make_mail(body=f"before {i}") for i in range(4)],
        make_mail(body="no id", message_id=None),
    )
    run = await start_ingestion(imap_mailbox)
    await eventually(lambda: run.stats.last_uid == 5, what="five mails read")
    await run.stop()
    before = dovecot.uidvalidity(imap_mailbox)
    dovecot.rebuild_mailbox(imap_mailbox)
    dovecot.append(imap_mailbox, make_mail(body="after the rebuild"))
    assert dovecot.uidvalidity(imap_mailbox) != before
    again = await start_ingestion(imap_mailbox)
    await eventually(lambda: again.stats.last_uid == 6, what="the rebuilt mailbox read")
    assert again.stats.already_seen == 5
    assert again.stats.published == 1
    await eventually(
        lambda: sum(recorded_refs(hub_settings).values()) == 6, what="six mails recorded"
    )
    assert set(recorded_refs(hub_settings).values()) == {1}
    checkpoint = SQLiteCheckpointStore(hub_settings.data_dir / "email-checkpoints.db")
    assert checkpoint.load(imap_mailbox.name).uidvalidity == dovecot.uidvalidity(imap_mailbox)
    checkpoint.close()


async def test_two_different_mails_with_one_message_id_are_both_recorded_and_a_copy_once(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    reused = "<resent-draft@mail.example.com>"
    draft = make_mail(message_id=reused, body="First draft, sent by accident.")
    final = make_mail(message_id=reused, body="The text I meant to send.")
    # The same mail again, as a second server delivered it: only transport headers differ.
    copy = b"Received: from mx2.example.net by imap.example.org\r\nX-Spam-Score: 0.1\r\n" + draft
    dovecot.append(imap_mailbox, draft, final, copy)
    run = await start_ingestion(imap_mailbox)
    entries, _ = timeline_of(hub_settings, "ann@example.com")
    await eventually(lambda: len(entries()) == 2, what="both different mails on the timeline")
    by_ref = {e.provider_ref: e.payload for e in entries()}
    [variant] = [ref for ref in by_ref if ref != reused]
    assert by_ref[reused]["body"] == "First draft, sent by accident."  # the first holds the id
    assert variant.startswith(f"{reused}#")
    assert by_ref[variant]["body"] == "The text I meant to send."
    assert by_ref[variant]["thread_ref"] == reused  # replies still name the real Message-ID
    assert run.stats.reused_message_ids == 1 and run.stats.already_seen == 1
    await run.stop()

    # The mailbox rebuilt (new UIDVALIDITY): all three are read again, none recorded again.
    dovecot.rebuild_mailbox(imap_mailbox)
    again = await start_ingestion(imap_mailbox)
    await eventually(lambda: again.stats.last_uid == 3, what="the rebuilt mailbox read")
    assert again.stats.already_seen == 3 and again.stats.published == 0
    assert recorded_refs(hub_settings) == {
        f"message.received.v1|{reused}": 1,
        f"message.received.v1|{variant}": 1,
    }


@pytest.mark.parametrize("failure", ["cut", "freeze"])
async def test_a_connection_dropped_during_idle_recovers_and_records_what_arrived_meanwhile(
    failure: str,
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    proxy = TcpProxy(dovecot.port)
    try:
        via_proxy = dataclasses.replace(imap_mailbox, port=proxy.port)
        dovecot.append(imap_mailbox, make_mail(body="before the drop"))
        # A closed connection must be noticed at once (no refresh within the test's patience);
        # a silent one only by the IDLE refresh whose DONE goes unanswered (read timeout).
        refresh = 600 if failure == "cut" else 2
        timing = dataclasses.replace(FAST, idle_refresh_s=refresh, read_timeout_s=2)
        run = await start_ingestion(via_proxy, timing=timing)
        await eventually(lambda: run.stats.published == 1, what="the first mail")
        await eventually(lambda: proxy.accepted == 1 and run.stats.sessions == 1, what="IDLE")
        if failure == "cut":
            proxy.cut()  # closed under the client: its socket reports EOF
        else:
            proxy.freeze()  # nothing arrives any more, and nothing says so
        # Delivered straight to the server while the ingester's connection is broken.
        dovecot.append(imap_mailbox, make_mail(body="while the connection was down"))
        await eventually(
            lambda: run.stats.published == 2, timeout=30, what="the mail that arrived meanwhile"
        )
        assert run.stats.sessions >= 2 and run.stats.failures >= 1
    finally:
        proxy.close()
    await eventually(
        lambda: sum(recorded_refs(hub_settings).values()) == 2, what="both mails recorded"
    )


async def test_hostile_mails_are_recorded_or_dead_lettered_and_ingestion_goes_on(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    huge = make_mail(body="x" * 3_000_000, message_id="<huge@example.com>")
    samples = [*hostile_samples(), Sample("huge", huge, "MailTooLarge")]
    appended: list[Sample] = []
    for sample in samples:
        try:
            dovecot.append(imap_mailbox, sample.raw)
        except IMAPClientError:
            continue  # the server itself refused it: it can never reach us
        appended.append(sample)
    dovecot.append(imap_mailbox, make_mail(message_id="<after-the-storm@example.com>"))
    limits = MailLimits(max_message_bytes=2_000_000)
    run = await start_ingestion(imap_mailbox, limits=limits)
    total = len(appended) + 1
    await eventually(lambda: run.stats.last_uid == total, timeout=60, what="every mail read")
    assert run.stats.failures == 0, run.stats.last_error  # no reconnect, no crash

    rejected = {uid: s for uid, s in enumerate(appended, 1) if s.expected[0].isupper()}
    letters = await read_topic(
        hub_settings.kafka_bootstrap, hub_settings.deadletter_topic, expect=len(rejected)
    )
    assert len(letters) == len(rejected)
    for record in letters:
        letter = DeadLetter.model_validate_json(record.value)
        sample = rejected[letter.source_offset]
        assert letter.source_topic == f"imap:{imap_mailbox.name}"
        assert letter.error_type == sample.expected, (sample.name, letter.reason)
        assert letter.reason
        if sample.name == "huge":
            assert letter.payload.startswith(b"From:") and len(letter.payload) < 2000
        elif len(sample.raw) > limits.deadletter_payload_bytes:
            assert letter.payload == sample.raw[: limits.deadletter_payload_bytes]
            assert "stored as blob sha256:" in letter.reason
        else:
            assert letter.payload == sample.raw

    recorded = sum(1 for s in appended if s.expected == "recorded") + 1
    await eventually(
        lambda: sum(recorded_refs(hub_settings).values()) == recorded,
        what=f"{recorded} mails recorded",
    )
    assert recorded_refs(hub_settings)["message.received.v1|<after-the-storm@example.com>"] == 1


@pytest.mark.parametrize("tls", ["tls", "starttls"])
async def test_mail_is_read_over_tls_verified_against_the_configured_ca(
    tls: str,
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    start_ingestion: StartIngestion,
) -> None:
    port = dovecot.tls_port if tls == "tls" else dovecot.port
    secure = dataclasses.replace(imap_mailbox, tls=tls, port=port, ca_file=dovecot.certificate)
    dovecot.append(imap_mailbox, make_mail(message_id=f"<over-{tls}@mail.example.com>"))
    run = await start_ingestion(secure)
    await eventually(lambda: run.stats.published == 1, what=f"the mail read over {tls}")
    assert run.stats.failures == 0


async def test_an_untrusted_imap_certificate_is_refused_and_retried(
    dovecot: DovecotServer, imap_mailbox: ImapMailbox, start_ingestion: StartIngestion
) -> None:
    untrusted = dataclasses.replace(imap_mailbox, tls="tls", port=dovecot.tls_port)
    run = await start_ingestion(untrusted)
    await eventually(lambda: run.stats.failures >= 2, what="refused and retried")
    assert "CERTIFICATE_VERIFY_FAILED" in (run.stats.last_error or "")
    assert run.stats.sessions == 0
