"""Configuration of the e-mail channel: plain values, built by the composition root.

Nothing here reads the environment; the composition root (``services/bootstrap/``) builds these
from its settings and hands them down. Secrets come either inline or from a file (a mounted
Kubernetes secret), read when a connection is opened so that a rotated secret is picked up on
the next reconnect."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contracts import errors as contracts_errors

__all__ = [
    "ConfigError",
    "ImapMailbox",
    "ImapTiming",
    "MailLimits",
    "SmtpConfig",
    "TlsMode",
]

TlsMode = Literal["tls", "starttls", "none"]
"""tls: TLS from the first byte (IMAPS 993, SMTPS 465); starttls: upgrade a plain connection
(IMAP 143, submission 587); none: plain text, for loopback tests only."""

_TLS_MODES = ("tls", "starttls", "none")


class ConfigError(contracts_errors.ConfigError):
    """A configuration value that cannot work; the message names the field."""


def _read_secret(password: str | None, password_file: Path | None, what: str) -> str | None:
    if password_file is not None:
        try:
            # A trailing newline is how editors and `echo` leave secret files; it is never part
            # of the password.
            return password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read password_file {password_file}: {exc}") from None
    return password


def _check_tls(mode: str, what: str) -> None:
    if mode not in _TLS_MODES:
        raise ConfigError(f"{what}: tls must be one of {', '.join(_TLS_MODES)}, not {mode!r}")


@dataclass(frozen=True)
class ImapMailbox:
    """One mailbox the hub reads customer mail from.

    ``name`` is the stable key of its checkpoint and of provider refs of mail without a
    Message-ID: renaming it makes the mailbox look new (everything is read again and deduplicated
    by Message-ID). ``address`` is our side of the contact (the event's endpoint); it defaults to
    ``user`` when that is an e-mail address. ``message_id_domains``: the right-hand sides of the
    Message-IDs our replies carry (``SmtpConfig.domain``); a bounce about any other mail is
    dead-lettered. Empty: the domain of ``address``.
    """

    name: str
    host: str
    user: str
    port: int = 993
    tls: TlsMode = "tls"
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    folder: str = "INBOX"
    address: str | None = None
    ca_file: Path | None = None  # a private CA; None means the system's trust store
    message_id_domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        what = f"mailbox {self.name!r}"
        domains = self.message_id_domains
        if isinstance(domains, str) or not all(
            isinstance(d, str) and d.strip() and not any(c in d for c in "@<> \t\r\n")
            for d in domains
        ):
            raise ConfigError(f"{what}: message_id_domains must be a list of domain names")
        object.__setattr__(self, "message_id_domains", tuple(d.strip().lower() for d in domains))
        if not self.name or any(c in self.name for c in ":\r\n"):
            raise ConfigError(f"{what}: name must be non-empty, without ':' or line breaks")
        _check_tls(self.tls, what)
        if self.password is None and self.password_file is None:
            raise ConfigError(f"{what}: set password or password_file")
        if isinstance(self.password_file, str):
            object.__setattr__(self, "password_file", Path(self.password_file))
        if isinstance(self.ca_file, str):
            object.__setattr__(self, "ca_file", Path(self.ca_file))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ImapMailbox:
        """From JSON-ish settings (``SWITCHBOARD_EMAIL_MAILBOXES``); unknown keys are an error."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"mailbox {values.get('name')!r}: unknown keys {sorted(unknown)}")
        return cls(**values)

    def secret(self) -> str:
        return _read_secret(self.password, self.password_file, f"mailbox {self.name!r}") or ""

    @property
    def endpoint(self) -> str:
        return self.address or self.user

    @property
    def our_message_id_domains(self) -> frozenset[str] | None:
        """The configured domains, or None: then the endpoint's domain decides."""
        return frozenset(self.message_id_domains) or None


@dataclass(frozen=True)
class ImapTiming:
    """How the ingester waits and retries.

    IDLE is re-issued every ``idle_refresh_s`` (RFC 2177 requires less than 29 minutes; NAT
    boxes forget quiet connections sooner). Leaving IDLE must be answered within
    ``read_timeout_s``: that is how a connection that died silently is noticed, so the worst case
    before a reconnect is ``idle_refresh_s + read_timeout_s``.
    """

    connect_timeout_s: float = 15.0
    read_timeout_s: float = 30.0
    idle_refresh_s: float = 300.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    publish_timeout_s: float = 60.0
    fetch_batch: int = 200  # messages per FETCH and per checkpoint advance
    fetch_batch_bytes: int = 32 * 1024 * 1024  # and at most this much mail in memory at once

    def __post_init__(self) -> None:
        if not 0 < self.idle_refresh_s < 29 * 60:
            raise ConfigError("idle_refresh_s must be between 0 and 29 minutes (RFC 2177)")
        if self.fetch_batch < 1:
            raise ConfigError("fetch_batch must be at least 1")


@dataclass(frozen=True)
class MailLimits:
    """What a single inbound mail may be; beyond it the mail is dead-lettered with the reason.

    The header limits are not cosmetic: the standard library's header parsers are quadratic on
    some inputs (measured: a 100 KB From header takes 96 s with ``policy.default``), so every
    header value is bounded before anything parses it.
    """

    max_message_bytes: int = 25 * 1024 * 1024
    max_header_bytes: int = 32 * 1024  # one header field, unfolded
    # Content-Type and Content-Disposition: their parameter parser is the quadratic one, and the
    # MIME parser runs it on every part before anything else could look at the part.
    max_mime_header_bytes: int = 4 * 1024
    max_header_block_bytes: int = 256 * 1024  # all header fields of one part
    max_headers: int = 500  # fields per part
    max_mime_depth: int = 12
    max_mime_parts: int = 200
    max_text_bytes: int = 2 * 1024 * 1024  # decoded text read from one body part
    deadletter_payload_bytes: int = 512 * 1024  # raw bytes carried inside a dead letter


@dataclass(frozen=True)
class SmtpConfig:
    """Where and as whom replies are sent."""

    host: str
    from_address: str
    port: int = 587
    tls: TlsMode = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    domain: str | None = None  # right-hand side of our Message-IDs; from_address's by default
    timeout_s: float = 30.0
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        _check_tls(self.tls, "smtp")
        if "@" not in self.from_address or any(c in self.from_address for c in "\r\n"):
            raise ConfigError(f"smtp: from_address {self.from_address!r} is not an address")
        if isinstance(self.password_file, str):
            object.__setattr__(self, "password_file", Path(self.password_file))
        if isinstance(self.ca_file, str):
            object.__setattr__(self, "ca_file", Path(self.ca_file))

    def secret(self) -> str | None:
        return _read_secret(self.password, self.password_file, "smtp")

    @property
    def message_id_domain(self) -> str:
        return self.domain or self.from_address.rpartition("@")[2].strip(">").lower()
