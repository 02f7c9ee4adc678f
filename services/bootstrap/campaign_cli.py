"""``switchboard campaign create|audience|template|schedule|preview|start|pause|resume|cancel|
list|status``: a campaign manager's work from a shell.

Like ``switchboard customer …`` these work on the store directly (the operator's machine has
access to it); a running hub's campaigns service picks a started campaign up within a second
and runs it.  Every change names who made it (``--as USER``, default ``cli:<login name>``).
A campaign is named by its id or by its name.  Exit codes: 0 ok, 1 refused (one line saying
why and what to do), 2 usage error.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console

from services.bootstrap.cli_common import AsUser
from services.bootstrap.cli_common import actor as _actor
from services.bootstrap.cli_common import fail as _fail
from services.bootstrap.cli_common import one_line_errors as _one_line_errors
from services.bootstrap.settings import load_settings

if TYPE_CHECKING:
    from services.bootstrap.bootstrap import Hub
    from services.campaigns.campaign import Campaign
    from services.campaigns.service import CampaignService
    from services.campaigns.tracking import CampaignTracking

campaign_app = typer.Typer(
    help="Outbound campaigns: audience, templates, schedule, preview, start, tracking.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)

CampaignArg = Annotated[str, typer.Argument(help="the campaign's id or name")]
Channels = Annotated[
    list[str] | None,
    typer.Option("--channel", help="a channel it may use (sms, email, whatsapp, …); repeatable"),
]
_DURATION = re.compile(r"^\+(\d+(?:\.\d+)?)(m|h|d)$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _service() -> tuple[Hub, CampaignService]:
    """The hub's campaign operations; Kafka (for the runner's progress in ``status``) is the
    local broker ``switchboard up`` runs unless SWITCHBOARD_KAFKA_BOOTSTRAP says otherwise."""
    from services.bootstrap.bootstrap import bootstrap

    settings = load_settings()
    if not settings.kafka_bootstrap:
        local = f"127.0.0.1:{settings.local_kafka_port}"
        settings = settings.model_copy(update={"kafka_bootstrap": local})
    hub = bootstrap(settings)
    return hub, hub.campaign_service()


def _campaign_id(text: str, service: CampaignService) -> UUID:
    """An id, or the name of exactly one campaign (case-insensitive)."""
    try:
        return UUID(text)
    except ValueError:
        pass
    with _one_line_errors():
        found = [c for c in service.list() if c.name.casefold() == text.strip().casefold()]
    if not found:
        raise _fail(f"no campaign named {text!r} (switchboard campaign list shows them)")
    if len(found) > 1:
        ids = ", ".join(str(c.id) for c in found)
        raise _fail(f"several campaigns are named {text!r} ({ids}): give its id")
    return found[0].id


def _moment(text: str, option: str, now: datetime) -> datetime:
    """``now``, ``+30m``/``+2h``/``+7d`` from now, or an ISO time with its zone."""
    if text == "now":
        return now
    relative = _DURATION.match(text)
    if relative:
        return now + timedelta(**{_UNITS[relative[2]]: float(relative[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(
            f"{option} {text!r}: give now, +30m, +2h, +7d or a time such as 2026-05-04T09:00+02:00"
        ) from None
    if moment.tzinfo is None:
        raise _fail(f"{option} {text!r} has no time zone: add one (2026-05-04T09:00+02:00 or Z)")
    return moment


def _rates(items: list[str]) -> dict[str, float]:
    """``sms=5`` (a second), ``sms=300/min``, ``email=10000/h``."""
    from services.campaigns.limits import Rate

    rates: dict[str, float] = {}
    for item in items:
        channel, sep, value = item.partition("=")
        if not sep or not channel:
            raise _fail(f"--rate {item!r}: write it as CHANNEL=RATE, e.g. sms=5 or sms=300/min")
        try:
            rates[channel] = float(value)
        except ValueError:
            with _one_line_errors():
                rates[channel] = Rate.parse(value).per_second
    return rates


def _done(message: str) -> None:
    out.print(message)


def _setting_errors(e: ValidationError) -> typer.Exit:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return _fail(f"--{where.replace('_', '-')}: {first['msg']}")


@campaign_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="what to call it")],
    language: Annotated[
        str, typer.Option(help="its language: the templates' default (e.g. en, de)")
    ] = "en",
    as_user: AsUser = None,
) -> None:
    """Create a campaign (a draft); prints its id."""
    hub, service = _service()
    with _one_line_errors():
        campaign = service.create(name, by=_actor(hub, as_user), language=language)
    _done(f"campaign {campaign.id} {campaign.name!r} created (draft)")


@campaign_app.command("audience")
def audience(
    campaign: CampaignArg,
    channel: Channels = None,
    tag: Annotated[list[str] | None, typer.Option(help="has this tag; repeatable (all)")] = None,
    tier: Annotated[list[str] | None, typer.Option(help="one of these tiers; repeatable")] = None,
    speaks: Annotated[
        list[str] | None, typer.Option(help="the profile's language is one of these")
    ] = None,
    reachable_on: Annotated[
        list[str] | None, typer.Option(help="has an address on one of these channels")
    ] = None,
    last_contact_before: Annotated[str | None, typer.Option(help="ISO time or -30d")] = None,
    last_contact_after: Annotated[str | None, typer.Option(help="ISO time or -30d")] = None,
    customer: Annotated[
        list[str] | None, typer.Option(help="an explicit customer id; repeatable")
    ] = None,
    address: Annotated[
        list[str] | None, typer.Option(help="an explicit address (any channel); repeatable")
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(
            help="a CSV list with a customer_id, phone, email or address column; any bad row "
            "refuses the whole list",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Who the campaign is for: a segment (all conditions hold) or a CSV list."""
    from services.campaigns.audience import Segment

    _, service = _service()
    cid = _campaign_id(campaign, service)
    if csv is not None:
        if any((tag, tier, speaks, reachable_on, customer, address)):
            raise _fail("--csv is the whole audience: leave out the segment options")
        with _one_line_errors():
            listed = service.set_audience_csv(cid, csv.read_text(encoding="utf-8"), channel)
        _done(f"campaign {cid}: audience set from {csv.name}: {listed.summary}")
        return
    now = datetime.now(UTC)

    def since(text: str | None, option: str) -> datetime | None:
        if text is None:
            return None
        if text.startswith("-"):
            return now - (_moment("+" + text[1:], option, now) - now)
        return _moment(text, option, now)

    try:
        segment = Segment(
            tags=tag or [],
            tiers=tier or [],
            languages=speaks or [],
            reachable_on=reachable_on or [],  # type: ignore[arg-type]
            last_contact_before=since(last_contact_before, "--last-contact-before"),
            last_contact_after=since(last_contact_after, "--last-contact-after"),
            customer_ids=customer or [],  # type: ignore[arg-type]
            addresses=address or [],
        )
    except ValidationError as e:
        raise _setting_errors(e) from None
    with _one_line_errors():
        matched = service.set_audience(cid, segment, channel)
    _done(f"campaign {cid}: audience set; {matched.explanation}")


