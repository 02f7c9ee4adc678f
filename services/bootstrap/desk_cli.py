"""``switchboard conversations|notes|files``: the agent desk from a shell.

Like ``switchboard users``, these work on the store directly (an operator's machine with
access to it).  What they change is recorded with who did it: ``--as USER`` (an active user
of the hub), else ``cli:<login name>``.
Exit codes: 0 ok, 1 refused (one line naming why), 2 usage error.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from services.bootstrap.access_cli import record_cli_read
from services.bootstrap.cli_common import AsUser, customer_of
from services.bootstrap.cli_common import actor as _actor
from services.bootstrap.cli_common import hub as _hub
from services.bootstrap.cli_common import one_line_errors as _one_line_errors

if TYPE_CHECKING:
    pass

conversations_app = typer.Typer(help="Conversations: list them, change their status.")
notes_app = typer.Typer(help="Notes on a customer or a conversation.")
files_app = typer.Typer(help="Files attached to a customer or a conversation.")
out = Console()
err = Console(stderr=True, soft_wrap=True)

CustomerOption = Annotated[UUID | None, typer.Option("--customer", help="a customer id")]
ConversationOption = Annotated[
    UUID | None, typer.Option("--conversation", help="a conversation id")
]


def _one_target(customer: UUID | None, conversation: UUID | None) -> dict[str, UUID]:
    if (customer is None) == (conversation is None):
        raise typer.BadParameter("give either --customer ID or --conversation ID")
    return {"customer_id": customer} if customer else {"conversation_id": conversation}  # type: ignore[dict-item]


@conversations_app.command("list")
def list_conversations(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
) -> None:
    """A customer's conversations, newest contact first."""
    hub = _hub()
    customer_id = customer_of(customer, hub)
    with _one_line_errors():
        conversations = hub.desk().conversations(customer_id)
    record_cli_read(hub, [customer_id], kind="conversations", what="switchboard conversations list")
    table = Table(title=f"customer {customer_id}")
    for column in ("conversation", "channel", "party", "status", "assignee", "last contact", "v"):
        table.add_column(column)
    for c in conversations:
        table.add_row(
            str(c.conversation_id),
            c.channel,
            c.party,
            str(c.status),
            c.assignee or "-",
            f"{c.last_contact_at:%Y-%m-%d %H:%M}",
            str(c.version),
        )
    out.print(table)
    if not conversations:
        out.print("(no conversations yet)")


@conversations_app.command("status")
def change_status(
    conversation_id: UUID,
    status: Annotated[str, typer.Argument(help="open, assigned, pending or resolved")],
    assignee: Annotated[str | None, typer.Option(help="the agent (for assigned)")] = None,
    reason: Annotated[str, typer.Option(help="why, for the history")] = "",
    expected_version: Annotated[
        int | None,
        typer.Option(help="refuse if the conversation is no longer at this version"),
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Assign, set pending, resolve or reopen a conversation."""
    from services.domain.desk import Status

    try:
        to = Status(status.strip().lower())
    except ValueError:
        raise typer.BadParameter(
            f"{status!r}: choose from {', '.join(Status)}", param_hint="STATUS"
        ) from None
    with _one_line_errors():
        hub = _hub()
        by = _actor(hub, as_user)
        desk = hub.desk()
        version = expected_version or desk.conversation(conversation_id).version
        changed = desk.change_status(
            conversation_id,
            to,
            by=by,
            assignee=assignee,
            reason=reason,
            expected_version=version,
        )
    who = f" ({changed.assignee})" if changed.assignee else ""
    out.print(f"conversation {conversation_id} is {changed.status}{who}, version {changed.version}")


@notes_app.command("add")
def add_note(
    text: Annotated[str, typer.Argument(help="the note")],
    customer: CustomerOption = None,
    conversation: ConversationOption = None,
    as_user: AsUser = None,
) -> None:
    """Add a note to a customer or a conversation."""
    target = _one_target(customer, conversation)
    with _one_line_errors():
        hub = _hub()
        note = hub.desk().add_note(text, by=_actor(hub, as_user), **target)
    out.print(f"note {note.note_id} added to customer {note.customer_id}")


@files_app.command("attach")
def attach_file(
    path: Annotated[Path, typer.Argument(help="the file", dir_okay=False)],
    customer: CustomerOption = None,
    conversation: ConversationOption = None,
    content_type: Annotated[
        str | None, typer.Option(help="its type (default: guessed from the name, then checked)")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Attach a file (its type is judged from its bytes, like the API does)."""
    target = _one_target(customer, conversation)
    try:
        data = path.read_bytes()
    except OSError as e:
        err.print(f"[red]error:[/red] cannot read {path}: {e.strerror or e}")
        raise typer.Exit(1) from None
    claimed = content_type or mimetypes.guess_type(path.name)[0]
    with _one_line_errors():
        hub = _hub()
        attached = hub.desk().attach_file(
            data, filename=path.name, content_type=claimed, by=_actor(hub, as_user), **target
        )
    out.print(
        f"attached {attached.filename} ({attached.content_type}, {attached.size} bytes) "
        f"to customer {attached.customer_id}: {attached.download_path}"
    )
