"""Structured logs: JSON lines when not on a terminal (for log shippers), readable on one.

A line carries, where the code knows them, the fields that let one contact be followed across
the services: ``event_id``, ``provider_ref``, ``customer_id``, ``contact_ref``, ``command_id``,
and the Kafka ``topic``/``partition``/``offset`` (passed as ``extra=`` to the log call).

Personal data stays out by default (``SWITCHBOARD_LOG_PERSONAL_DATA=false``): phone numbers,
e-mail addresses and social ids in a message or a traceback are masked (``+49…67``,
``j…@example.com``), and the input a validation error quotes (``input_value=…``: a message
body, say) is dropped.  The code logs no bodies; the masking is the net under that rule.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

CONTEXT_FIELDS = (
    "event_id",
    "provider_ref",
    "customer_id",
    "contact_ref",
    "command_id",
    "topic",
    "partition",
    "offset",
)

_PHONE = re.compile(r"(?<![\w+])\+\d{7,15}\b")
_SOCIAL = re.compile(r"\b(telegram|messenger):\d{4,}\b")
_EMAIL = re.compile(r"\b([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)\b")
_QUOTED_INPUT = re.compile(
    r"input_value=(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[{\[].*?(?=, input_type=)|[^,\]]*)"
)


def mask_personal_data(text: str) -> str:
    """``text`` with phone numbers, e-mail addresses and social ids masked, and the input a
    validation error quotes dropped."""
    text = _QUOTED_INPUT.sub("input_value=<not logged>", text)
    text = _PHONE.sub(lambda m: f"{m.group(0)[:3]}…{m.group(0)[-2:]}", text)
    text = _SOCIAL.sub(lambda m: f"{m.group(1)}:…{m.group(0)[-2:]}", text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}…@{m.group(2)}", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, *, personal_data: bool = False) -> None:
        super().__init__()
        self.personal_data = personal_data

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, int | float) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if not self.personal_data:
            for key in ("msg", "exc", "provider_ref", "contact_ref"):
                if isinstance(entry.get(key), str):
                    entry[key] = mask_personal_data(entry[key])  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    """The terminal's readable lines, with personal data masked like the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_personal_data(super().format(record))


class ExpectedKafkaChatter(logging.Filter):
    """aiokafka logs at ERROR what is normal: while a broker starts, its group coordinator is
    not available yet and the client simply asks again.  Shown at DEBUG only."""

    # ...and while Kafka is down our supervisor already says so, once per retry, with the cause.
    # A topic just created has no leader for a moment: the fetcher asks again.
    EXPECTED = (
        "GroupCoordinatorNotAvailable",
        "NotCoordinatorForGroup",
        "Unable connect to",
        "NotLeaderForPartition",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and any(
            name in record.getMessage() for name in self.EXPECTED
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure_logging(
    level: str = "INFO", *, json_lines: bool | None = None, personal_data: bool = False
) -> None:
    """Log to stderr: JSON lines unless on a terminal; ``personal_data``: leave phone
    numbers and addresses in clear (for a debugging session, never by default)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    readable = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    if json_lines:
        handler.setFormatter(JsonFormatter(personal_data=personal_data))
    elif personal_data:
        handler.setFormatter(logging.Formatter(readable))
    else:
        handler.setFormatter(MaskingFormatter(readable))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every coordinator hiccup at ERROR/WARNING; keep ours readable.
    logging.getLogger("aiokafka").setLevel(logging.WARNING if level == "DEBUG" else logging.ERROR)
    handler.addFilter(ExpectedKafkaChatter())
    # httpx logs request URLs at INFO, and a Telegram URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
