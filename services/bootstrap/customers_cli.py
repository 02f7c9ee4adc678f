"""``switchboard customer show|search|edit|link|merge|unmerge|duplicates|dismiss``.

These work on the store directly, like ``switchboard lookup`` (the operator's machine has access
to it); a running hub's view shows the change within milliseconds.  Every decision is an event
in the customer's history naming who made it (``--as USER``, default ``cli:<login name>``).
Exit codes: 0 ok, 1 refused (one line saying why and what to do), 2 usage error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console

from services.bootstrap.access_cli import record_cli_read
from services.bootstrap.cli_common import AsUser, customer_of
from services.bootstrap.cli_common import actor as _actor
from services.bootstrap.cli_common import fail as _fail
from services.bootstrap.cli_common import hub as _hub
from services.bootstrap.cli_common import one_line_errors as _one_line_errors

if TYPE_CHECKING:
    pass

customer_app = typer.Typer(
    help="One customer: the card, profile edits, linked addresses, merges and duplicates.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Reason = Annotated[str, typer.Option("--reason", help="why (kept with the event)")]


def _print_json(model: Any) -> None:
    out.print_json(model.model_dump_json() if hasattr(model, "model_dump_json") else model)


@customer_app.command("show")
def show(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
) -> None:
    """The customer card (JSON): profile, addresses, consent, last contacts."""
    from services.gateway.customers_api import card_out

    hub = _hub()
    view = hub.timeline_view()
    card = view.card(customer_of(customer, hub))
    if card is None:
        raise _fail(f"no customer {customer}")
    record_cli_read(hub, [card.customer_id], kind="card", what="switchboard customer show")
    _print_json(card_out(card))


@customer_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="an address or name, or its beginning")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Customers by address or name prefix, one line each."""
    hub = _hub()
    cards = hub.timeline_view().search(text, limit=limit)
    shown = [c.customer_id for c in cards]
    record_cli_read(hub, shown, kind="search", what="switchboard customer search")
    if not cards:
        out.print(f"no customer matches {text!r}")
        return
    for card in cards:
        name = card.profile.get("name") or "(no name)"
        addresses = ", ".join(card.addresses)
        out.print(f"{card.customer_id}  {name}  {addresses}  ({card.contact_count} contacts)")


