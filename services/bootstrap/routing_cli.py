"""``switchboard routing check FILE``: is the routing file right, and what does it say?

Run it before the hub reads a changed file: every problem is one line ``file:line: field: what
is wrong`` (all of them at once, so one run finds every typo), and a good file is summed up the
way the router will read it (docs/routing.md).  Exit codes: 0 valid, 1 not, 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from services.bootstrap.cli_common import err

if TYPE_CHECKING:
    from services.router.config import RoutingConfig

routing_app = typer.Typer(
    help="Inbound routing: check the configuration.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True, highlight=False)


@routing_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="the routing file (YAML), e.g. routing.yaml")],
) -> None:
    """Check a routing file: every problem with its line, or a summary of a valid one."""
    # Imported here: `switchboard --help` does not pay for pydantic models it does not use.
    from services.router.config import RoutingConfigError, load_routing_config

    try:
        config = load_routing_config(file)
    except RoutingConfigError as e:
        for problem in e.problems:
            err.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(1) from None
    for line in summary(config, source=str(file)):
        out.print(escape(line))
    for warning in config.warnings():
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def summary(config: RoutingConfig, *, source: str) -> list[str]:
    """The file as the router reads it: queues with hours and zone, agents, rules in order."""
    width = max(map(len, [*config.queues, *config.agents]), default=0)
    lines = [f"{source}: valid", f"queues ({len(config.queues)}, default {config.default_queue}):"]
    for name, queue in config.queues.items():
        parts = [queue.hours_shown() + (f" ({queue.time_zone})" if queue.time_zone else "")]
        if queue.holidays:
            parts.append("closed " + ", ".join(d.isoformat() for d in queue.holidays))
        if queue.hours or queue.holidays:
            parts.append(f"after hours → {queue.after_hours.shown()}")
        if queue.overflow is not None:
            parts.append(f"overflow after {queue.overflow.after_s:g} s → {queue.overflow.shown()}")
        for key, values in (
            ("languages", queue.languages),
            ("skills", queue.skills),
            ("channels", queue.channels),
        ):
            if values:
                parts.append(f"{key} {', '.join(values)}")
        lines.append(f"  {name:<{width}}  {'; '.join(parts)}")
    lines.append(f"agents ({len(config.agents)}):")
    for name, agent in config.agents.items():
        parts = [f"queues {', '.join(agent.queues) or '(none)'}"]
        if agent.languages:
            parts.append(f"languages {', '.join(agent.languages)}")
        if agent.skills:
            parts.append(f"skills {', '.join(agent.skills)}")
        parts.append("capacity " + ", ".join(f"{c} {n}" for c, n in agent.capacity.items()))
        lines.append(f"  {name:<{width}}  {'; '.join(parts)}")
    lines.append(f"rules ({len(config.rules)}, the first that matches picks the queue):")
    for i, rule in enumerate(config.rules):
        conditions = [
            f"{key} {', '.join(values)}"
            for key, values in rule.when.model_dump(exclude_none=True).items()
        ]
        when = " and ".join(conditions) or "every contact"
        lines.append(f"  {i + 1}. {config.rule_name(i)}: {when} → {rule.queue}")
    affinity = (
        f"the last agent within {config.last_agent_hours:g} h"
        if config.last_agent_hours
        else "last-agent affinity off"
    )
    lines.append(f"no rule matched: the caller's language, else queue {config.default_queue}")
    lines.append(f"{affinity}; an offer rings {config.offer_timeout_s:g} s, then the next agent")
    if config.message_offer_timeout_s:
        lines.append(
            f"messages are offered: {config.message_offer_timeout_s:g} s to accept, "
            "then the next agent"
        )
    else:
        lines.append("messages are given to the agent at once (no offer)")
    return lines