@campaign_app.command("template")
def template(
    campaign: CampaignArg,
    channel: Annotated[str, typer.Argument(help="sms, email, whatsapp, messenger, telegram")],
    language: Annotated[str, typer.Argument(help="the recipients' language, e.g. en")],
    body: Annotated[
        str | None,
        typer.Option(help="the text, with fields such as {{ first_name | default('there') }}"),
    ] = None,
    body_file: Annotated[
        Path | None, typer.Option(help="the text from a file", exists=True, dir_okay=False)
    ] = None,
    subject: Annotated[str | None, typer.Option(help="e-mail only")] = None,
    approved: Annotated[
        str | None, typer.Option(help="WhatsApp: the provider-approved template's name")
    ] = None,
    approved_language: Annotated[
        str | None, typer.Option(help="WhatsApp: its language code, e.g. en_US")
    ] = None,
    parameter: Annotated[
        list[str] | None, typer.Option(help="WhatsApp: a body parameter (a field); repeatable")
    ] = None,
) -> None:
    """Set the message of one channel and language (fields: name, first_name, tier,
    language, channel, address, customer_id, campaign)."""
    from services.campaigns.templates import ApprovedTemplate

    if body is not None and body_file is not None:
        raise _fail("give --body or --body-file, not both")
    text = body_file.read_text(encoding="utf-8") if body_file is not None else body or ""
    approved_template = None
    if approved is not None:
        approved_template = ApprovedTemplate(
            approved, approved_language or language, tuple(parameter or ())
        )
    _, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        service.set_template(
            cid, channel, language, body=text, subject=subject, approved=approved_template
        )
    _done(f"campaign {cid}: {channel} template ({language}) set")


