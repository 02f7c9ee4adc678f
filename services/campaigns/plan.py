"""The planner: for each customer of a campaign's audience, one planned send or a skip with
its reason.  Pure decision code: values in (the campaign, the directory's rows, reachability
rankings, past marketing contacts, now), values out; the runner does the sending.

For one customer, in this order:

1. The segment: customers it does not match are not in the plan at all.
2. The channel: the customer's ``preferred_channel`` if the campaign uses it, it is not
   known unreachable and the customer opted in to marketing there; otherwise the best such
   channel in the reachability ranking; channels the ranking says nothing about come last,
   in the campaign's order.  A channel needs an address (the customer's own, else the one
   reachability found) and a marketing opt-in (``services.domain.outbound_policy``).
3. When: the schedule window's start or now, whichever is later, moved to the recipient's
   allowed hours (``quiet_hours``); a skip if the window closes first.
4. The frequency cap across campaigns at that moment (``caps``).
5. The message: the template of the channel in the customer's language (else the campaign's);
   WhatsApp outside the 24-hour window (with ``WHATSAPP_MARGIN`` to spare: the runner may
   send a little after ``not_before``) sends the approved template.  A template that cannot
   be rendered for this customer moves on to the next channel; none left is a skip.

A skip has a ``code`` (for counting) and a ``reason`` (for people).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from channels.social.window import within_service_window
from contracts import Channel, SendMessage
from contracts.addresses import normalize_party
from contracts.errors import InputError
from contracts.text import HeaderText, Text
from projections.audience import AudienceRow
from services.campaigns.audience import address_on
from services.campaigns.campaign import Campaign
from services.campaigns.caps import MarketingContacts, cap_refusal
from services.campaigns.quiet_hours import next_allowed, recipient_zones
from services.campaigns.recipients import FallbackRoute, PlannedSend, send_id
from services.campaigns.templates import CompiledTemplate, compile_template
from services.domain.outbound_policy import consent_refusal

__all__ = [
    "WHATSAPP_MARGIN",
    "CampaignPlanner",
    "ChannelReachLike",
    "Plan",
    "Reachability",
    "Skip",
    "plan_campaign",
]

PURPOSE = "marketing"
# The rendered parts of a message, validated as ``SendMessage`` would (the address is not:
# see _send_message).
_BODY: TypeAdapter[str] = TypeAdapter(Text)
_SUBJECT: TypeAdapter[str] = TypeAdapter(HeaderText)
WHATSAPP_MARGIN = timedelta(hours=1)
SkipCode = Literal["no_consent", "no_channel", "window_closed", "capped", "template"]
_NO_RANKING: tuple = ()


class ChannelReachLike(Protocol):
    """One channel of a customer as the reachability view ranks it (best first)."""

    channel: str
    address: str | None
    reachable: bool
    score: float
    reasons: tuple[str, ...]


class Reachability(Protocol):
    def rankings(
        self, customer_ids: Sequence[UUID]
    ) -> Mapping[UUID, Sequence[ChannelReachLike]]: ...


@dataclass(frozen=True, slots=True)
class Skip:
    customer_id: UUID
    code: SkipCode
    reason: str


@dataclass
class Plan:
    campaign_id: UUID
    sends: list[PlannedSend] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    def skipped_by_code(self) -> Counter[str]:
        return Counter(s.code for s in self.skips)

    @property
    def summary(self) -> str:
        by_code = ", ".join(f"{code} {n}" for code, n in sorted(self.skipped_by_code().items()))
        return f"{len(self.sends)} to send, {len(self.skips)} skipped ({by_code or 'none'})"


# What a fallback needs of the customer's profile (templates, time zone): kept in the plan.
_ROUTE_PROFILE = ("name", "tier", "language", "time_zone")


class CampaignPlanner:
    """Plans one campaign as of ``now``.  When the campaign allows fallback, each planned
    send carries its customer's remaining channels (``PlannedSend.route``, kept in the plan
    file) so that ``fallback`` can name the next one, in this planner or in one made later
    from the campaign alone (the fallback follower, after a restart)."""

    def __init__(self, campaign: Campaign, *, now: datetime) -> None:
        self.campaign_id = campaign.id
        self.now = now
        self._name = campaign.name
        self._language = campaign.language
        self._channels = tuple(campaign.channels)
        self._fallback = campaign.fallback_allowed
        self._matches = campaign.segment.matcher()
        self._hours = campaign.quiet_hours
        self._zone = campaign.default_zone
        self._cap = campaign.frequency_cap
        self._start = campaign.starts_at or now
        self._end = campaign.ends_at
        self._requested_by = f"campaign:{campaign.id}"
        self._templates: dict[str, CompiledTemplate] = {}
        self._broken: dict[str, str] = {}
        for key, template in campaign.templates.items():
            try:
                self._templates[key] = compile_template(template)
            except InputError as e:
                self._broken[key] = e.reason

    # -- planning -----------------------------------------------------------------------------

    def plan(
        self,
        rows: Iterable[AudienceRow],
        rankings: Mapping[UUID, Sequence[ChannelReachLike]],
        contacts: Mapping[UUID, Sequence[datetime]],
        *,
        matched: bool = False,
    ) -> Plan:
        """The plan for the rows the campaign's segment matches (``matched``: all of them,
        the caller filtered them already)."""
        plan = Plan(self.campaign_id)
        sends, skips = plan.sends, plan.skips
        matches = self._matches
        for row in rows:
            if not matched and not matches(row):
                continue
            outcome = self.plan_one(
                row, rankings.get(row.customer_id, _NO_RANKING), contacts.get(row.customer_id)
            )
            (sends if type(outcome) is PlannedSend else skips).append(outcome)  # type: ignore[arg-type]
        return plan

    def plan_one(
        self,
        row: AudienceRow,
        ranking: Sequence[ChannelReachLike],
        contacts: Sequence[datetime] | None,
    ) -> PlannedSend | Skip:
        cid = row.customer_id
        options, refused, unreachable = self._options(row, ranking)
        if not options:
            if refused:
                return Skip(cid, "no_consent", "; ".join(refused))
            return Skip(
                cid,
                "no_channel",
                f"no reachable channel among {', '.join(self._channels)}"
                + (f" ({'; '.join(unreachable)})" if unreachable else ""),
            )
        zones = recipient_zones(row.profile.get("time_zone"), row.addresses, self._zone)
        start = self._start if self._start > self.now else self.now
        not_before = next_allowed(
            start, zones, hours=self._hours, window_start=None, window_end=self._end
        )
        if not_before is None:
            return Skip(
                cid,
                "window_closed",
                f"the schedule window closes ({self._end.isoformat() if self._end else '?'}) "
                f"before quiet hours allow a message in {', '.join(map(str, zones))}",
            )
        if contacts:
            capped = cap_refusal(contacts, not_before, self._cap)
            if capped is not None:
                return Skip(cid, "capped", capped)
        failures = []
        for i, (channel, address) in enumerate(options):
            rest = options[i + 1 :] if self._fallback else ()
            route = _route(row, rest) if rest else None
            planned = self._planned(row, channel, address, 0, not_before, route)
            if isinstance(planned, PlannedSend):
                return planned
            failures.append(planned)
        return Skip(cid, "template", "; ".join(failures))

    def fallback(
        self, planned: PlannedSend, failed_channel: str, *, now: datetime | None = None
    ) -> PlannedSend | None:
        """The next send (step + 1) on the customer's next channel after ``failed_channel``
        failed for good (at ``now``), if the campaign allows fallback; else None.  Depends
        on the planned send and its route only, so it names the same send every time."""
        route = planned.route
        if not self._fallback or route is None:
            return None
        at = max(now or self.now, planned.not_before)
        zones = recipient_zones(route.profile.get("time_zone"), route.addresses, self._zone)
        not_before = next_allowed(at, zones, hours=self._hours, window_end=self._end)
        if not_before is None:
            return None
        row = AudienceRow(
            customer_id=planned.customer_id,
            addresses=route.addresses,
            profile=dict(route.profile),
            consent={},  # checked when planned, and again by the dispatcher at send time
            last_contact_at=None,
            last_inbound_at=dict(route.last_inbound_at),
        )
        for channel, address in route.after(failed_channel):
            nxt = self._planned(row, channel, address, planned.step + 1, not_before, route)
            if isinstance(nxt, PlannedSend):
                return nxt
        return None

    # -- one customer's decisions -------------------------------------------------------------

    def _options(
        self, row: AudienceRow, ranking: Sequence[ChannelReachLike]
    ) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        channels = self._channels
        reach = {r.channel: r for r in ranking}
        order: list[str] = []
        preferred = row.profile.get("preferred_channel")
        if preferred in channels:
            order.append(preferred)
        order += [r.channel for r in ranking if r.channel in channels and r.channel not in order]
        order += [c for c in channels if c not in reach and c not in order]
        options, refused, unreachable = [], [], []
        for channel in order:
            r = reach.get(channel)
            if r is not None and not r.reachable:
                unreachable.append(f"{channel}: {', '.join(r.reasons) or 'unreachable'}")
                continue
            address = address_on(row.addresses, channel)
            if address is None and r is not None and r.address:
                try:
                    address = normalize_party(channel, r.address)
                except InputError:
                    address = None
            if address is None:
                unreachable.append(f"{channel}: no address")
                continue
            refusal = consent_refusal(channel=channel, purpose=PURPOSE, consent=row.consent)
            if refusal is not None:
                refused.append(refusal)
                continue
            options.append((channel, address))
        return options, refused, unreachable

    def _template(self, channel: str, language: str | None) -> CompiledTemplate | str:
        for lang in (language, self._language):
            key = f"{channel}:{lang}"
            if key in self._templates:
                return self._templates[key]
        key = f"{channel}:{self._language}"
        return self._broken.get(key, f"no {channel} template in {language or self._language}")

    def _planned(
        self,
        row: AudienceRow,
        channel: str,
        address: str,
        step: int,
        not_before: datetime,
        route: FallbackRoute | None = None,
    ) -> PlannedSend | str:
        """The send on ``channel``, or why this channel's message cannot be made."""
        profile = row.profile
        compiled = self._template(channel, profile.get("language"))
        if isinstance(compiled, str):
            return compiled
        fields = {
            "customer_id": str(row.customer_id),
            "campaign": self._name,
            "channel": channel,
            "address": address,
        }
        for key in ("name", "tier", "language"):
            value = profile.get(key)
            if value:
                fields[key] = str(value)
        if "name" in fields:
            fields["first_name"] = fields["name"].split()[0]
        approved = False
        if channel == Channel.whatsapp:
            last_in = row.last_inbound_at.get("whatsapp")
            in_window = within_service_window(last_in, not_before + WHATSAPP_MARGIN)
            approved = not in_window or not compiled.has_body
            if approved and compiled.template.approved is None:
                return (
                    "outside WhatsApp's 24-hour window only an approved template may be sent, "
                    f"and the whatsapp template ({compiled.template.language}) names none"
                )
        try:
            rendered = compiled.render(fields, approved=approved)
        except InputError as e:
            return f"{channel}: {e.reason}"
        try:
            command = _send_message(
                command_id=send_id(self.campaign_id, row.customer_id, step),
                requested_at=self.now,
                channel=Channel(channel),
                to=address,
                purpose=PURPOSE,
                body=_BODY.validate_python(rendered.body),
                subject=None
                if rendered.subject is None
                else _SUBJECT.validate_python(rendered.subject),
                template=rendered.template,
                requested_by=self._requested_by,
            )
        except ValidationError as e:  # a subject with a line break, say
            problem = e.errors()[0]
            return f"{channel}: {problem['msg']}"
        return PlannedSend(
            campaign_id=self.campaign_id,
            customer_id=row.customer_id,
            step=step,
            channel=channel,
            address=command.to,
            not_before=not_before,
            command=command,
            route=route,
        )


