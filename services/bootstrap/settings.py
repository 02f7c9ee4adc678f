"""The one settings object, built in the composition root and handed down.

Every value can be set as an environment variable with the ``SWITCHBOARD_`` prefix,
for example ``SWITCHBOARD_STORE=postgresql://user@db:5432/switchboard`` or
``SWITCHBOARD_KAFKA_BOOTSTRAP=kafka-1:9092``; a secret (and the store's URL) can come from a
file instead, ``SWITCHBOARD_<NAME>_FILE``.  No other module reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, get_args
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from contracts.errors import ConfigError

PREFIX = "SWITCHBOARD_"
# Settings that may carry a password besides the secrets (a store URL with one).
_ALSO_FROM_FILES = frozenset({"store"})
# Secrets that have a file setting of their own already (its name ends in _FILE too).
_OWN_FILE_SETTING = frozenset({"email_smtp_password"})


class SecretFiles(PydanticBaseSettingsSource):
    """``SWITCHBOARD_<NAME>_FILE``: a secret read from a file (a mounted Kubernetes or Docker
    secret) rather than from the environment, for every secret setting and the store's URL.
    Its one trailing newline is dropped; setting both ``<NAME>`` and ``<NAME>_FILE`` is an
    error, as is a file that cannot be read."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is done in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if name in _OWN_FILE_SETTING or not (name in _ALSO_FROM_FILES or _is_secret(field)):
                continue
            variable = f"{PREFIX}{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if path is None:
                continue
            if variable in os.environ:
                raise ConfigError(f"{variable} and {variable}_FILE are both set: keep one")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{variable}_FILE: cannot read {path}: {e}") from None
            found[name] = text.removesuffix("\n").removesuffix("\r")
        return found


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *get_args(field.annotation))