@customer_app.command("edit")
def edit(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
    expected_version: Annotated[
        int,
        typer.Option(
            "--expected-version",
            help="the profile_version you saw (customer show); another edit since then is refused",
        ),
    ],
    name: Annotated[str | None, typer.Option()] = None,
    tier: Annotated[str | None, typer.Option()] = None,
    language: Annotated[str | None, typer.Option(help="e.g. de, pt-BR")] = None,
    time_zone: Annotated[str | None, typer.Option(help="e.g. Europe/Berlin")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="repeat for several; replaces the tags")
    ] = None,
    preferred_channel: Annotated[str | None, typer.Option()] = None,
    clear: Annotated[
        list[str] | None, typer.Option(help="a field to clear; repeat for several")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Edit the profile (an event naming who did it)."""
    from services.gateway.customers_api import ProfileEdit

    fields: dict[str, Any] = {
        k: v
        for k, v in {
            "name": name,
            "tier": tier,
            "language": language,
            "time_zone": time_zone,
            "tags": tag,
            "preferred_channel": preferred_channel,
        }.items()
        if v is not None
    }
    for field in clear or []:
        fields[field] = None
    if not fields:
        raise _fail("nothing to change: give --name, --tier, --language, … or --clear FIELD")
    try:
        profile = ProfileEdit(expected_version=expected_version, **fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _fail(f"--{where.replace('_', '-')}: {first['msg']}") from None
    hub = _hub()
    cid = customer_of(customer, hub)
    with _one_line_errors():
        changed = hub.history(cached=False).edit_profile(
            cid, profile.changes(), by=_actor(hub, as_user), expected_version=expected_version
        )
    out.print(f"customer {cid}: profile version {changed.profile_version}")
    out.print_json(json.dumps(changed.profile))


@customer_app.command("link")
def link(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
    address: Annotated[str, typer.Argument(help="the address to link (phone, e-mail, telegram:…)")],
    reason: Reason,
    shared: Annotated[
        bool, typer.Option(help="a number several customers use (a family landline)")
    ] = False,
    as_user: AsUser = None,
) -> None:
    """Link an address: later contacts from it are recorded on this customer."""
    from contracts import AddressError, parse_any_address

    hub = _hub()
    try:
        normalized = parse_any_address(address, default_region=hub.settings.default_region)
    except AddressError as e:
        raise _fail(str(e)) from None
    cid = customer_of(customer, hub)
    with _one_line_errors():
        hub.history(cached=False).link_address(
            cid, normalized, by=_actor(hub, as_user), reason=reason, shared=shared
        )
    out.print(f"linked {normalized} to customer {cid}" + (" (shared)" if shared else ""))


@customer_app.command("merge")
def merge(
    survivor: Annotated[str, typer.Argument(help="the customer that stays (id or address)")],
    absorbed: Annotated[
        str, typer.Argument(help="the same person's other customer (id or address)")
    ],
    reason: Reason,
    as_user: AsUser = None,
) -> None:
    """Merge two customers into one person (undo with `customer unmerge`)."""
    hub = _hub()
    view = hub.timeline_view()
    keep = customer_of(survivor, hub)
    other = customer_of(absorbed, hub)
    if keep == other:
        raise _fail("both name the same customer: nothing to merge")
    from services.gateway.customers_api import merge_evidence

    evidence = merge_evidence(view, keep, other)
    with _one_line_errors():
        _, gone = hub.history(cached=False).merge(
            keep, other, by=_actor(hub, as_user), reason=reason, evidence=evidence
        )
    out.print(
        f"merged customer {other} into {keep}; {', '.join(gone.addresses)} now lead to {keep} "
        f"(undo: switchboard customer unmerge {keep} {other} --reason …)"
    )


@customer_app.command("unmerge")
def unmerge(
    survivor: Annotated[
        str, typer.Argument(help="the customer it was merged into (id or address)")
    ],
    absorbed: Annotated[
        str, typer.Argument(help="the customer to restore: its id, or an address it had")
    ],
    reason: Reason,
    as_user: AsUser = None,
) -> None:
    """Undo a merge: both stand alone again, with their own addresses and histories."""
    from contracts import AddressError, identity_of, parse_any_address

    hub = _hub()
    keep = customer_of(survivor, hub)
    history = hub.history(cached=False)
    try:
        other = UUID(absorbed)
    except ValueError:
        # Its addresses lead to the survivor now: find the merged customer that had it.
        try:
            address = parse_any_address(absorbed, default_region=hub.settings.default_region)
        except AddressError as e:
            raise _fail(f"{e} (give the merged customer's id or an address it had)") from None
        with _one_line_errors():
            merged = history.get_customer(keep).absorbed
        had = [
            UUID(cid)
            for cid, m in merged.items()
            if identity_of(address) in {identity_of(a) for a in m["addresses"]}
        ]
        if not had:
            raise _fail(f"no customer merged into {keep} had the address {address}") from None
        (other,) = had
    with _one_line_errors():
        _, restored, moved = history.unmerge(keep, other, by=_actor(hub, as_user), reason=reason)
    out.print(
        f"customer {other} restored with {', '.join(restored.addresses)}; "
        f"{len(moved)} contact(s) recorded since the merge went back with them"
    )


@customer_app.command("duplicates")
def duplicates(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
) -> None:
    """Customers that may be the same person, best first, with the evidence."""
    hub = _hub()
    view = hub.timeline_view()
    cid = customer_of(customer, hub)
    suggestions = view.duplicates(cid)
    shown = [cid, *(s.customer_id for s in suggestions)]
    record_cli_read(hub, shown, kind="duplicates", what="switchboard customer duplicates")
    if not suggestions:
        out.print("no likely duplicates")
        return
    for s in suggestions:
        name = s.card.profile.get("name") or "(no name)"
        out.print(f"{s.customer_id}  {s.score:.2f}  {name}  {', '.join(s.card.addresses)}")
        for reason in s.reasons:
            out.print(f"    {reason}")


@customer_app.command("dismiss")
def dismiss(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
    other: Annotated[str, typer.Argument(help="the suggested duplicate (id)")],
    reason: Reason,
    as_user: AsUser = None,
) -> None:
    """Say a suggested duplicate is someone else."""
    hub = _hub()
    cid = customer_of(customer, hub)
    other_id = customer_of(other, hub)
    by = _actor(hub, as_user)
    with _one_line_errors():
        hub.history(cached=False).dismiss_duplicate(cid, other_id, by=by, reason=reason)
    out.print(f"{other_id} is no longer suggested as a duplicate of {cid}")


@customer_app.command("erase")
def erase(
    customer: Annotated[str, typer.Argument(help="a customer id or an address")],
    basis: Annotated[
        str,
        typer.Option(
            "--basis",
            help="the legal basis: consent-withdrawn, no-longer-necessary, objection, "
            "unlawful, legal-obligation, child, or other:<your words>",
        ),
    ],
    reason: Reason,
    as_user: Annotated[
        str | None,
        typer.Option("--as", help="the admin user erasing (required: kept with the erasure)"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase a person's personal data (GDPR Art. 17): their key is deleted, so their events
    keep only what names no one; the views and their files are purged; the erasure (who,
    when, basis, reason) stays as the audit trail. A customer merged with others is erased
    with them (one person). This cannot be undone."""
    from services.audit.erasure import BASES, erase_person
    from services.history.customers import AlreadyErased
    from services.history.sealing import CustomerErased

    if basis not in BASES and not (basis.startswith("other:") and basis[6:].strip()):
        raise _fail(f"unknown basis {basis!r}: use one of {', '.join(BASES)}, or other:<words>")
    if not reason.strip():
        raise _fail("say why (--reason): it is kept with the erasure")
    hub = _hub()
    if as_user is None:
        raise _fail("an erasure needs --as USER naming an admin (see switchboard users list)")
    by = _actor(hub, as_user)
    if "admin" not in hub.user_directory().user(by).roles:
        raise _fail(f"user {by!r} is not an admin: only an admin may erase")
    try:
        cid = UUID(customer)
    except ValueError:
        cid = customer_of(customer, hub)
    if not yes and not typer.confirm(
        f"Erase customer {cid} and everyone merged with them? This cannot be undone."
    ):
        raise typer.Exit(1)
    try:
        with _one_line_errors():
            done = erase_person(hub, cid, by=by, basis=basis, reason=reason)
    except (AlreadyErased, CustomerErased):
        raise _fail(f"customer {cid} was erased already") from None
    group = done.erasure.group
    out.print(
        f"erased customer {group[0]}"
        + (
            f" and {len(group) - 1} merged into it ({', '.join(map(str, group[1:]))})"
            if len(group) > 1
            else ""
        )
        + f"; {len(done.files_removed)} file(s) removed"
        + (
            f", {len(done.files_kept)} kept (another person's history has them)"
            if done.files_kept
            else ""
        )
        + ". A contact from their addresses now starts a new customer."
    )
    if done.plans_running:
        out.print(
            "still in the plan of running campaign(s) "
            + ", ".join(repr(n) for n in done.plans_running)
            + ": their send there is refused (no consent left); erase again once the campaign "
            "has ended to take them out of its plan"
        )
