"""Run one campaign's plan in this process: ``python -m services.campaigns.runner_main``.

    python -m services.campaigns.runner_main --bootstrap 127.0.0.1:19092 \\
        --campaign-file plan.jsonl [--control-file state.txt] [--rate sms=1/s --rate email=600/min]

The plan is a JSON-lines file of planned sends (``recipients_io``), sorted by ``not_before``;
the campaign is the one its sends name.  The control file holds the campaign's state as one
word (running, paused, cancelled); a missing or empty file means running.  Progress goes to
stdout as ``progress <produced>/<total>``, and the summary as one JSON line at the end.
Exit status: 0 done, 3 cancelled, 4 stopped by SIGTERM/SIGINT (what was produced is
committed), 1 for an error.  The topics must exist (``ensure_topics`` creates them).

This is the process a kill test runs; the hub will run ``CampaignRunner`` itself, with the
campaign's control read from the campaign store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from uuid import UUID

from contracts.errors import SwitchboardError
from contracts.topics import CAMPAIGN_PROGRESS_TOPIC, OUTBOUND_TOPIC
from services.campaigns.limits import RateLimits
from services.campaigns.recipients import CampaignState, PlannedSend
from services.campaigns.recipients_io import PlanFile
from services.campaigns.runner import CampaignRunner, RunnerKafka

EXIT_CODES = {"done": 0, "cancelled": 3, "stopped": 4}
_STATES = ("draft", "scheduled", "running", "paused", "completed", "cancelled")


class FileControl:
    """A campaign's state read from a file holding one word; missing or empty: running."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def state(self, campaign_id: UUID) -> CampaignState:
        if self.path is None:
            return "running"
        try:
            word = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return "running"
        if not word:
            return "running"
        if word not in _STATES:
            raise SwitchboardError(f"{self.path}: {word!r} is not a campaign state")
        return word  # type: ignore[return-value]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--campaign-file", type=Path, required=True, help="the plan (JSON lines)")
    parser.add_argument("--control-file", type=Path, default=None)
    parser.add_argument("--outbound-topic", default=OUTBOUND_TOPIC)
    parser.add_argument("--progress-topic", default=CAMPAIGN_PROGRESS_TOPIC)
    parser.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="KEY=RATE",
        help="a limit per channel (sms=1/s) or sender (sender:+14155550100=1/s); repeatable",
    )
    parser.add_argument(
        "--sender",
        action="append",
        default=[],
        metavar="CHANNEL=SENDER",
        help="the sender a channel sends from, for sender limits (sms=+14155550100)",
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-seconds", type=float, default=0.1)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SwitchboardError(f"{what} {item!r}: write it as KEY=VALUE")
        pairs[key] = value
    return pairs


def _campaign_of(plan: list[PlannedSend], path: Path) -> UUID:
    if not plan:
        raise SwitchboardError(f"{path} holds no planned send")
    return plan[0].campaign_id


async def run(args: argparse.Namespace) -> str:
    # Parsed once and held (about 1-2 KB a send): the runner goes over its plan once per
    # channel, and parsing is what costs at start-up.
    plan = list(PlanFile(args.campaign_file))
    limits = RateLimits.parse(
        _pairs(args.rate, "--rate"), sender_of=_pairs(args.sender, "--sender")
    )
    runner = CampaignRunner(
        _campaign_of(plan, args.campaign_file),
        plan,
        control=FileControl(args.control_file),
        limits=limits,
        kafka=RunnerKafka(
            bootstrap=args.bootstrap,
            outbound_topic=args.outbound_topic,
            progress_topic=args.progress_topic,
            batch_size=args.batch_size,
            batch_seconds=args.batch_seconds,
        ),
        on_progress=lambda produced, total: print(f"progress {produced}/{total}", flush=True),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    summary = await runner.run(stop)
    print(
        json.dumps(
            {
                "campaign_id": str(summary.campaign_id),
                "outcome": summary.outcome,
                "produced": summary.produced,
                "total": summary.total,
                "produced_by_this_run": summary.produced_by_this_run,
                "transactions": summary.transactions,
                "seconds": round(summary.seconds, 3),
            }
        ),
        flush=True,
    )
    return summary.outcome


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        outcome = asyncio.run(run(args))
    except SwitchboardError as e:
        print(f"campaign runner: {e}", file=sys.stderr)
        return 1
    return EXIT_CODES[outcome]


if __name__ == "__main__":
    sys.exit(main())
