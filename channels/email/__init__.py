"""The e-mail channel: IMAP in (``EmailIngestion``), SMTP out (``EmailSender``).

What the composition root needs:

- ``EmailIngestion(mailboxes, publisher=, deadletter_topic=, data_dir=)`` with
  ``async run(stop)`` and ``await wait_started()``: reads every mailbox into the publisher's
  topic (``publisher`` makes one per run), dead-letters mail it cannot record.
- ``EmailSender(SmtpConfig(...))``: the ``channels.outbound.Sender`` for ``Channel.email``.
- ``ImapMailbox.from_mapping(dict)`` builds a mailbox from JSON settings.
"""

from channels.email.blobs import BlobNotFound, BlobStore, LocalBlobStore
from channels.email.checkpoints import Checkpoint, CheckpointStore, SQLiteCheckpointStore
from channels.email.config import ConfigError, ImapMailbox, ImapTiming, MailLimits, SmtpConfig
from channels.email.errors import MailRejected
from channels.email.imap import ImapIngester, IngestStats
from channels.email.inbound import EmailIngestion, KafkaMailSink
from channels.email.outbound import EmailSender, message_id_for
from channels.email.parsing import MailSource, ParsedMail, parse_mail

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "Checkpoint",
    "CheckpointStore",
    "ConfigError",
    "EmailIngestion",
    "EmailSender",
    "ImapIngester",
    "ImapMailbox",
    "ImapTiming",
    "IngestStats",
    "KafkaMailSink",
    "LocalBlobStore",
    "MailLimits",
    "MailRejected",
    "MailSource",
    "ParsedMail",
    "SQLiteCheckpointStore",
    "SmtpConfig",
    "message_id_for",
    "parse_mail",
]
