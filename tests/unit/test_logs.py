"""Structured logs: one JSON object a line, with the fields that follow a contact across the
services, and no phone numbers, addresses or bodies in clear unless asked for."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import HTTPException
from pydantic import BaseModel, ValidationError, field_validator

from channels.webhooks import confirmed
from services.bootstrap.logs import JsonFormatter, MaskingFormatter, mask_personal_data

PHONE = "+4930555123456"
MAIL = "jane.doe@example.com"


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.structured")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_json_with_the_fields_that_follow_one_contact(lines) -> None:
    logger, out = lines
    logger.warning(
        "dead-lettered %s", "sb.interactions.v1:2@41", extra={"topic": "t", "partition": 2}
    )
    logger.info("sent", extra={"provider_ref": "SM123", "customer_id": "c-1", "command_id": "x"})
    first, second = parsed(out)
    assert first["level"] == "warning" and first["logger"] == "test.structured"
    assert first["msg"] == "dead-lettered sb.interactions.v1:2@41"
    assert first["topic"] == "t" and first["partition"] == 2
    assert {k: second[k] for k in ("provider_ref", "customer_id", "command_id")} == {
        "provider_ref": "SM123",
        "customer_id": "c-1",
        "command_id": "x",
    }
    assert "event_id" not in second  # only what the code knows


def test_phone_numbers_addresses_and_quoted_input_are_masked_by_default(lines) -> None:
    logger, out = lines

    class Message(BaseModel):
        body: str

        @field_validator("body")
        @classmethod
        def short(cls, value: str) -> str:
            raise ValueError("too long")

    body = " ".join(["my card number is", *["4111"] * 4])
    try:
        Message(body=body)
    except ValidationError:
        logger.exception("from %s (%s) on whatsapp:%s", PHONE, MAIL, PHONE)
    (line,) = parsed(out)
    text = json.dumps(line)
    assert PHONE not in text and MAIL not in text
    assert "4111" not in text and "card number" not in text
    assert "+49…56" in line["msg"] and "j…@example.com" in line["msg"]
    assert "input_value=<not logged>" in line["exc"]


def test_personal_data_stays_when_asked_for() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "from %s", (PHONE,), None)
    assert PHONE in json.loads(JsonFormatter(personal_data=True).format(record))["msg"]
    assert PHONE not in MaskingFormatter("%(message)s").format(record)


def test_masking_leaves_what_is_not_personal() -> None:
    text = "127.0.0.1:19092 offset 12345678 at 2026-12-01T10:00:00+00:00 sb.routing.v1"
    assert mask_personal_data(text) == text
    assert mask_personal_data("telegram:123456789") == "telegram:…89"


async def test_a_webhook_that_cannot_publish_logs_its_provider_ref_and_event_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise ConnectionError("broker gone")

    with pytest.raises(HTTPException):
        await confirmed(
            failing(),
            timeout_s=1,
            what="sms webhook: SM42",
            context={"provider_ref": "SM42", "event_id": "e-1"},
        )
    (record,) = [r for r in caplog.records if r.name == "channels.webhooks"]
    line = json.loads(JsonFormatter().format(record))
    assert line["provider_ref"] == "SM42" and line["event_id"] == "e-1"
