"""Which channels are on: the settings turned into each channel's own configuration.

A channel is on when its credentials are set; an unconfigured one simply has no webhooks and
no sender (commands for it fail with a clear "no sender configured").  The bootstrap builds
the routers and senders from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from pydantic import SecretStr

from channels.email import ConfigError, ImapMailbox, ImapTiming, SmtpConfig
from channels.sms import TwilioSmsConfig
from channels.social import (
    MessengerConfig,
    TelegramConfig,
    WhatsAppConfig,
)
from channels.voice import CtiConfig, TwilioVoiceConfig
from services.bootstrap.settings import Settings


def _imap_timing(values: dict[str, float]) -> ImapTiming:
    known = {f.name: f.type for f in fields(ImapTiming)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"SWITCHBOARD_EMAIL_TIMING: unknown {', '.join(unknown)}; known: {', '.join(known)}"
        )
    whole = {name for name, kind in known.items() if kind in (int, "int")}
    return ImapTiming(**{k: int(v) if k in whole else float(v) for k, v in values.items()})


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


@dataclass
class ChannelConfigs:
    mailboxes: list[ImapMailbox] = field(default_factory=list)
    imap_timing: ImapTiming = field(default_factory=ImapTiming)
    smtp: SmtpConfig | None = None
    voice: TwilioVoiceConfig | None = None
    cti: CtiConfig | None = None
    sms: TwilioSmsConfig | None = None
    whatsapp: WhatsAppConfig | None = None
    messenger: MessengerConfig | None = None
    telegram: TelegramConfig | None = None


def channel_configs(settings: Settings) -> ChannelConfigs:
    configs = ChannelConfigs(
        mailboxes=[ImapMailbox.from_mapping(m) for m in settings.email_mailboxes],
        imap_timing=_imap_timing(settings.email_timing),
    )
    if settings.email_smtp_host and settings.email_from_address:
        configs.smtp = SmtpConfig(
            host=settings.email_smtp_host,
            port=settings.email_smtp_port,
            tls=settings.email_smtp_tls,  # type: ignore[arg-type]
            user=settings.email_smtp_user,
            password=_secret(settings.email_smtp_password) or None,
            password_file=settings.email_smtp_password_file,
            from_address=settings.email_from_address,
            domain=settings.email_domain,
        )
        # A bounce is ours when it names a Message-ID our sender made: tell every mailbox
        # that has not been told otherwise which domain that is.
        domain = configs.smtp.message_id_domain
        configs.mailboxes = [
            m if m.message_id_domains else replace(m, message_id_domains=(domain,))
            for m in configs.mailboxes
        ]
    region = settings.default_region
    if settings.twilio_auth_token is not None and settings.public_base_url:
        configs.voice = TwilioVoiceConfig(
            auth_token=_secret(settings.twilio_auth_token),
            public_base_url=settings.public_base_url,
            default_queue=settings.twilio_voice_queue,
            dial_client=settings.twilio_dial_client,
            default_region=region,
        )
        if settings.twilio_account_sid and (
            settings.twilio_from_number or settings.twilio_messaging_service_sid
        ):
            configs.sms = TwilioSmsConfig(
                account_sid=settings.twilio_account_sid,
                auth_token=_secret(settings.twilio_auth_token),
                public_base_url=settings.public_base_url,
                from_number=settings.twilio_from_number,
                messaging_service_sid=settings.twilio_messaging_service_sid,
                api_base_url=settings.twilio_api_base_url,
                default_region=region,
            )
    if settings.cti_token is not None:
        configs.cti = CtiConfig(token=_secret(settings.cti_token), default_region=region)
    if settings.whatsapp_app_secret is not None:
        configs.whatsapp = WhatsAppConfig(
            app_secret=_secret(settings.whatsapp_app_secret),
            verify_token=_secret(settings.whatsapp_verify_token),
            access_token=_secret(settings.whatsapp_access_token),
            phone_number_id=settings.whatsapp_phone_number_id or "",
            graph_base_url=settings.graph_base_url,
            api_version=settings.graph_api_version,
        )
    if settings.messenger_app_secret is not None:
        configs.messenger = MessengerConfig(
            app_secret=_secret(settings.messenger_app_secret),
            verify_token=_secret(settings.messenger_verify_token),
            page_access_token=_secret(settings.messenger_page_access_token),
            graph_base_url=settings.graph_base_url,
            api_version=settings.graph_api_version,
            message_tag=settings.messenger_message_tag,
        )
    if settings.telegram_bot_token is not None:
        configs.telegram = TelegramConfig(
            bot_token=_secret(settings.telegram_bot_token),
            secret_token=_secret(settings.telegram_secret_token),
            api_base_url=settings.telegram_api_base_url,
        )
    return configs