def load_settings() -> Settings:
    """The settings from the environment (and ``*_FILE`` secrets); a mistake is a
    ``ConfigError`` naming each variable and what is wrong with it, never a traceback."""
    try:
        return Settings()
    except ValidationError as e:
        problems = []
        for error in e.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            given = error.get("input")
            shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
            problems.append(f"{PREFIX}{name.upper()}: {error['msg']}{shown}")
        raise ConfigError("; ".join(problems)) from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings)

    data_dir: Path = Field(Path("var"), description="Local state: SQLite files, Kafka data, blobs")
    store: str = Field(
        "sqlite",
        description="'sqlite' (a file under data_dir), 'sqlite:///path.db', or postgresql://…",
    )
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers; unset means the local broker under data_dir"
    )
    interactions_topic: str = "sb.interactions.v1"
    deadletter_topic: str = "sb.deadletter.v1"
    topic_partitions: int = Field(6, ge=1, description="Partitions when the hub creates topics")
    topic_replication: int = Field(1, ge=1, description="Replication factor when it creates them")
    outbound_topic: str = "sb.outbound.v1"
    routing_topic: str = "sb.routing.v1"
    presence_topic: str = "sb.presence.v1"
    campaign_progress_topic: str = Field(
        "sb.campaign-progress.v1",
        description="The campaign runner's progress per campaign (compacted, transactional)",
    )
    routing_config: Path | None = Field(
        None,
        description="The inbound routing configuration (YAML, docs/routing.md); unset: every "
        "call waits in twilio_voice_queue",
    )
    recorder_group: str = "sb-recorder"
    outbound_group: str = "sb-outbound"
    router_group: str = "sb-router"
    ready_max_lag: int = Field(
        10_000, ge=0, description="/readyz: records the recorder may be behind and be ready"
    )
    recorder_batch: int = Field(1000, ge=1, le=10000, description="Max records per transaction")
    session_timeout_ms: int = Field(10000, ge=1000)
    session_secret: SecretStr | None = Field(
        None,
        description="Signs the console's session cookies (32+ characters; every gateway "
        "instance needs the same); unset: a random key kept in data_dir/session.key",
    )
    session_hours: float = Field(8.0, gt=0, le=24 * 7, description="A console sign-in lasts")
    http_host: str = "127.0.0.1"
    http_port: int = Field(
        8080, ge=0, le=65535, description="The API's port; a worker serves its probes here"
    )
    log_personal_data: bool = Field(
        False,
        description="Leave phone numbers and addresses in clear in the logs (debugging only; "
        "by default they are masked)",
    )
    drain_seconds: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="On SIGTERM: the deadline to finish what is in flight, commit and exit",
    )
    drain_refuse_seconds: float = Field(
        3.0,
        ge=0,
        le=600,
        description="On SIGTERM: how long webhooks are refused with 503 (and /readyz fails) "
        "before the API stops listening, so the load balancer sends them elsewhere",
    )
    local_kafka_port: int = Field(
        19092, ge=1024, le=65534, description="`switchboard up`'s own broker (controller: +1)"
    )
    desk_quiet_gap_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 365,
        description="An SMS or messenger chat quiet for this long: the next message opens a "
        "new conversation",
    )
    desk_max_file_bytes: int = Field(
        10 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024, description="Largest file agents may attach"
    )
    default_region: str | None = Field(
        None, description="Region for national phone numbers without +, e.g. 'US' or 'DE'"
    )

    # -- audit: signed checkpoints of the event chain (`switchboard audit`, services/audit) --
    # Ed25519 keys as base64 of their 32 raw bytes, or PEM; `switchboard audit keygen` makes a
    # pair.  Only the machine that signs checkpoints needs the private key (or its _FILE); an
    # auditor's machine that checks them needs only the public key.
    audit_signing_key: SecretStr | None = Field(
        None, description="Signs chain checkpoints (`switchboard audit checkpoint`)"
    )
    audit_public_key: str | None = Field(
        None,
        description="The key checkpoints must be signed with (unset: the signing key's own)",
    )

    # -- channels: a channel is on when its credentials are set ---------------------------
    public_base_url: str | None = Field(
        None, description="How providers reach us (behind a proxy), e.g. https://hub.example.com"
    )
    email_mailboxes: list[dict[str, Any]] = Field(
        default_factory=list,
        description='IMAP mailboxes as JSON: [{"name": "support", "host": "imap.example.com", '
        '"user": "support@example.com", "password_file": "/run/secrets/imap"}]',
    )
    email_timing: dict[str, float] = Field(
        default_factory=dict,
        description='How the IMAP ingester waits and retries, as JSON: {"idle_refresh_s": 300, '
        '"read_timeout_s": 30, "fetch_batch": 200, "backoff_max_s": 60} (see ImapTiming)',
    )
    email_smtp_host: str | None = None
    email_smtp_port: int = 587
    email_smtp_tls: str = Field("starttls", description="starttls, tls or none")
    email_smtp_user: str | None = None
    email_smtp_password: SecretStr | None = None
    email_smtp_password_file: Path | None = None
    email_from_address: str | None = None
    email_domain: str | None = Field(None, description="Right-hand side of our Message-IDs")
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = Field(None, description="Our SMS sender number (E.164)")
    twilio_messaging_service_sid: str | None = None
    twilio_voice_queue: str = Field("support", description="Where calls wait until routing")
    twilio_dial_client: str | None = Field(None, description="Dial this agent client instead")
    twilio_api_base_url: str | None = Field(None, description="Override Twilio's API host")
    cti_token: SecretStr | None = Field(None, description="Bearer token of the CTI webhook")
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    messenger_app_secret: SecretStr | None = None
    messenger_verify_token: SecretStr | None = None
    messenger_page_access_token: SecretStr | None = None
    messenger_message_tag: str | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_secret_token: SecretStr | None = None
    graph_base_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v21.0"
    telegram_api_base_url: str = "https://api.telegram.org"

    def to_env(self) -> dict[str, str]:
        """The environment variables that give a child process these same settings."""

        def text(value: object) -> str:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, list | dict):
                return json.dumps(value)  # pydantic-settings reads complex fields as JSON
            return str(value)

        return {
            f"SWITCHBOARD_{name.upper()}": text(value)
            for name, value in self.model_dump().items()
            if value is not None
        }

    @property
    def is_postgres(self) -> bool:
        return self.store.startswith(("postgresql://", "postgres://"))

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for the customer history."""
        if self.is_postgres:
            url = urlsplit(self.store)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": url.path.lstrip("/") or "switchboard",
                "POSTGRES_HOST": url.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": unquote(url.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(url.password or ""),
                # A stuck writer surfaces as an error (retried) instead of hanging forever.
                "POSTGRES_LOCK_TIMEOUT": "10",
                # One connection kept per store part and process, more while busy (up to 8;
                # the extra ones close when idle): a hub process opens several parts.
                "POSTGRES_POOL_SIZE": "1",
                "POSTGRES_MAX_OVERFLOW": "7",
                # Leave off: the DB-function insert path skips the tracking row (LIBRARIES.md 1.3).
                "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(self.sqlite_path("history")),
            "SQLITE_LOCK_TIMEOUT": "30",
        }

    def sqlite_path(self, purpose: str) -> Path:
        """SQLite keeps one file per purpose (the library uses fixed table names)."""
        if self.store.startswith("sqlite:///"):
            base = Path(self.store.removeprefix("sqlite:///"))
            return base if purpose == "history" else base.with_name(f"{base.stem}-{purpose}.db")
        return self.data_dir / f"{purpose}.db"