@campaign_app.command("schedule")
def schedule(
    campaign: CampaignArg,
    start: Annotated[
        str | None, typer.Option(help="when it may start sending: now, +2h, or an ISO time")
    ] = None,
    end: Annotated[str | None, typer.Option(help="when it must stop: +7d, or an ISO time")] = None,
    allowed_hours: Annotated[
        str | None,
        typer.Option(help="the recipients' local hours it may send in, e.g. 08:00-21:00"),
    ] = None,
    time_zone: Annotated[
        str | None, typer.Option(help="for recipients whose zone nothing tells (Europe/Berlin)")
    ] = None,
    rate: Annotated[
        list[str] | None,
        typer.Option(help="a channel's rate limit: sms=5 (a second) or sms=300/min; repeatable"),
    ] = None,
    fallback: Annotated[
        bool | None, typer.Option("--fallback/--no-fallback", help="try the next channel")
    ] = None,
    cap: Annotated[
        str | None,
        typer.Option(help="frequency cap across campaigns: MAX/DAYS, e.g. 2/7"),
    ] = None,
) -> None:
    """When and how fast it may send: window, quiet hours, rate limits, fallback, cap."""
    now = datetime.now(UTC)
    starts = _moment(start, "--start", now) if start else None
    ends = _moment(end, "--end", starts or now) if end else None
    hours: tuple[str | None, str | None] = (None, None)
    if allowed_hours is not None:
        first, sep, last = allowed_hours.partition("-")
        if not sep:
            raise _fail(f"--allowed-hours {allowed_hours!r}: write it as HH:MM-HH:MM")
        hours = (first.strip(), last.strip())
    frequency = None
    if cap is not None:
        count, sep, days = cap.partition("/")
        if not (sep and count.isdigit() and days.isdigit()):
            raise _fail(f"--cap {cap!r}: write it as MAX/DAYS, e.g. 2/7")
        frequency = (int(count), int(days))
    rates = _rates(rate) if rate else None
    _, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        saved = service.set_schedule(
            cid,
            starts_at=starts,
            ends_at=ends,
            allowed_from=hours[0],
            allowed_until=hours[1],
            time_zone=time_zone,
            rate_limits=rates,
            fallback=fallback,
            frequency_cap=frequency,
        )
    _done(f"campaign {cid}: {_settings_line(saved)}")


@campaign_app.command("preview")
def preview(
    campaign: CampaignArg,
    sample: Annotated[int, typer.Option(min=0, max=100, help="recipients to show")] = 5,
) -> None:
    """What starting now would do: who, on which channel, when, saying what; skips."""
    _, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        found = service.preview(cid, sample=sample)
    out.print(found.summary)
    for code, n in sorted(found.skipped.items()):
        out.print(f"  skipped {n} {code}: e.g. {found.skip_reasons[code]}")
    for r in found.sample:
        when = r.not_before.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        subject = f" [{r.subject}]" if r.subject else ""
        out.print(f"  {r.channel:<9} {r.address:<28} {when}  {subject}{r.body!r}", markup=False)


@campaign_app.command("start")
def start(campaign: CampaignArg, as_user: AsUser = None) -> None:
    """Check and plan the campaign and record its start; the running hub sends it."""
    hub, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        planned = service.start(cid, by=_actor(hub, as_user))
    _done(
        f"campaign {cid} started: {planned.summary}. The hub's campaigns service sends it "
        f"(switchboard campaign status {cid})"
    )


