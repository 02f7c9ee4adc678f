"""``switchboard audit access``: who read which customer's data; and the CLI's own reads.

The commands that show a customer's data from the store directly (``switchboard lookup``,
``timeline``, ``customer show|search|duplicates``) record the read with ``record_cli_read``
before they print it, as ``cli:<login name>`` via ``cli``: if the access log cannot be
written, they print nothing (one line, exit status 1).  Querying the access log is itself a
read and is recorded the same way.
Exit codes: 0 ok, 1 refused (one line saying why), 2 usage error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated
from uuid import UUID, uuid4

import typer
from rich.console import Console
from rich.table import Table

from services.audit.access_log import AccessEntry, AccessLogUnavailable, open_access_log
from services.bootstrap.cli_common import actor, customer_of, fail
from services.bootstrap.cli_common import hub as _hub

if TYPE_CHECKING:
    from services.bootstrap.bootstrap import Hub

access_app = typer.Typer(help="Who read which customer's data (the access log).")
out = Console(soft_wrap=True)


def record_cli_read(
    hub: Hub,
    customers: Iterable[UUID | None],
    *,
    kind: str,
    what: str,
    target: str | None = None,
) -> None:
    """Record that this command shows the data of ``customers`` (none: it showed nobody's),
    before it shows it; a log that cannot be written ends the command (nothing shown)."""
    common = {
        "who": actor(hub, None),
        "via": "cli",
        "kind": kind,
        "what": what,
        "outcome": 200,
        "request_id": uuid4().hex,
        "target": target,
        "at": datetime.now(UTC),
    }
    unique = list(dict.fromkeys(c for c in customers if c is not None))
    entries = [AccessEntry(customer_id=c, **common) for c in unique] or [AccessEntry(**common)]
    log = open_access_log(hub.settings)
    try:
        log.append(entries)
    except AccessLogUnavailable as e:
        raise fail(f"{e}; nothing was shown (every read is logged first)") from None
    finally:
        log.close()


def _customer(text: str, hub: Hub) -> UUID:
    try:
        return UUID(text)  # reads of a customer stay in the log after it is gone
    except ValueError:
        return customer_of(text, hub)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--since {text!r}: use an ISO date or time, e.g. 2026-12-01T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@access_app.callback(invoke_without_command=True)
def access(
    customer: Annotated[
        str | None, typer.Option("--customer", help="a customer id or an address")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="a user name, or cli:<login name>")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="only reads at or after (ISO; UTC if no offset)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Reads of a customer's data (--customer), or a user's reads (--user): newest first."""
    if customer is None and user is None:
        raise typer.BadParameter("give --customer ID|ADDRESS or --user NAME (or both)")
    hub = _hub()
    customer_id = _customer(customer, hub) if customer is not None else None
    log = open_access_log(hub.settings)
    try:
        found = log.entries(customer_id=customer_id, who=user, since=_since(since), limit=limit)
    finally:
        log.close()
    record_cli_read(
        hub, [customer_id], kind="access_log", what="switchboard audit access", target=user
    )
    if as_json:
        for e in found:
            row = {k: v for k, v in vars(e).items() if k != "prev_hash"}
            row["at"] = e.at.isoformat()
            typer.echo(json.dumps(row, default=str))
        return
    table = Table(title="access log, newest first")
    # Narrow enough for 80 columns: the customer's id shortened (--json has it whole), and
    # how the read came (api, console, cli) beside who made it.
    # (the route or command read: --json)
    for column in ("seq", "at (UTC)", "who (via)", "customer", "kind", "status"):
        table.add_column(column, no_wrap=column != "who (via)")
    table.add_column("purpose / target")
    for e in found:
        table.add_row(
            str(e.seq),
            e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            f"{e.who} ({e.via})",
            f"{str(e.customer_id)[:8]}…" if e.customer_id else "-",
            e.kind,
            str(e.outcome),
            " / ".join(x for x in (e.purpose, e.target) if x) or "-",
        )
    out.print(table)
    if not found:
        out.print("(no reads recorded)")