def _route(row: AudienceRow, options: Sequence[tuple[str, str]]) -> FallbackRoute:
    whatsapp = row.last_inbound_at.get("whatsapp")
    return FallbackRoute(
        options=tuple(options),
        addresses=row.addresses,
        profile={k: row.profile[k] for k in _ROUTE_PROFILE if row.profile.get(k)},
        last_inbound_at={"whatsapp": whatsapp} if whatsapp else {},
    )


def _send_message(**fields: object) -> SendMessage:
    """A ``SendMessage`` from parts already valid: the directory's addresses were normalized
    when they were recorded (and reachability's are normalized here), the rendered text was
    validated above.  ``SendMessage(...)`` would normalize the address once more: a phone
    number costs ~80 µs to parse, 8 s of a 100 000-recipient plan."""
    # Every field given: model_construct's defaults inspect their factories' signatures on
    # every call (~1 ms).
    return SendMessage.model_construct(  # type: ignore[arg-type]
        type="message.send.v1", in_reply_to=None, references=[], thread_ref=None, **fields
    )


def plan_campaign(
    campaign: Campaign,
    rows: Iterable[AudienceRow],
    *,
    reachability: Reachability,
    contacts: MarketingContacts,
    now: datetime,
    batch: int = 5_000,
) -> tuple[CampaignPlanner, Plan]:
    """Plan a campaign over a stream of directory rows (``projections.audience``), asking
    reachability and the past contacts a batch of customers at a time.  Returns the planner
    too: its ``fallback`` names the next channel after a send failed for good."""
    planner = CampaignPlanner(campaign, now=now)
    plan = Plan(campaign.id)
    matches = campaign.segment.matcher()
    since = now - campaign.frequency_cap.period
    pending: list[AudienceRow] = []

    def flush() -> None:
        ids = [r.customer_id for r in pending]
        part = planner.plan(pending, reachability.rankings(ids), contacts(ids, since), matched=True)
        plan.sends += part.sends
        plan.skips += part.skips
        pending.clear()

    for row in rows:
        if matches(row):
            pending.append(row)
            if len(pending) >= batch:
                flush()
    if pending:
        flush()
    return planner, plan
