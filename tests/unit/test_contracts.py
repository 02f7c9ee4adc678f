"""The Kafka contracts: what an adapter may publish and what the consumer accepts."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from contracts import (
    INTERACTION_TYPES,
    MAX_BODY_CHARS,
    MAX_PAYLOAD_BYTES,
    AddressError,
    AttachmentRef,
    CallAnswered,
    CallEnded,
    CallMissed,
    CallRinging,
    Channel,
    ConsentChanged,
    ContactRouted,
    DeadLetter,
    DeliveryStatus,
    DeliveryStatusChanged,
    Direction,
    InteractionEvent,
    InvalidInteraction,
    MessageReceived,
    MessageSent,
    OfferAnswered,
    RouteTarget,
    RoutingFacts,
    VoicemailRecorded,
    dump_interaction,
    normalize_email,
    normalize_party,
    normalize_phone,
    parse_interaction,
    status_advances,
    status_of,
)

WHEN = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
CALLER = "+14155552671"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _call(**fields: object) -> dict[str, object]:
    return {"occurred_at": WHEN, "direction": "inbound", "party": CALLER, **fields}


SAMPLES: dict[str, InteractionEvent] = {
    "call.ringing.v1": CallRinging(
        **_call(provider_ref="CA1", call_id="CA1", endpoint="+18005550100")
    ),
    "call.answered.v1": CallAnswered(**_call(provider_ref="CA1", call_id="CA1", agent="agent-42")),
    "call.ended.v1": CallEnded(**_call(provider_ref="CA1", call_id="CA1", duration_s=183.4)),
    "call.missed.v1": CallMissed(**_call(provider_ref="CA2", call_id="CA2", reason="busy")),
    "voicemail.recorded.v1": VoicemailRecorded(
        **_call(
            provider_ref="RE1",
            call_id="CA2",
            recording_url="https://api.twilio.com/Recordings/RE1",
            duration_s=21.0,
            transcript="Please call me back.",
        )
    ),
    "message.received.v1": MessageReceived(
        occurred_at=WHEN,
        channel="email",
        party="Ann <Ann@Bücher.DE>",
        provider_ref="<CAF1x@mail.example.com>",
        endpoint="support@example.com",
        body="Where is my order?",
        subject="Order 4711",
        thread_ref="<CAF1root@mail.example.com>",
        in_reply_to="<CAF1root@mail.example.com>",
        attachments=[
            AttachmentRef(filename="photo.jpg", content_type="image/jpeg", size=1024, sha256=SHA)
        ],
    ),
    "message.sent.v1": MessageSent(
        occurred_at=WHEN,
        channel="whatsapp",
        party="4915112345678",
        provider_ref="wamid.1",
        body="On its way.",
    ),
    "delivery.status.v1": DeliveryStatusChanged(
        occurred_at=WHEN,
        channel="sms",
        party=CALLER,
        provider_ref="SM1:undelivered",
        status="undelivered",
        message_ref="SM1",
        error_code="30003",
        error_message="Unreachable destination handset",
    ),
    "consent.changed.v1": ConsentChanged(
        occurred_at=WHEN,
        channel="sms",
        direction="inbound",
        party=CALLER,
        provider_ref="SM2",
        purpose="marketing",
        granted=False,
        source="sms-keyword",
        keyword="STOP",
    ),
    "contact.routed.v1": ContactRouted(
        occurred_at=WHEN,
        channel="voice",
        party=CALLER,
        provider_ref="CA1:routed:1",
        contact_ref="CA1",
        target=RouteTarget(kind="agent", queue="support", agent="ann"),
        rule="last-agent",
        reason="ann was the last agent (2 h ago) and is available",
        facts=RoutingFacts(tier="gold", language="de", last_agent="ann"),
    ),
    "offer.answered.v1": OfferAnswered(
        occurred_at=WHEN,
        channel="whatsapp",
        party="whatsapp:+4915112345678",
        provider_ref="wamid.1:answered:1",
        contact_ref="wamid.1",
        attempt=1,
        agent="ann",
        accepted=True,
    ),
}


def _wire(event: InteractionEvent, **changes: object) -> bytes:
    """The event's JSON with some fields replaced, as a misbehaving producer might send it."""
    document = json.loads(dump_interaction(event))
    document.update(changes)
    return json.dumps(document).encode()


