"""``switchboard users add|list|roles|disable|token|revoke``: who may use the API.

These commands work on the store directly (the operator's machine has access to it), like
``switchboard lookup``; the running API notices their changes within a second (README, Access).
Exit codes: 0 ok, 1 failure (one line naming what is wrong), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.bootstrap.cli_common import one_line_errors as _one_line_errors
from services.bootstrap.settings import load_settings

if TYPE_CHECKING:
    from services.history.users import IssuedToken, UserDirectory

users_app = typer.Typer(
    help="Users, roles and API tokens (on the store directly; admins use /v1/users too).",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

ROLES_HELP = "agent, supervisor, campaign_manager, auditor or admin; repeat for several"
RoleOption = Annotated[list[str], typer.Option("--role", "-r", help=ROLES_HELP)]

ADMIN = "admin"
DEMO_AGENT = "demo-agent"


def _directory() -> UserDirectory:
    from services.bootstrap.bootstrap import bootstrap

    return bootstrap(load_settings()).user_directory()


def _read_password(password_file: Path | None, prompt: bool) -> str | None:
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            err.print(f"[red]error:[/red] cannot read the password file {password_file}: {e}")
            raise typer.Exit(1) from None
    if prompt:
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return None


def print_token(issued: IssuedToken, *, quiet: bool = False) -> None:
    if quiet:
        typer.echo(issued.token)
        return
    out.print(
        f"API token for [bold]{issued.username}[/bold] (id {issued.token_id}; shown once, "
        "only its hash is stored):"
    )
    typer.echo(f"  {issued.token}")


@users_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="lower-case letters, digits, . _ @ -")],
    role: RoleOption,
    password_file: Annotated[
        Path | None, typer.Option(help="read the console password from this file")
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="prompt for a console password")
    ] = False,
    token: Annotated[bool, typer.Option("--token", help="also issue an API token")] = False,
) -> None:
    """Add a user with one or more roles (a password only for the console sign-in)."""
    secret = _read_password(password_file, password)
    with _one_line_errors():
        directory = _directory()
        user = directory.register(username, roles=role, password=secret)
        out.print(f"added user {user.username} with role(s) {', '.join(user.roles)}")
        if token:
            print_token(directory.issue_token(user.username))


@users_app.command("list")
def list_users() -> None:
    """Every user: roles, status, and the ids of its active tokens."""
    with _one_line_errors():
        users = _directory().users()
    table = Table()
    for column in ("user", "roles", "status", "tokens (id, issued)"):
        table.add_column(column)
    for user in users:
        tokens = "\n".join(
            f"{tid} {user.token_issued_at[tid]:%Y-%m-%d %H:%M}" for tid in user.tokens
        )
        status = "disabled" if user.disabled else "active"
        table.add_row(user.username, ", ".join(user.roles), status, tokens or "-")
    out.print(table)
    if not users:
        out.print("(no users: `switchboard users add NAME --role admin --token`)")


@users_app.command("roles")
def roles(username: str, role: RoleOption) -> None:
    """Replace a user's roles."""
    with _one_line_errors():
        user = _directory().change_roles(username, role)
    out.print(f"user {user.username} has role(s) {', '.join(user.roles)}")


@users_app.command("disable")
def disable(username: str) -> None:
    """Disable a user: all its tokens stop working (within a second in a running API)."""
    with _one_line_errors():
        user = _directory().disable(username)
    out.print(f"user {user.username} is disabled")


@users_app.command("token")
def token(
    username: str,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print the token only")] = False,
) -> None:
    """Issue a new API token for a user; it is printed once."""
    with _one_line_errors():
        issued = _directory().issue_token(username)
    print_token(issued, quiet=quiet)


@users_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id (see `switchboard users list`)")],
) -> None:
    """Revoke one API token by its id (within a second in a running API)."""
    with _one_line_errors():
        user = _directory().revoke_token(token_id)
    out.print(f"token {token_id} of {user.username} is revoked")


def first_sign_in(directory: UserDirectory, *, demo: bool) -> list[IssuedToken]:
    """On a store without an active admin: the ``admin`` user and its token (and, for a
    demo, a ``demo-agent`` and its token), so that nobody is locked out of a new hub."""
    issued: list[IssuedToken] = []
    if not directory.has_active_admin() and directory.find(ADMIN) is None:
        directory.register(ADMIN, roles=[ADMIN])
        issued.append(directory.issue_token(ADMIN))
    if demo and directory.find(DEMO_AGENT) is None:
        directory.register(DEMO_AGENT, roles=["agent"])
        issued.append(directory.issue_token(DEMO_AGENT))
    return issued


def print_sign_in(issued: list[IssuedToken], *, directory: UserDirectory, api_url: str) -> None:
    for new in issued:
        print_token(new)
    if issued:
        example = issued[-1].token
        out.print("use it on the API (the console will sign in with it too):")
        typer.echo(
            f'  curl -H "Authorization: Bearer {example}" '
            f"'{api_url}/v1/lookup?address=%2B493050000000'"
        )
    elif not directory.has_active_admin():
        out.print(
            "[yellow]no active admin user[/yellow]: add one with "
            "`switchboard users add NAME --role admin --token`"
        )
    else:
        out.print("API tokens: `switchboard users token admin` issues a new one (README, Access)")
