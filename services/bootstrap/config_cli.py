"""``switchboard config check``: the configuration this machine's hub would run with.

Reads the settings as every service does (``SWITCHBOARD_*`` variables and ``*_FILE``
secrets), then the files they name (the routing file, the e-mail mailboxes), and prints the
effective values, one ``SWITCHBOARD_NAME=value`` per line, with every secret (and a password
in the store's URL) masked.  A mistake is one line per problem naming the variable; exit 1.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from contracts.errors import SwitchboardError
from services.bootstrap.cli_common import err
from services.bootstrap.settings import PREFIX, Settings, load_settings

MASK = "********"

config_app = typer.Typer(help="The hub's configuration.", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)


@config_app.command("check")
def check(
    show_unset: Annotated[
        bool, typer.Option("--all", help="also list the settings left unset")
    ] = False,
) -> None:
    """Validate the configuration and print it as the hub would use it (secrets masked)."""
    problems: list[str] = []
    try:
        settings = load_settings()
    except SwitchboardError as e:
        for problem in str(e).split("; "):
            err.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(1) from None
    problems += _files_problems(settings)
    for line in effective(settings, show_unset=show_unset):
        out.print(escape(line))
    for problem in problems:
        err.print(f"[red]error:[/red] {escape(problem)}")
    if problems:
        raise typer.Exit(1)


def effective(settings: Settings, *, show_unset: bool = False) -> list[str]:
    """``SWITCHBOARD_NAME=value`` per setting, sorted, secrets masked."""
    lines = []
    for name in sorted(Settings.model_fields):
        value = getattr(settings, name)
        if value is None and not show_unset:
            continue
        lines.append(f"{PREFIX}{name.upper()}={_shown(name, value)}")
    return lines


def _shown(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return MASK
    if name == "store" and isinstance(value, str):
        return _without_password(value)
    return str(value)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def _files_problems(settings: Settings) -> list[str]:
    """What the files the settings name say is wrong."""
    found = []
    if settings.routing_config is not None:
        from services.router.config import RoutingConfigError, load_routing_config

        try:
            load_routing_config(settings.routing_config)
        except RoutingConfigError as e:
            found += [f"{PREFIX}ROUTING_CONFIG: {p}" for p in e.problems]
        except OSError as e:
            found.append(f"{PREFIX}ROUTING_CONFIG: {e}")
    from services.bootstrap.channels import channel_configs

    try:
        channel_configs(settings)
    except (SwitchboardError, ValueError) as e:
        found.append(str(e))
    return found
