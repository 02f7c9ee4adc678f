"""Where a started campaign's plan is kept: one plan file per campaign (``recipients_io``).

The runner continues a campaign by position in its plan (``runner.py``), so a runner started
again — after a restart of the hub, a pause, a crash — must be given the same sends in the
same order.  Planning again would not give them: customers join, opt out or write in the
meantime.  So the plan made when the campaign started is written here and read back by
every later run.  Without the file (another machine runs the campaigns service, the data
directory was lost) the campaign is planned again as of its start time; the runner refuses
to continue if that plan's size differs (``PlanError``), and says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

from services.campaigns.recipients import PlannedSend
from services.campaigns.recipients_io import PlanFile, write_plan

__all__ = ["PlanArchive"]


class PlanArchive:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, campaign_id: UUID) -> Path:
        return self.directory / f"{campaign_id}.plan.jsonl"

    def has(self, campaign_id: UUID) -> bool:
        return self.path(campaign_id).exists()

    def load(self, campaign_id: UUID) -> list[PlannedSend] | None:
        """The campaign's plan, parsed and held (the runner reads it once per channel)."""
        if not self.has(campaign_id):
            return None
        return list(PlanFile(self.path(campaign_id)))

    def save(self, campaign_id: UUID, sends: list[PlannedSend]) -> None:
        """Write the plan whole or not at all (a temporary file renamed into place)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(campaign_id)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        write_plan(partial, sends)
        os.replace(partial, path)

    def keys(self, campaign_id: UUID) -> Iterator[tuple[UUID, str, str]]:
        """(customer, channel, command id) of each send, without parsing whole commands:
        what tracking needs."""
        with open(self.path(campaign_id), encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    data = json.loads(line)
                    yield UUID(data["customer_id"]), data["channel"], data["command"]["command_id"]
