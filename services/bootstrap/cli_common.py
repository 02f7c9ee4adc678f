"""What the ``switchboard`` subcommands share: one line per refusal, who acts, which customer."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer
from rich.console import Console

from contracts.errors import SwitchboardError
from services.bootstrap.settings import load_settings

if TYPE_CHECKING:
    from services.bootstrap.bootstrap import Hub

err = Console(stderr=True, soft_wrap=True)

AsUser = Annotated[
    str | None,
    typer.Option("--as", help="record the change as this user (default: cli:<login name>)"),
]


def hub() -> Hub:
    # Imported when a command needs the hub: `switchboard --help` stays quick.
    from services.bootstrap.bootstrap import bootstrap

    return bootstrap(load_settings())


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """An error of ours is one line and exit status 1, never a traceback."""
    try:
        yield
    except SwitchboardError as e:
        raise fail(str(e)) from None


def actor(hub: Hub, name: str | None) -> str:
    """Who a change is recorded as: an active user of the hub, else ``cli:<login name>``."""
    if name is None:
        return f"cli:{getpass.getuser()}"
    with one_line_errors():
        user = hub.user_directory().user(name)
    if user.disabled:
        raise fail(f"user {user.username!r} is disabled")
    return user.username


def customer_of(text: str, hub: Hub) -> UUID:
    """A customer id, or an address whose customer is meant (one line when there is none, or
    when several customers share it)."""
    from contracts import AddressError, parse_any_address

    try:
        customer_id = UUID(text)
    except ValueError:
        pass
    else:
        from services.history.customers import CustomerNotFound
        from services.history.sealing import CustomerErased

        try:  # the system of record, not a view that may be catching up
            hub.history(cached=False).get_customer(customer_id)
        except CustomerErased:
            raise fail(f"customer {customer_id} was erased: nothing of them can be read") from None
        except CustomerNotFound:
            raise fail(
                f"no customer {customer_id} (try an address: switchboard lookup +4930…)"
            ) from None
        return customer_id
    try:
        address = parse_any_address(text, default_region=hub.settings.default_region)
    except AddressError as e:
        raise fail(f"{e} (give a customer id or an address)") from None
    found = hub.timeline_view().lookup(address)
    if found.card is None:
        raise fail(f"no customer has the address {address}")
    if found.candidates:
        ids = ", ".join(str(c.card.customer_id) for c in found.candidates)
        raise fail(f"{address} is shared by several customers ({ids}): give a customer id")
    return found.card.customer_id
