"""``switchboard audit replay``: a customer as of any moment (services/audit/replay.py)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from services.bootstrap.access_cli import record_cli_read
from services.bootstrap.cli_common import customer_of, err, fail, hub

out = Console()


def replay_command(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="a moment with its time zone (2026-12-01T10:00:00+00:00, or …Z), or the "
            "customer's stream version (a whole number)",
        ),
    ],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """The customer's state, card and timeline exactly as they were then, merges included."""
    from services.audit.replay import NotYetACustomer, UnknownVersion, moment_of_version, replay
    from services.gateway.customers_api import card_out

    the_hub = hub()
    customer_id = customer_of(customer, the_hub)
    record_cli_read(the_hub, [customer_id], kind="replay", what="switchboard audit replay")
    history = the_hub.history(cached=False)
    try:
        moment = (
            moment_of_version(history, customer_id, int(as_of))
            if as_of.isdigit()
            else _moment(as_of)
        )
    except UnknownVersion as e:
        raise fail(str(e)) from None
    with Progress(
        TextColumn("replaying the store"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("events", total=None)
        try:
            found = replay(
                history,
                customer_id,
                moment,
                limit=limit,
                progress=lambda at, last: bar.update(task, completed=at, total=last),
            )
        except NotYetACustomer as e:
            raise fail(f"{e.args[0]} (its history starts later)") from None
    card = card_out(found.card).model_dump(mode="json") if found.card is not None else None
    timeline = [
        {
            "occurred_at": e.occurred_at.isoformat(),
            "channel": e.channel,
            "direction": e.direction,
            "type": e.type,
            "summary": e.summary,
            "provider_ref": e.provider_ref,
        }
        for e in found.timeline
    ]
    if as_json:
        document: dict[str, Any] = {
            "customer_id": str(found.customer_id),
            "as_of": found.as_of.isoformat(),
            "version": found.version,
            "state": found.state,
            "card": card,
            "timeline": timeline,
            "events_replayed": found.events_replayed,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    out.print(
        f"customer {found.customer_id} as of {found.as_of.isoformat()} (version {found.version}; "
        f"{found.events_replayed} stored events replayed)"
    )
    state = found.state
    if state.get("merged_into"):
        out.print(f"merged into {state['merged_into']} at that moment")
    out.print(f"addresses: {', '.join(state.get('addresses', [])) or '-'}")
    if state.get("profile"):
        out.print("profile: " + ", ".join(f"{k}={v}" for k, v in state["profile"].items()))
    if state.get("consent"):
        out.print("consent: " + ", ".join(f"{k}={v}" for k, v in state["consent"].items()))
    if card is not None and card.get("merged"):
        out.print(f"showing the histories of {', '.join(card['merged'])} too (merged)")
    table = Table(title="timeline then (newest first)")
    for col in ("when (UTC)", "channel", "dir", "type", "summary"):
        table.add_column(col)
    for e in found.timeline:
        table.add_row(
            e.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.channel,
            e.direction[:3],
            e.type,
            e.summary,
        )
    out.print(table)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(
            f"--as-of {text!r} is neither a moment (2026-12-01T10:00:00+00:00) nor a version"
        ) from None
    if moment.tzinfo is None:
        raise fail(f"--as-of {text!r} has no time zone: add +00:00 (UTC) or your offset")
    return moment


def export_command(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="write the JSON here (default: stdout)")
    ] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="also write the readable page here")
    ] = None,
) -> None:
    """Subject access: everything held about the person, as JSON (and a readable HTML page)."""
    from services.audit.export import render_html, subject_access

    the_hub = hub()
    customer_id = customer_of(customer, the_hub)
    record_cli_read(the_hub, [customer_id], kind="export", what="switchboard audit export")
    document = subject_access(the_hub.history(cached=False), the_hub.timeline_view(), customer_id)
    text = json.dumps(document, indent=2) + "\n"
    try:
        if out_file is None:
            sys.stdout.write(text)
        else:
            out_file.write_text(text)
        if html_file is not None:
            html_file.write_text(render_html(document))
    except OSError as e:
        raise fail(f"cannot write {e.filename}: {e.strerror}") from None
    if out_file is not None or html_file is not None:
        written = " and ".join(str(p) for p in (out_file, html_file) if p is not None)
        err.print(
            f"exported {len(document['events'])} events and {len(document['timeline'])} "
            f"timeline entries of {customer_id} to {written}"
        )
