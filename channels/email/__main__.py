"""Run e-mail ingestion alone: ``python -m channels.email ingest --config email.json``.

For operators who run each channel as its own process, and for the tests that SIGKILL it. The
hub's own CLI (``switchboard serve``) wires the same ``EmailIngestion`` from its settings. The
config file is JSON::

    {"bootstrap": "127.0.0.1:19092", "topic": "sb.interactions.v1",
     "deadletter_topic": "sb.deadletter.v1", "data_dir": "var",
     "mailboxes": [{"name": "support", "host": "imap.example.com", "user": "support@example.com",
                    "password_file": "/run/secrets/imap"}],
     "limits": {}, "timing": {"idle_refresh_s": 300}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from channels.email.config import ImapMailbox, ImapTiming, MailLimits
from channels.email.inbound import EmailIngestion


def ingestion_from_file(path: Path) -> EmailIngestion:
    config = json.loads(path.read_text(encoding="utf-8"))
    return EmailIngestion(
        [ImapMailbox.from_mapping(m) for m in config["mailboxes"]],
        bootstrap=config["bootstrap"],
        topic=config["topic"],
        deadletter_topic=config["deadletter_topic"],
        data_dir=Path(config["data_dir"]),
        limits=MailLimits(**config.get("limits", {})),
        timing=ImapTiming(**config.get("timing", {})),
    )


async def _serve(ingestion: EmailIngestion) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await ingestion.run(stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m channels.email")
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="read the configured mailboxes into Kafka")
    ingest.add_argument("--config", type=Path, required=True)
    ingest.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_serve(ingestion_from_file(args.config)))


if __name__ == "__main__":
    main()