def _reason(raw: bytes | str) -> str:
    with pytest.raises(InvalidInteraction) as caught:
        parse_interaction(raw)
    return caught.value.reason


# --- the envelope and its round trip ------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(SAMPLES))
def test_every_event_type_round_trips_through_json(type_name: str) -> None:
    event = SAMPLES[type_name]
    parsed = parse_interaction(dump_interaction(event))
    assert type(parsed) is INTERACTION_TYPES[type_name]
    assert parsed == event
    assert dump_interaction(parsed) == dump_interaction(event)


def test_the_samples_cover_every_interaction_type() -> None:
    assert set(SAMPLES) == set(INTERACTION_TYPES)


def test_an_event_knows_its_type_without_being_told() -> None:
    event = SAMPLES["call.ringing.v1"]
    assert event.type == "call.ringing.v1"
    assert event.channel is Channel.voice


def test_a_str_payload_parses_like_bytes() -> None:
    event = SAMPLES["message.sent.v1"]
    assert parse_interaction(dump_interaction(event).decode()) == event


def test_events_are_immutable() -> None:
    with pytest.raises(ValidationError):
        SAMPLES["call.ringing.v1"].party = "+442071838750"  # type: ignore[misc]


def test_unknown_fields_are_rejected_rather_than_dropped() -> None:
    reason = _reason(_wire(SAMPLES["call.ringing.v1"], colour="red"))
    assert "colour" in reason


def test_occurred_at_with_an_offset_is_stored_as_utc() -> None:
    event = parse_interaction(
        _wire(SAMPLES["message.received.v1"], occurred_at="2025-03-14T11:26:53+02:00")
    )
    assert event.occurred_at == WHEN
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert b'"occurred_at":"2025-03-14T09:26:53Z"' in dump_interaction(event)


def test_a_naive_occurred_at_is_rejected_naming_the_field() -> None:
    reason = _reason(_wire(SAMPLES["message.received.v1"], occurred_at="2025-03-14T09:26:53"))
    assert reason.startswith("occurred_at: ")
    assert "offset" in reason
    with pytest.raises(ValidationError, match="occurred_at"):
        CallRinging(**_call(provider_ref="CA1", call_id="CA1", occurred_at=datetime(2025, 3, 14)))


def test_received_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = CallRinging(**_call(provider_ref="CA1", call_id="CA1"))
    assert before <= event.received_at <= datetime.now(UTC)
    assert event.received_at.tzinfo is UTC


def test_missing_fields_are_listed_by_name() -> None:
    reason = _reason(b'{"type": "message.received.v1", "channel": "sms"}')
    for field in ("occurred_at", "party", "provider_ref", "body"):
        assert f"{field}: Field required" in reason


def test_control_characters_in_provider_ref_are_rejected() -> None:
    reason = _reason(_wire(SAMPLES["message.sent.v1"], provider_ref="SM1\nX-Evil: 1"))
    assert reason.startswith("provider_ref: must not contain control characters")


# --- channel and direction --------------------------------------------------------------------


def test_a_message_received_cannot_be_outbound() -> None:
    reason = _reason(_wire(SAMPLES["message.received.v1"], direction="outbound"))
    assert reason == "direction: message.received.v1 is always inbound, not outbound"


@pytest.mark.parametrize(
    ("type_name", "direction"),
    [("message.sent.v1", "inbound"), ("delivery.status.v1", "inbound")],
)
def test_outbound_only_events_reject_inbound(type_name: str, direction: str) -> None:
    assert _reason(_wire(SAMPLES[type_name], direction=direction)).startswith("direction: ")


def test_call_events_live_on_the_voice_channel_only() -> None:
    reason = _reason(_wire(SAMPLES["call.answered.v1"], channel="sms"))
    assert reason.startswith("channel: call.answered.v1 is not used on channel 'sms'")


