"""Sending e-mail replies over SMTP (aiosmtplib): the e-mail channel's ``Sender``.

The dispatcher (``services/outbound``) decides whether and when to send; this module only builds
the mail and hands it to the SMTP server. The Message-ID is derived from the command id, so a
command sent again after a crash carries the same Message-ID and mail clients show it once.
"""

from __future__ import annotations

import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from channels.email.config import SmtpConfig
from channels.email.refs import message_id_of, outbound_message_id
from channels.outbound import PermanentSendError, Recipient, SendReceipt, TransientSendError
from contracts import Channel, SendMessage

__all__ = ["EmailSender", "message_id_for"]

_MSG_ID = re.compile(r"<[^<>\s@]{1,250}@[^<>\s@]{1,250}>")
_LINE_BREAK = re.compile(r"[\r\n]")


def message_id_for(command_id: str, domain: str) -> str:
    """The Message-ID of the mail that carries ``command_id``: the same one on every resend."""
    return outbound_message_id(command_id, domain)


class EmailSender:
    """``Sender`` for Channel.email. A connection per mail: simple, and no stale sessions."""

    channel = Channel.email

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._tls_context: ssl.SSLContext | None = None
        if config.tls != "none":
            cafile = str(config.ca_file) if config.ca_file else None
            self._tls_context = ssl.create_default_context(cafile=cafile)

    def build(self, command: SendMessage) -> EmailMessage:
        """The mail for ``command``; PermanentSendError when it cannot be a safe mail."""
        if command.channel is not Channel.email:
            raise PermanentSendError(f"EmailSender cannot send {command.channel} messages")
        if command.template is not None and not command.body:
            raise PermanentSendError("e-mail has no provider templates; send a body")
        subject = command.subject or ""
        for name, value in (("To", command.to), ("Subject", subject)):
            if _LINE_BREAK.search(value):
                # Validated upstream already; a line break here would be header injection.
                raise PermanentSendError(f"{name} contains a line break", code="header-injection")
        # The desk names a mail by its provider_ref; the header needs the Message-ID behind it.
        parents = [message_id_of(r) for r in command.references if _is_msg_id(r)]
        in_reply_to = message_id_of(command.in_reply_to or "")
        in_reply_to = in_reply_to if _is_msg_id(in_reply_to) else None
        if in_reply_to and (not parents or parents[-1] != in_reply_to):
            parents.append(in_reply_to)  # RFC 5322 3.6.4: References ends with the parent
        mail = EmailMessage()
        mail["From"] = self.config.from_address
        mail["To"] = command.to
        mail["Subject"] = subject
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = message_id_for(command.command_id, self.config.message_id_domain)
        if in_reply_to:
            mail["In-Reply-To"] = in_reply_to
        if parents:
            mail["References"] = " ".join(parents)
        mail["Auto-Submitted"] = "no" if command.purpose == "service" else "auto-generated"
        mail.set_content(command.body)
        return mail

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        mail = self.build(command)
        config = self.config
        try:
            await aiosmtplib.send(
                mail,
                sender=config.from_address,
                recipients=[command.to],
                hostname=config.host,
                port=config.port,
                username=config.user,
                password=config.secret() if config.user else None,
                use_tls=config.tls == "tls",
                start_tls=config.tls == "starttls",
                tls_context=self._tls_context,
                timeout=config.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0] if exc.recipients else None
            raise _by_code(refusal.code if refusal else 550, str(exc)) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not this message: retried, so a fixed secret lets it through.
            raise TransientSendError(f"SMTP login refused: {exc}", code=str(exc.code)) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, str(exc)) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Connection refused, reset, TLS failure, timeouts, server not supporting STARTTLS.
            raise TransientSendError(f"SMTP: {type(exc).__name__}: {exc}") from None
        return SendReceipt(provider_ref=str(mail["Message-ID"]))

    async def close(self) -> None:
        """Nothing held between sends."""


def _is_msg_id(ref: str) -> bool:
    # Inbound mail without a Message-ID has a provider_ref like "support:7:42": not a header value.
    return bool(_MSG_ID.fullmatch(message_id_of(ref)))


def _by_code(code: int, message: str) -> TransientSendError | PermanentSendError:
    # Only a 5xx reply is the server's final word; 4xx and anything odd are worth another try.
    if 500 <= code < 600:
        return PermanentSendError(message, code=str(code))
    return TransientSendError(message, code=str(code))
