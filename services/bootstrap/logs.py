"""Structured logs: JSON lines when not on a terminal (for log shippers), readable on one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


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


def configure_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every coordinator hiccup at ERROR/WARNING; keep ours readable.
    logging.getLogger("aiokafka").setLevel(logging.WARNING if level == "DEBUG" else logging.ERROR)
    handler.addFilter(ExpectedKafkaChatter())
    # httpx logs request URLs at INFO, and a Telegram URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
