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
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from contracts import SendMessage
from contracts.errors import InputError
from services.campaigns.recipients import FallbackRoute, PlannedSend


def dump_planned(send: PlannedSend) -> str:
    """One line of JSON (without the newline)."""
    line = {
        "campaign_id": str(send.campaign_id),
        "customer_id": str(send.customer_id),
        "step": send.step,
        "channel": send.channel,
        "address": send.address,
        "not_before": send.not_before.isoformat(),
        "command": send.command.model_dump(mode="json"),
    }
    if send.route is not None:
        line["fallback"] = _dump_route(send.route)
    return json.dumps(line, separators=(",", ":"))


def _dump_route(route: FallbackRoute) -> dict[str, Any]:
    return {
        "options": [list(option) for option in route.options],
        "addresses": list(route.addresses),
        "profile": dict(route.profile),
        "last_inbound_at": {k: v.isoformat() for k, v in route.last_inbound_at.items()},
    }


def _load_route(data: dict[str, Any] | None) -> FallbackRoute | None:
    """A plan line's fallback route; lines written before routes were kept have none (no
    fallback for them)."""
    if not data:
        return None
    inbound = {str(k): datetime.fromisoformat(v) for k, v in data["last_inbound_at"].items()}
    if any(at.tzinfo is None for at in inbound.values()):
        raise ValueError("a last inbound time has no time zone")
    return FallbackRoute(
        options=tuple((str(c), str(a)) for c, a in data["options"]),
        addresses=tuple(str(a) for a in data["addresses"]),
        profile=dict(data["profile"]),
        last_inbound_at=inbound,
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
            route=_load_route(data.get("fallback")),
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
