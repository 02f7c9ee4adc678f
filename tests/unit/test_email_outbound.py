"""The mail EmailSender builds for a send command: headers, threading, idempotent Message-ID."""

from __future__ import annotations

import pytest

from channels.email.config import ConfigError, ImapMailbox, SmtpConfig
from channels.email.outbound import EmailSender, message_id_for
from channels.outbound import PermanentSendError
from contracts import Channel, MessageTemplate, SendMessage

CONFIG = SmtpConfig(host="127.0.0.1", from_address="Support <support@support.example.org>")


def command(**fields) -> SendMessage:
    values = {"channel": Channel.email, "to": "Ann@Example.com", "body": "Hello", **fields}
    return SendMessage(**values)


def test_a_reply_carries_the_thread_and_a_message_id_derived_from_the_command() -> None:
    mail = EmailSender(CONFIG).build(
        command(
            command_id="c0a8012e-7d1f-4b8e-9a55-3f0e2b1c9d77",
            subject="Re: Order 4711",
            in_reply_to="<b@mail.example.com>",
            references=["<root@mail.example.com>", "<a@mail.example.com>"],
        )
    )
    assert mail["Message-ID"] == "<c0a8012e-7d1f-4b8e-9a55-3f0e2b1c9d77@support.example.org>"
    assert mail["In-Reply-To"] == "<b@mail.example.com>"
    assert mail["References"] == (
        "<root@mail.example.com> <a@mail.example.com> <b@mail.example.com>"
    )
    assert mail["To"] == "ann@example.com"
    assert mail["From"] == "Support <support@support.example.org>"
    assert mail.get_content().strip() == "Hello"


def test_the_parent_is_not_repeated_when_references_already_end_with_it() -> None:
    mail = EmailSender(CONFIG).build(
        command(in_reply_to="<b@x.org>", references=["<a@x.org>", "<b@x.org>"])
    )
    assert mail["References"] == "<a@x.org> <b@x.org>"


def test_a_resent_command_has_the_same_message_id() -> None:
    sender = EmailSender(CONFIG)
    first = sender.build(command(command_id="cmd-1"))
    second = sender.build(command(command_id="cmd-1"))
    assert first["Message-ID"] == second["Message-ID"] == "<cmd-1@support.example.org>"


def test_command_ids_that_are_no_valid_id_part_are_hashed_deterministically() -> None:
    odd = message_id_for("a b<c>@d", "x.org")
    assert odd == message_id_for("a b<c>@d", "x.org")
    assert " " not in odd and odd.count("@") == 1 and odd.endswith("@x.org>")


def test_refs_that_are_not_message_ids_stay_out_of_the_headers() -> None:
    # Mail without a Message-ID is known by "<mailbox>:<uidvalidity>:<uid>": no header value.
    mail = EmailSender(CONFIG).build(command(in_reply_to="support:7:42", references=["x y"]))
    assert mail["In-Reply-To"] is None and mail["References"] is None


def test_line_breaks_cannot_reach_a_header() -> None:
    # The contract refuses them already; the sender refuses them again, whatever bypassed it.
    sneaky = command().model_copy(update={"subject": "Hi\r\nBcc: victim@example.net"})
    with pytest.raises(PermanentSendError, match="line break"):
        EmailSender(CONFIG).build(sneaky)
    with pytest.raises(ValueError):
        command(subject="Hi\r\nBcc: victim@example.net")


def test_templates_are_not_an_email_thing() -> None:
    with pytest.raises(PermanentSendError, match="template"):
        EmailSender(CONFIG).build(
            command(body="", template=MessageTemplate(name="t", language="en"))
        )


def test_configuration_errors_name_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match="tls"):
        SmtpConfig(host="h", from_address="a@b.c", tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="password"):
        ImapMailbox(name="support", host="h", user="u")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    box = ImapMailbox.from_mapping(
        {"name": "support", "host": "h", "user": "u@x.org", "password_file": str(secret)}
    )
    assert box.secret() == "s3cret" and box.endpoint == "u@x.org"
    with pytest.raises(ConfigError, match="unknown keys"):
        ImapMailbox.from_mapping({"name": "x", "host": "h", "user": "u", "pasword": "typo"})


def test_a_reply_to_a_mail_recorded_under_a_variant_ref_names_its_real_message_id() -> None:
    # A different mail that reused a Message-ID is recorded as "<id>#<digest>"; the desk answers
    # it by that provider_ref, but the headers must carry the Message-ID the client knows.
    mail = EmailSender(CONFIG).build(
        command(
            in_reply_to="<reused@mail.example.com>#0123456789abcdef",
            references=["<root@x.org>#fedcba9876543210"],
        )
    )
    assert mail["In-Reply-To"] == "<reused@mail.example.com>"
    assert mail["References"] == "<root@x.org> <reused@mail.example.com>"


def test_a_mailbox_knows_the_domains_of_our_message_ids() -> None:
    box = ImapMailbox.from_mapping(
        {"name": "s", "host": "h", "user": "u", "password": "p", "message_id_domains": ["A.org"]}
    )
    assert box.our_message_id_domains == frozenset({"a.org"})
    assert ImapMailbox(name="s", host="h", user="u", password="p").our_message_id_domains is None
    with pytest.raises(ConfigError, match="message_id_domains"):
        ImapMailbox(name="s", host="h", user="u", password="p", message_id_domains="a.org")
    with pytest.raises(ConfigError, match="message_id_domains"):
        ImapMailbox(name="s", host="h", user="u", password="p", message_id_domains=("x@a.org",))
