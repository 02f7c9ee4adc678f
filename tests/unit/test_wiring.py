"""A channel is on exactly when its credentials are configured."""

from __future__ import annotations

from contracts import Channel
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings


def paths(routers) -> set[str]:
    return {route.path for router in routers for route in router.routes}


def test_no_credentials_means_no_webhooks_and_no_senders() -> None:
    settings = Settings()
    assert bootstrap(settings).webhook_routers(publisher=None, directory=None) == []  # type: ignore[arg-type]
    assert bootstrap(settings).senders() == {}


def test_configured_social_channels_get_webhooks_and_senders() -> None:
    settings = Settings(
        telegram_bot_token="123:abc",
        telegram_secret_token="s3cret_token",
        whatsapp_app_secret="app",
        whatsapp_verify_token="verify",
        whatsapp_access_token="token",
        whatsapp_phone_number_id="1055",
    )
    routes = paths(bootstrap(settings).webhook_routers(publisher=None, directory=None))  # type: ignore[arg-type]
    assert {"/webhooks/telegram", "/webhooks/whatsapp"} <= routes
    assert "/webhooks/messenger" not in routes
    assert set(bootstrap(settings).senders()) == {Channel.telegram, Channel.whatsapp}


def test_twilio_and_cti_are_wired_with_a_public_url_and_their_secrets() -> None:
    settings = Settings(
        public_base_url="https://hub.example.com",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="secret",
        twilio_from_number="+14155550100",
        cti_token="a-long-enough-cti-token",
    )
    routes = paths(bootstrap(settings).webhook_routers(publisher=None, directory=None))  # type: ignore[arg-type]
    assert {"/webhooks/twilio/voice", "/webhooks/twilio/sms", "/webhooks/cti/events"} <= routes
    assert set(bootstrap(settings).senders()) == {Channel.sms}


def test_email_is_wired_from_json_mailboxes_and_smtp_settings(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:9",
        email_mailboxes=[
            {
                "name": "support",
                "host": "127.0.0.1",
                "user": "support@example.com",
                "password": "pw",
                "port": 143,
                "tls": "none",
            }
        ],
        email_smtp_host="127.0.0.1",
        email_from_address="support@example.com",
    )
    assert bootstrap(settings).email_ingestion() is not None
    assert Channel.email in bootstrap(settings).senders()
    assert bootstrap(Settings(kafka_bootstrap="127.0.0.1:9")).email_ingestion() is None


def test_mailboxes_attribute_bounces_to_the_domain_our_replies_are_sent_from(tmp_path) -> None:
    mailbox = {
        "name": "support",
        "host": "127.0.0.1",
        "user": "support@example.com",
        "password": "x",
    }
    settings = Settings(
        data_dir=tmp_path,
        email_mailboxes=[mailbox, {**mailbox, "name": "sales", "message_id_domains": ["b.org"]}],
        email_smtp_host="127.0.0.1",
        email_from_address="support@example.com",
        email_domain="replies.example.net",
    )
    support, sales = bootstrap(settings).channels().mailboxes
    assert support.message_id_domains == ("replies.example.net",)
    assert sales.message_id_domains == ("b.org",)  # said explicitly: kept


def test_imap_timing_comes_from_the_settings_and_an_unknown_knob_is_named(tmp_path) -> None:
    import pytest

    from channels.email import ConfigError

    timing = bootstrap(Settings(email_timing={"fetch_batch": 50, "read_timeout_s": 5})).channels()
    assert timing.imap_timing.fetch_batch == 50
    assert timing.imap_timing.read_timeout_s == 5.0
    with pytest.raises(ConfigError, match="unknown fetch_size"):
        bootstrap(Settings(email_timing={"fetch_size": 50})).channels()
