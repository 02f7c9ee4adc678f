"""A campaign plan as a file: one ``PlannedSend`` per JSON line, in the order to send.

The runner process (``runner_main``) reads its plan from such a file; the file is the
deterministic order a restarted runner relies on, so it is written once and never edited.
``PlanFile`` reads it again on every iteration instead of holding it in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from uuid import UUID

from pydantic import ValidationError

from contracts import SendMessage
from contracts.errors import InputError
from services.campaigns.recipients import PlannedSend


def dump_planned(send: PlannedSend) -> str:
    """One line of JSON (without the newline)."""
    return json.dumps(
        {
            "campaign_id": str(send.campaign_id),
            "customer_id": str(send.customer_id),
            "step": send.step,
            "channel": send.channel,
            "address": send.address,
            "not_before": send.not_before.isoformat(),
            "command": send.command.model_dump(mode="json"),
        },
        separators=(",", ":"),
    )


def load_planned(line: str | bytes) -> PlannedSend:
    try:
        data = json.loads(line)
        not_before = datetime.fromisoformat(data["not_before"])
        if not_before.tzinfo is None:
            raise ValueError("not_before has no time zone")
        return PlannedSend(
            campaign_id=UUID(data["campaign_id"]),
            customer_id=UUID(data["customer_id"]),
            step=int(data["step"]),
            channel=str(data["channel"]),
            address=str(data["address"]),
            not_before=not_before,
            command=SendMessage.model_validate(data["command"]),
        )
    except ValidationError as e:
        raise InputError(f"not a valid command: {e.errors()[0]['msg']}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a planned send: {type(e).__name__}: {e}") from None


def write_plan(path: Path, sends: Iterable[PlannedSend]) -> int:
    """Write the plan file; returns how many sends it holds."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for send in sends:
            out.write(dump_planned(send))
            out.write("\n")
            count += 1
    return count


class PlanFile:
    """A re-iterable plan read from ``path`` (each iteration reads the file again)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __iter__(self) -> Iterator[PlannedSend]:
        with open(self.path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    yield load_planned(line)
                except InputError as e:
                    raise InputError(f"{self.path}:{number}: {e.reason}") from None


__all__ = ["PlanFile", "dump_planned", "load_planned", "write_plan"]
