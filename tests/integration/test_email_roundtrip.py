"""A conversation by e-mail through the whole hub, on real servers.

Customer mail arrives in Dovecot -> ingestion -> Kafka -> recorder -> timeline; the agent's reply
is a command on sb.outbound.v1 -> dispatcher -> EmailSender -> SMTP server (aiosmtpd) ->
message.sent.v1 on the timeline; the customer's answer threads onto the same conversation; a
bounce marks our mail failed.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from channels.email import EmailSender, ImapMailbox, SmtpConfig
from contracts import Channel, DeliveryStatus, SendMessage
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.helpers import eventually
from tests.mail_fixtures import (
    DovecotServer,
    SmtpServer,
    StartIngestion,
    make_bounce,
    make_mail,
    timeline_of,
)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


def email_sender(smtp: SmtpServer) -> EmailSender:
    return EmailSender(
        SmtpConfig(
            host=smtp.host,
            port=smtp.port,
            tls="none",
            from_address="Support <support@support.example.org>",
        )
    )


async def test_customer_mail_reply_and_answer_form_one_thread_on_the_timeline(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    smtp_server: SmtpServer,
    start_ingestion: StartIngestion,
    start_dispatcher,
    send_command,
) -> None:
    question = "<question-1@mail.example.com>"
    dovecot.append(imap_mailbox, make_mail(message_id=question, subject="Order 4711"))
    await start_ingestion(imap_mailbox)
    entries, _ = timeline_of(hub_settings, "ann@example.com")
    await eventually(lambda: len(entries()) == 1, what="the question on the timeline")
    [asked] = entries()

    await start_dispatcher({Channel.email: email_sender(smtp_server)})
    command = SendMessage(
        channel=Channel.email,
        to=asked.party,
        subject="Re: Order 4711",
        body="It left the depot this morning.",
        in_reply_to=asked.provider_ref,
        references=asked.payload["references"],
        thread_ref=asked.payload["thread_ref"],
        requested_by="agent_42",
    )
    await send_command(command)
    await eventually(lambda: len(smtp_server.handler.received) == 1, what="the reply sent")
    sent = email.message_from_bytes(
        smtp_server.handler.received[0].content, policy=email.policy.default
    )
    our_id = f"<{command.command_id}@support.example.org>"
    assert sent["Message-ID"] == our_id
    assert sent["In-Reply-To"] == question
    assert sent["References"] == question
    await eventually(lambda: len(entries()) == 2, what="message.sent.v1 on the timeline")
    assert {e.type: e.provider_ref for e in entries()}["message.sent.v1"] == our_id

    dovecot.append(
        imap_mailbox,
        make_mail(
            message_id="<answer-2@mail.example.com>",
            subject="Re: Re: Order 4711",
            in_reply_to=our_id,
            references=[question, our_id],
            body="Great, thanks!\n\nOn Tue, Support wrote:\n> It left the depot this morning.\n",
        ),
    )
    await eventually(lambda: len(entries()) == 3, what="the answer on the timeline")
    answer = next(e for e in entries() if e.provider_ref == "<answer-2@mail.example.com>")
    assert answer.payload["thread_ref"] == question  # the conversation the agent started from
    assert answer.payload["in_reply_to"] == our_id
    assert answer.payload["body"] == "Great, thanks!"


async def test_a_bounce_of_our_reply_marks_it_failed_and_an_smtp_refusal_fails_the_command(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    smtp_server: SmtpServer,
    start_ingestion: StartIngestion,
    start_dispatcher,
    send_command,
) -> None:
    await start_dispatcher({Channel.email: email_sender(smtp_server)})
    await start_ingestion(imap_mailbox)
    to_bob = SendMessage(channel=Channel.email, to="bob@example.com", body="Your invoice")
    refused = SendMessage(channel=Channel.email, to="reject@example.com", body="Hello")
    await send_command(to_bob)
    await send_command(refused)
    our_id = f"<{to_bob.command_id}@support.example.org>"
    entries, view = timeline_of(hub_settings, "bob@example.com")
    await eventually(lambda: len(entries()) == 1, what="the mail to Bob recorded as sent")
    assert view.delivery_status(our_id).status is DeliveryStatus.sent

    # Bob's server bounces it a little later; the DSN lands in our mailbox.
    dovecot.append(imap_mailbox, make_bounce(our_id, "bob@example.com"))
    await eventually(lambda: len(entries()) == 2, what="the bounce on Bob's timeline")
    assert view.delivery_status(our_id).status is DeliveryStatus.failed

    # The SMTP server refused the other one outright (550): failed under its command id.
    rejected, _ = timeline_of(hub_settings, "reject@example.com")
    await eventually(lambda: len(rejected()) == 1, what="the refusal recorded")
    [status] = rejected()
    assert status.type == "delivery.status.v1"
    assert status.payload["status"] == "failed" and status.payload["error_code"] == "550"
