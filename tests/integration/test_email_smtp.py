"""EmailSender against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from channels.email import EmailSender, SmtpConfig
from channels.outbound import PermanentSendError, Recipient, TransientSendError
from contracts import Channel, SendMessage
from tests.mail_fixtures import RecordingSmtpHandler, SmtpServer, free_port, make_certificate

ANN = Recipient(address="ann@example.com")


def config(server: SmtpServer, **overrides) -> SmtpConfig:
    values = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "from_address": "support@support.example.org",
        "timeout_s": 5,
        **overrides,
    }
    return SmtpConfig(**values)


def reply(to: str = "ann@example.com", **fields) -> SendMessage:
    return SendMessage(channel=Channel.email, to=to, body="Your parcel left today.", **fields)


async def test_a_reply_reaches_the_server_threaded_and_the_receipt_names_its_message_id(
    smtp_server: SmtpServer,
) -> None:
    command = reply(
        subject="Re: Order 4711",
        in_reply_to="<q2@mail.example.com>",
        references=["<q1@mail.example.com>"],
    )
    receipt = await EmailSender(config(smtp_server)).send(command, ANN)
    [got] = smtp_server.handler.received
    assert got.mail_from == "support@support.example.org"
    assert got.rcpt_tos == ["ann@example.com"]
    mail = email.message_from_bytes(got.content, policy=email.policy.default)
    assert (
        mail["Message-ID"] == receipt.provider_ref == f"<{command.command_id}@support.example.org>"
    )
    assert mail["In-Reply-To"] == "<q2@mail.example.com>"
    assert mail["References"] == "<q1@mail.example.com> <q2@mail.example.com>"
    assert mail["Subject"] == "Re: Order 4711"
    assert mail.get_content().strip() == "Your parcel left today."


@pytest.mark.parametrize(
    ("to", "error", "code"),
    [
        ("tempfail@example.com", TransientSendError, "451"),
        ("reject@example.com", PermanentSendError, "550"),
    ],
)
async def test_smtp_4xx_is_transient_and_5xx_permanent_with_the_code(
    smtp_server: SmtpServer, to: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as raised:
        await EmailSender(config(smtp_server)).send(reply(to=to), ANN)
    assert raised.value.code == code
    assert smtp_server.handler.received == []


async def test_an_unreachable_server_is_transient() -> None:
    unreachable = SmtpConfig(
        host="127.0.0.1", port=free_port(), tls="none", from_address="s@x.org", timeout_s=2
    )
    with pytest.raises(TransientSendError):
        await EmailSender(unreachable).send(reply(), ANN)


# -- STARTTLS and login --------------------------------------------------------------------------


@dataclass
class TlsSmtpServer:
    server: SmtpServer
    certificate: Path


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[TlsSmtpServer]:
    """aiosmtpd requiring STARTTLS (a throwaway certificate for 127.0.0.1) and a login."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_certificate(cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"smtp-secret"
        # handled=False: aiosmtpd answers 535 itself (True would leave the client waiting).
        return AuthResult(success=ok, handled=False)

    handler = RecordingSmtpHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield TlsSmtpServer(SmtpServer("127.0.0.1", port, handler), cert)
    finally:
        controller.stop()


async def test_starttls_and_login_from_configuration(
    tls_smtp_server: TlsSmtpServer, tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("smtp-secret\n")
    sender = EmailSender(
        config(
            tls_smtp_server.server,
            tls="starttls",
            ca_file=tls_smtp_server.certificate,
            user="support",
            password_file=secret,
        )
    )
    await sender.send(reply(), ANN)
    assert len(tls_smtp_server.server.handler.received) == 1


async def test_wrong_credentials_are_retried_not_reported_as_the_message_failing(
    tls_smtp_server: TlsSmtpServer,
) -> None:
    sender = EmailSender(
        config(
            tls_smtp_server.server,
            tls="starttls",
            ca_file=tls_smtp_server.certificate,
            user="support",
            password="wrong",
        )
    )
    with pytest.raises(TransientSendError, match="login refused"):
        await sender.send(reply(), ANN)


async def test_an_untrusted_certificate_is_refused(tls_smtp_server: TlsSmtpServer) -> None:
    sender = EmailSender(config(tls_smtp_server.server, tls="starttls", user="s", password="x"))
    with pytest.raises(TransientSendError, match=r"SSL|certificate|TLS"):
        await sender.send(reply(), ANN)
    assert tls_smtp_server.server.handler.received == []