def test_messages_are_never_on_the_voice_channel() -> None:
    with pytest.raises(ValidationError, match="expected one of email, messenger, sms"):
        MessageReceived(occurred_at=WHEN, channel="voice", party=CALLER, provider_ref="x", body="")


# --- message content ------------------------------------------------------------------------------


def test_an_oversize_body_is_rejected_with_the_limit_in_the_message() -> None:
    reason = _reason(_wire(SAMPLES["message.received.v1"], body="x" * (MAX_BODY_CHARS + 1)))
    assert reason.startswith("body: ")
    assert str(MAX_BODY_CHARS) in reason


def test_a_body_at_the_limit_is_accepted() -> None:
    event = parse_interaction(_wire(SAMPLES["message.received.v1"], body="x" * MAX_BODY_CHARS))
    assert len(event.body) == MAX_BODY_CHARS


@pytest.mark.parametrize("subject", ["Order 4711\r\nBcc: all@example.com", "Order\n4711"])
def test_cr_or_lf_in_a_subject_is_rejected(subject: str) -> None:
    reason = _reason(_wire(SAMPLES["message.received.v1"], subject=subject))
    assert reason.startswith("subject: must not contain CR or LF")


def test_an_attachment_hash_must_be_64_hex_digits_and_is_lower_cased() -> None:
    assert (
        AttachmentRef(filename="a", content_type="text/plain", size=0, sha256=SHA.upper()).sha256
        == SHA
    )
    with pytest.raises(ValidationError, match="sha256"):
        AttachmentRef(filename="a", content_type="text/plain", size=0, sha256="abc")


def test_more_than_100_attachments_are_rejected() -> None:
    attachment = {"filename": "a", "content_type": "text/plain", "size": 1, "sha256": SHA}
    reason = _reason(_wire(SAMPLES["message.received.v1"], attachments=[attachment] * 101))
    assert reason.startswith("attachments: ")
    assert "100" in reason


# --- parse failures ---------------------------------------------------------------------------


def test_an_unknown_type_is_named_and_the_known_ones_listed() -> None:
    reason = _reason(_wire(SAMPLES["call.ringing.v1"], type="call.teleported.v1"))
    assert "unknown type 'call.teleported.v1'" in reason
    for known in INTERACTION_TYPES:
        assert known in reason


def test_a_payload_without_type_is_rejected() -> None:
    assert "type: missing" in _reason(b'{"channel": "sms"}')


def test_invalid_json_is_rejected_and_kept_for_the_dead_letter() -> None:
    with pytest.raises(InvalidInteraction) as caught:
        parse_interaction(b'{"type": "call.ringing.v1",')
    assert "Invalid JSON" in caught.value.reason
    assert caught.value.raw == b'{"type": "call.ringing.v1",'
    assert isinstance(caught.value, ValueError)


def test_a_payload_over_one_mebibyte_is_rejected_before_parsing() -> None:
    raw = b" " * MAX_PAYLOAD_BYTES + b"{}"
    reason = _reason(raw)
    assert f"over the {MAX_PAYLOAD_BYTES} byte limit" in reason


def test_a_long_list_of_errors_is_summarized_in_about_a_thousand_characters() -> None:
    bad = {"filename": "", "content_type": "", "size": -1, "sha256": "no"}
    reason = _reason(_wire(SAMPLES["message.received.v1"], attachments=[bad] * 100))
    assert len(reason) <= 1000
    assert reason.startswith("attachments.0.filename: ")
    assert reason.endswith("...")


# --- addresses --------------------------------------------------------------------------------


def test_a_us_national_number_with_region_us_becomes_e164() -> None:
    assert normalize_phone("(415) 555-2671", "US") == "+14155552671"
    assert normalize_phone("(415) 555-2671", default_region="us") == "+14155552671"