@campaign_app.command("pause")
def pause(
    campaign: CampaignArg,
    reason: Annotated[str, typer.Option(help="why (kept with the event)")] = "",
    as_user: AsUser = None,
) -> None:
    """Stop sending for now (within a second); resume continues where it stopped."""
    hub, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        service.pause(cid, by=_actor(hub, as_user), reason=reason)
    _done(f"campaign {cid} paused")


@campaign_app.command("resume")
def resume(campaign: CampaignArg, as_user: AsUser = None) -> None:
    """Go on sending a paused campaign."""
    hub, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        service.resume(cid, by=_actor(hub, as_user))
    _done(f"campaign {cid} resumed")


@campaign_app.command("cancel")
def cancel(
    campaign: CampaignArg,
    reason: Annotated[str, typer.Option(help="why (kept with the event)")] = "",
    as_user: AsUser = None,
) -> None:
    """End the campaign for good: nothing more is sent."""
    hub, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        service.cancel(cid, by=_actor(hub, as_user), reason=reason)
    _done(f"campaign {cid} cancelled")


@campaign_app.command("list")
def list_campaigns() -> None:
    """Every campaign: id, state, name, channels."""
    _, service = _service()
    with _one_line_errors():
        campaigns = service.list()
    if not campaigns:
        out.print("no campaigns yet (switchboard campaign create NAME)")
        return
    for c in campaigns:
        out.print(f"{c.id}  {c.state:<9}  {c.name}  ({', '.join(c.channels) or 'no audience'})")


@campaign_app.command("status")
def status(
    campaign: CampaignArg,
    as_json: Annotated[bool, typer.Option("--json", help="as JSON")] = False,
) -> None:
    """State, settings and the funnel: queued → sent → delivered → replied; failed, opted out."""
    _, service = _service()
    cid = _campaign_id(campaign, service)
    with _one_line_errors():
        found = service.get(cid)
        figures = service.tracking(cid)
    if as_json:
        out.print_json(json.dumps(_status_data(found, figures), default=str))
        return
    out.print(f"{found.name}  [{found.state}]  {found.id}", markup=False)
    out.print(f"  {_settings_line(found)}", markup=False)
    for line in funnel_lines(figures):
        out.print(f"  {line}", markup=False)


def funnel_lines(figures: CampaignTracking, width: int = 30) -> list[str]:
    """The funnel as text bars, each against the queued sends."""
    total = figures.queued
    rows: list[tuple[str, int | None]] = [
        ("queued", figures.queued),
        ("produced", figures.produced),
        ("sent", figures.sent),
        ("delivered", figures.delivered),
        ("replied", figures.replied),
        ("failed", figures.failed),
        ("opted out", figures.opted_out),
    ]
    lines = []
    for label, n in rows:
        if n is None:
            lines.append(f"{label:<10} {'?':>6}  (the progress on Kafka was not readable)")
            continue
        share = n / total if total else 0.0
        bar = "█" * round(share * width)
        lines.append(f"{label:<10} {n:>6}  {bar:<{width}} {share:>4.0%}")
    return lines


def _settings_line(c: Campaign) -> str:
    window = (
        f"{c.starts_at:%Y-%m-%d %H:%M %Z} → {c.ends_at:%Y-%m-%d %H:%M %Z}"
        if c.starts_at and c.ends_at
        else "no window"
    )
    rates = ", ".join(f"{ch} {r:g}/s" for ch, r in c.rate_limits.items()) or "no rate limits"
    cap, days = c.cap_setting
    return (
        f"channels {', '.join(c.channels) or '-'}; templates "
        f"{', '.join(sorted(c.template_data)) or '-'}; window {window}; hours "
        f"{c.allowed_hours[0]}-{c.allowed_hours[1]} ({c.time_zone}); {rates}; fallback "
        f"{'on' if c.fallback_allowed else 'off'}; cap {cap} in {days} days"
    )


def _status_data(c: Campaign, figures: CampaignTracking) -> dict[str, Any]:
    return {
        "campaign_id": str(c.id),
        "name": c.name,
        "state": c.state,
        "channels": c.channels,
        "tracking": figures.as_dict(),
    }