def test_a_tel_uri_is_read_as_its_number() -> None:
    assert normalize_phone("tel:+44 20 7183 8750") == "+442071838750"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("anonymous", "withheld"),
        ("client:agent_42", "client or SIP identity"),
        ("sip:alice@example.com", "client or SIP identity"),
        ("banana", "does not look like a phone number"),
        ("4155552671", "no valid country code"),
        ("+1 415 555", "not a valid phone number"),
        ("", "empty"),
    ],
)
def test_what_is_not_a_phone_number_is_rejected_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(AddressError) as caught:
        normalize_phone(raw)
    assert repr(raw) in str(caught.value)
    assert why in str(caught.value)


def test_an_unparseable_phone_number_is_rejected_naming_party() -> None:
    reason = _reason(_wire(SAMPLES["call.ringing.v1"], party="call me maybe"))
    assert reason.startswith("party: 'call me maybe' is not a phone number")


def test_the_email_domain_is_lower_cased_and_idna_encoded() -> None:
    assert normalize_email("Ann@Bücher.DE") == "ann@xn--bcher-kva.de"
    assert normalize_email("Ann Lee <ann@Example.com>") == "ann@example.com"


@pytest.mark.parametrize(
    "raw", ["ann", "ann@", "@example.com", "a@b.de, c@d.de", "ann@exa mple.com", "ann@-x.de"]
)
def test_what_is_not_one_email_address_is_rejected(raw: str) -> None:
    with pytest.raises(AddressError, match="is not an e-mail address"):
        normalize_email(raw)


@pytest.mark.parametrize("raw", ["4915112345678", "+4915112345678", "whatsapp:+4915112345678"])
def test_a_whatsapp_wa_id_with_or_without_plus_becomes_prefixed_e164(raw: str) -> None:
    assert normalize_party("whatsapp", raw) == "whatsapp:+4915112345678"


def test_a_telegram_chat_id_may_be_negative() -> None:
    assert normalize_party(Channel.telegram, "-1001234567890") == "telegram:-1001234567890"
    with pytest.raises(AddressError, match="not a Telegram chat id"):
        normalize_party(Channel.telegram, "@someone")


def test_a_messenger_psid_is_digits() -> None:
    assert normalize_party("messenger", "6543210987654321") == "messenger:6543210987654321"
    with pytest.raises(AddressError, match="not a Messenger page-scoped id"):
        normalize_party("messenger", "abc")


@pytest.mark.parametrize(
    ("channel", "raw"),
    [
        ("voice", "+1 (415) 555-2671"),
        ("sms", "tel:+14155552671"),
        ("email", "Ann <Ann@Bücher.DE>"),
        ("whatsapp", "4915112345678"),
        ("telegram", "telegram:0042"),
        ("messenger", " 6543210987654321 "),
    ],
)
def test_normalizing_a_normalized_address_returns_it_unchanged(channel: str, raw: str) -> None:
    once = normalize_party(channel, raw)
    assert normalize_party(channel, once) == once


def test_an_unknown_channel_is_an_address_error() -> None:
    with pytest.raises(AddressError, match="unknown channel 'fax'"):
        normalize_party("fax", "+14155552671")


def test_the_party_is_normalized_when_the_event_is_built() -> None:
    assert SAMPLES["message.sent.v1"].party == "whatsapp:+4915112345678"
    assert SAMPLES["message.received.v1"].party == "ann@xn--bcher-kva.de"


def test_an_offset_other_than_utc_stays_the_same_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = CallRinging(
        **_call(
            provider_ref="CA1",
            call_id="CA1",
            occurred_at=datetime(2025, 3, 14, 11, 26, 53, tzinfo=plus_two),
        )
    )
    assert event.occurred_at == WHEN and event.occurred_at.tzinfo is UTC


# --- delivery status and dead letters ---------------------------------------------------------


def test_delivery_status_only_moves_forward() -> None:
    assert status_advances(None, DeliveryStatus.sent)
    assert status_advances(DeliveryStatus.sent, DeliveryStatus.delivered)
    assert status_advances(DeliveryStatus.delivered, DeliveryStatus.read)
    assert not status_advances(DeliveryStatus.delivered, DeliveryStatus.sent)
    assert status_advances(DeliveryStatus.sent, DeliveryStatus.failed)
    assert not status_advances(DeliveryStatus.failed, DeliveryStatus.delivered)
    assert not status_advances(DeliveryStatus.undelivered, DeliveryStatus.read)
    assert not status_advances(DeliveryStatus.read, DeliveryStatus.failed)
    assert DeliveryStatus.queued.rank < DeliveryStatus.sent.rank < DeliveryStatus.delivered.rank
    assert DeliveryStatus.failed.is_terminal and not DeliveryStatus.read.is_terminal


def test_a_reported_status_reads_as_its_member_and_an_unknown_one_is_refused() -> None:
    for status in DeliveryStatus:
        assert status_of(status.value) is status
        assert status_of(status) is status
    with pytest.raises(ValueError, match="'bounced' is not a valid DeliveryStatus"):
        status_of("bounced")


def test_a_dead_letter_keeps_the_failed_payload_and_round_trips() -> None:
    raw = b'{"type": "call.teleported.v1"}\xff'
    with pytest.raises(InvalidInteraction) as caught:
        parse_interaction(raw)
    letter = DeadLetter.for_record(
        topic="sb.interactions.v1", partition=3, offset=81723, payload=raw, error=caught.value
    )
    assert letter.error_type == "InvalidInteraction"
    assert letter.reason == caught.value.reason
    assert letter.payload == raw
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_a_dead_letter_payload_must_be_base64() -> None:
    with pytest.raises(ValidationError, match="payload_b64"):
        DeadLetter(
            source_topic="t",
            source_partition=0,
            source_offset=0,
            reason="r",
            error_type="E",
            payload_b64="not base64!",
        )


def test_directions_and_channels_are_string_enums_on_the_wire() -> None:
    document = json.loads(dump_interaction(SAMPLES["consent.changed.v1"]))
    assert document["channel"] == "sms" and document["direction"] == Direction.inbound


def test_a_send_command_normalizes_the_recipient_and_needs_a_body_or_template() -> None:
    from contracts import InvalidCommand, SendMessage, dump_command, parse_command

    command = SendMessage(channel="sms", to="+1 (415) 555-2671", body="Your parcel left")
    assert command.to == "+14155552671"
    assert parse_command(dump_command(command)) == command
    with pytest.raises(InvalidCommand, match="needs a body or a template"):
        parse_command(b'{"channel": "sms", "to": "+14155552671"}')
    with pytest.raises(InvalidCommand, match="voice"):
        parse_command(b'{"channel": "voice", "to": "+14155552671", "body": "hi"}')


def test_a_withheld_caller_is_a_party_of_its_own_call_on_voice_only() -> None:
    from contracts import AddressError, normalize_party, withheld_caller

    assert withheld_caller("CA123") == "anonymous:CA123"
    assert normalize_party("voice", "anonymous:CA123") == "anonymous:CA123"
    with pytest.raises(AddressError):
        withheld_caller("bad id!")
    with pytest.raises(AddressError):
        normalize_party("sms", "anonymous:CA123")


@pytest.mark.parametrize(
    ("raw", "party"),
    [
        ("+1 415 555 2671", "+14155552671"),
        ("anonymous", "anonymous:CA9"),  # withheld
        ("+266696687", "anonymous:CA9"),  # Twilio's number for a withheld caller
        ("12", "anonymous:CA9"),  # unreadable: still a contact, nothing lost
        ("sip:bob@pbx.example", "anonymous:CA9"),
    ],
)
def test_a_calls_party_is_the_number_or_else_the_call(raw: str, party: str) -> None:
    from contracts import call_party, is_withheld_party

    assert call_party(raw, "CA9") == party
    assert is_withheld_party(party) == party.startswith("anonymous:")


def test_a_call_party_needs_a_usable_call_id_only_when_the_number_is_not_readable() -> None:
    from contracts import AddressError, call_party, is_withheld_party

    assert call_party("+14155552671", "bad id!") == "+14155552671"
    with pytest.raises(AddressError, match="not a call id"):
        call_party("anonymous", "bad id!")
    assert not is_withheld_party("+14155552671")
    assert not is_withheld_party("whatsapp:+14155552671")
