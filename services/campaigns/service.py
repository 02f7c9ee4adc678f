"""``CampaignService``: what a campaign manager does with a campaign, shared by the command
line (``switchboard campaign …``) and the API (``/v1/campaigns``).

Each command loads the campaign, lets the aggregate decide and saves atomically (a refusal
changes nothing); inputs are checked here before anything is recorded, and every refusal
is a ``SettingRefused`` naming the field, a ``CampaignNotReady`` listing what to change, or
the aggregate's ``InvalidTransition`` (a conflict with the campaign's state).

Starting plans the campaign at once (audience, consent, quiet hours, caps, templates): a
campaign that would send nothing is refused, and the plan is kept (``plans.PlanArchive``)
for the hub's campaigns service to run (``host.CampaignHost``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from contracts.errors import InputError
from projections.audience import AudienceRow, audience_rows
from projections.campaign_tracking import delivery_statuses, inbound_since
from projections.timeline import TimelineView
from services.campaigns.audience import (
    AudiencePreview,
    CsvAudience,
    RowError,
    Segment,
    parse_audience_csv,
    preview,
)
from services.campaigns.campaign import Campaign, CampaignNotReady, InvalidCampaignSetting
from services.campaigns.caps import LedgerContacts
from services.campaigns.funnel import MAX_POINTS, FunnelSeries, funnel_series
from services.campaigns.plan import Plan, Reachability, plan_campaign
from services.campaigns.plans import PlanArchive
from services.campaigns.recipients import PlannedSend, send_id
from services.campaigns.store import CampaignStore
from services.campaigns.templates import (
    ApprovedTemplate,
    ChannelTemplate,
    TemplateProblem,
    template_problems,
)
from services.campaigns.tracking import (
    ATTRIBUTION,
    CampaignSend,
    CampaignTracking,
    FunnelMoments,
    SentMessage,
    funnel_moments,
)
from services.history.ledger import OutboundLedger

__all__ = [
    "AudienceRefused",
    "CampaignPreview",
    "CampaignService",
    "PreviewRecipient",
    "SettingRefused",
    "plan_order",
]


# A window start a minute ago is "now" (the clock of the form), as the aggregate has it.
_GRACE = timedelta(minutes=1)


class SettingRefused(InputError):
    """A setting refused before anything was recorded; ``field`` names it (``segment``,
    ``body``, ``ends_at``, ``rate_limits.sms`` …)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


class AudienceRefused(InputError):
    """An uploaded list with rows that cannot be taken: the audience was left as it was."""

    def __init__(self, csv: CsvAudience) -> None:
        shown = "; ".join(str(e) for e in csv.errors[:5])
        more = f" (and {len(csv.errors) - 5} more)" if len(csv.errors) > 5 else ""
        super().__init__(
            f"the list has {len(csv.errors)} row(s) that cannot be taken, so the audience was "
            f"not changed: {shown}{more}; fix them (or remove them) and upload it again"
        )
        self.errors: list[RowError] = csv.errors
        self.csv = csv


class ProgressReader(Protocol):
    def __call__(self, campaign_id: UUID) -> int | None: ...


@dataclass(frozen=True)
class PreviewRecipient:
    customer_id: UUID
    channel: str
    address: str
    not_before: datetime
    body: str
    subject: str | None


@dataclass(frozen=True)
class CampaignPreview:
    audience: AudiencePreview  # who the segment matches
    sends: int
    skipped: dict[str, int]  # skip code -> recipients
    skip_reasons: dict[str, str]  # skip code -> one example reason
    sample: list[PreviewRecipient] = field(default_factory=list)

    @property
    def summary(self) -> str:
        skipped = ", ".join(f"{n} {code}" for code, n in sorted(self.skipped.items()))
        return (
            f"{self.audience.explanation}; {self.sends} to send, "
            f"{sum(self.skipped.values())} skipped ({skipped or 'none'})"
        )


def plan_order(send: PlannedSend) -> tuple[datetime, str, int]:
    """The order the runner takes sends in (by when they are due)."""
    return (send.not_before, str(send.customer_id), send.step)


class CampaignService:
    def __init__(
        self,
        *,
        store: CampaignStore,
        view: TimelineView,
        ledger: OutboundLedger,
        reachability: Reachability,
        plans: PlanArchive,
        default_region: str | None = None,
        progress: ProgressReader | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``progress``: how many of a campaign's commands are on the outbound topic (the
        runner's progress record), or None when it cannot be read; tracking shows it."""
        self.store = store
        self.view = view
        self.ledger = ledger
        self.reachability = reachability
        self.plans = plans
        self.default_region = default_region
        self.progress = progress
        self.clock = clock

    # -- creating and reading ------------------------------------------------------------

    def create(self, name: str, *, by: str, language: str = "en") -> Campaign:
        try:
            return self.store.create(name, by=by, language=language)
        except InvalidCampaignSetting as e:
            raise SettingRefused("name", e.reason) from None

    def get(self, campaign_id: UUID) -> Campaign:
        return self.store.get(campaign_id)

    def list(self) -> list[Campaign]:
        return self.store.list()

    # -- settings -------------------------------------------------------------------------

    def set_audience(
        self, campaign_id: UUID, segment: Segment, channels: list[str] | None = None
    ) -> AudiencePreview:
        """Who the campaign is for, and on which channels (None: the ones set before).
        Returns how many customers the segment matches now."""
        campaign = self.store.get(campaign_id)
        chosen = list(channels) if channels else list(campaign.channels)
        if not chosen:
            raise SettingRefused(
                "channels", "give the channels the campaign may use (sms, email, whatsapp, …)"
            )
        try:
            campaign.set_audience(segment, chosen)
        except InvalidCampaignSetting as e:
            raise SettingRefused("channels", e.reason) from None
        self.store.save(campaign)
        return preview(audience_rows(self.view), segment, sample=0)

    def set_audience_csv(
        self, campaign_id: UUID, text: str, channels: list[str] | None = None
    ) -> CsvAudience:
        """An explicit list (a CSV with a ``customer_id``, ``phone``, ``email`` or
        ``address`` column).  Any row that cannot be taken refuses the whole list
        (``AudienceRefused`` with every row's error): nothing is half-applied."""
        self.store.get(campaign_id)  # an unknown campaign is that, not a bad file
        listed = parse_audience_csv(
            text,
            find_customer=self.view.customer_for_address,
            customer_exists=lambda c: self.view.summary(c) is not None,
            default_region=self.default_region,
        )
        if listed.errors:
            raise AudienceRefused(listed)
        if not listed.customer_ids:
            raise SettingRefused("csv", "the list names no customer: nothing to send to")
        self.set_audience(campaign_id, Segment(customer_ids=listed.customer_ids), channels)
        return listed

    def set_template(
        self,
        campaign_id: UUID,
        channel: str,
        language: str,
        *,
        body: str = "",
        subject: str | None = None,
        approved: ApprovedTemplate | None = None,
    ) -> ChannelTemplate:
        """The message on one channel in one language.  A template with unknown fields or
        bad syntax is refused, naming them (the known fields are listed)."""
        template = ChannelTemplate(channel, language, body, subject=subject, approved=approved)
        problems = template_problems(template)
        if problems:
            raise SettingRefused("body", "; ".join(problems))
        campaign = self.store.get(campaign_id)
        try:
            campaign.set_template(template)
        except (InvalidCampaignSetting, TemplateProblem) as e:
            raise SettingRefused("channel", e.reason) from None
        self.store.save(campaign)
        return template

    def set_schedule(
        self,
        campaign_id: UUID,
        *,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        allowed_from: str | None = None,
        allowed_until: str | None = None,
        time_zone: str | None = None,
        rate_limits: dict[str, float] | None = None,
        fallback: bool | None = None,
        frequency_cap: tuple[int, int] | None = None,
    ) -> Campaign:
        """When and how fast it may send; what is not given stays as it was.  All of it is
        saved together, or nothing is."""
        campaign = self.store.get(campaign_id)
        now = self.clock()
        window = (starts_at, ends_at, allowed_from, allowed_until, time_zone)
        if any(v is not None for v in window):
            start = starts_at or campaign.starts_at or now
            end = ends_at or campaign.ends_at
            if end is None:
                raise SettingRefused("ends_at", "give when the schedule window ends")
            for name, moment in (("starts_at", start), ("ends_at", end)):
                if moment.tzinfo is None or moment.utcoffset() is None:
                    raise SettingRefused(name, f"{moment.isoformat()} has no time zone: give one")
            if end <= now:
                raise SettingRefused(
                    "ends_at",
                    f"the schedule window ends at {end.isoformat()}, in the past: "
                    "give an end in the future",
                )
            if starts_at is not None and campaign.state == "draft" and starts_at < now - _GRACE:
                raise SettingRefused(
                    "starts_at",
                    f"the schedule window starts at {starts_at.isoformat()}, in the past: "
                    "start it now or later",
                )
            hours = (
                allowed_from or campaign.allowed_hours[0],
                allowed_until or campaign.allowed_hours[1],
            )
            self._setting(
                "starts_at" if end > start else "ends_at",
                lambda: campaign.set_schedule_window(
                    start,
                    end,
                    allowed_from=hours[0],
                    allowed_until=hours[1],
                    time_zone=time_zone or campaign.time_zone,
                ),
            )
        if rate_limits is not None:
            bad = [c for c, r in rate_limits.items() if not r > 0]
            self._setting(
                f"rate_limits.{bad[0]}" if bad else "rate_limits",
                lambda: campaign.set_rate_limits(rate_limits),
            )
        if fallback is not None:
            self._setting("fallback", lambda: campaign.allow_fallback(fallback))
        if frequency_cap is not None:
            self._setting(
                "frequency_cap",
                lambda: campaign.set_frequency_cap(frequency_cap[0], period_days=frequency_cap[1]),
            )
        self.store.save(campaign)
        return campaign

    @staticmethod
    def _setting(name: str, change: Callable[[], Any]) -> None:
        try:
            change()
        except InvalidCampaignSetting as e:
            raise SettingRefused(name, e.reason) from None

    # -- preview and the life cycle -------------------------------------------------------

    def preview(self, campaign_id: UUID, *, sample: int = 10) -> CampaignPreview:
        """What starting now would do: how many the segment matches, how many would get a
        message (and on which channel, when, saying what, for ``sample`` of them), and the
        skips by reason.  Records nothing."""
        campaign = self.store.get(campaign_id)
        if campaign.segment_data is None:
            raise SettingRefused("segment", "no audience yet: set a segment or upload a list")
        plan, looked_at = self._plan(campaign, self.clock())
        return self._preview_of(campaign, plan, looked_at, sample)

    def start(self, campaign_id: UUID, *, by: str) -> CampaignPreview:
        """Check, plan and record the start; the hub's campaigns service then runs it.
        Refused (nothing recorded, nothing sent) for a final campaign, one with problems
        (no audience, a window in the past, a channel without a rate, a template with
        unknown fields …), or one whose plan would send nothing."""
        campaign = self.store.get(campaign_id)
        now = self.clock()
        if campaign.state == "draft":
            campaign.schedule(now=now, by=by)
        elif campaign.state == "scheduled":
            problems = campaign.problems(now=now, scheduling=False)
            if problems:
                raise CampaignNotReady("started", problems)
        else:
            campaign.start(now=now, by=by)  # the aggregate names the state it is in
        plan, looked_at = self._plan(campaign, now)
        result = self._preview_of(campaign, plan, looked_at, 0)
        if not plan.sends:
            raise CampaignNotReady("started", [_nothing_to_send(result)])
        campaign.start(now=now, by=by)
        self.plans.save(campaign.id, plan.sends)  # before the start is recorded: never without
        self.store.save(campaign)
        return result

    def pause(self, campaign_id: UUID, *, by: str, reason: str = "") -> Campaign:
        return self._step(campaign_id, lambda c: c.pause(by=by, reason=reason))

    def resume(self, campaign_id: UUID, *, by: str) -> Campaign:
        return self._step(campaign_id, lambda c: c.resume(by=by))

    def cancel(self, campaign_id: UUID, *, by: str, reason: str = "") -> Campaign:
        return self._step(campaign_id, lambda c: c.cancel(by=by, reason=reason))

    def _step(self, campaign_id: UUID, step: Callable[[Campaign], None]) -> Campaign:
        campaign = self.store.get(campaign_id)
        step(campaign)
        self.store.save(campaign)
        return campaign

    # -- planning (shared with the hub's campaigns service) ------------------------------

    def plan_to_run(self, campaign: Campaign) -> list[PlannedSend]:
        """The plan the runner is given: the one kept at the start, else planned again as of
        the start (and kept from now on)."""
        kept = self.plans.load(campaign.id)
        if kept is not None:
            return kept
        plan, _ = self._plan(campaign, campaign.started_at or self.clock())
        self.plans.save(campaign.id, plan.sends)
        return plan.sends

    def _plan(self, campaign: Campaign, now: datetime) -> tuple[Plan, int]:
        """The plan as of ``now``, sorted as the runner takes it, and how many customers
        were looked at."""
        # The campaign's own sends are no earlier contact: a plan made again after a
        # restart must not cap the customers it already reached.
        contacts = LedgerContacts(
            self.ledger,
            lambda since: [
                c for c in self.store.recent_campaigns(since) if c.campaign_id != campaign.id
            ],
        )
        looked_at = 0

        def counted() -> Iterator[AudienceRow]:
            nonlocal looked_at
            for row in audience_rows(self.view):
                looked_at += 1
                yield row

        _, plan = plan_campaign(
            campaign, counted(), reachability=self.reachability, contacts=contacts, now=now
        )
        plan.sends.sort(key=plan_order)
        return plan, looked_at

    def _preview_of(
        self, campaign: Campaign, plan: Plan, looked_at: int, sample: int
    ) -> CampaignPreview:
        matched = len(plan.sends) + len(plan.skips)
        if matched:
            audience = AudiencePreview(count=matched, sample=[], looked_at=looked_at)
        else:  # explain which condition empties it
            audience = preview(audience_rows(self.view), campaign.segment, sample=0)
        reasons: dict[str, str] = {}
        for skip in plan.skips:
            reasons.setdefault(skip.code, skip.reason)
        return CampaignPreview(
            audience=audience,
            sends=len(plan.sends),
            skipped=dict(plan.skipped_by_code()),
            skip_reasons=reasons,
            sample=[
                PreviewRecipient(
                    customer_id=s.customer_id,
                    channel=s.channel,
                    address=s.address,
                    not_before=s.not_before,
                    body=s.command.body
                    or (f"[template {s.command.template.name}]" if s.command.template else ""),
                    subject=s.command.subject,
                )
                for s in plan.sends[:sample]
            ],
        )

    # -- tracking -----------------------------------------------------------------------

    def tracking(self, campaign_id: UUID) -> CampaignTracking:
        """The campaign's funnel (``tracking`` says how each figure is counted), computed
        from the stores now."""
        campaign = self.store.get(campaign_id)
        if campaign.started_at is None:
            return CampaignTracking()
        produced = self.progress(campaign.id) if self.progress is not None else None
        return self._moments(campaign).figures(produced=produced)

    def funnel(self, campaign_id: UUID, *, max_points: int = MAX_POINTS) -> FunnelSeries:
        """The funnel over time, from the start to now (to the last thing that happened,
        once the campaign ended): the same figures as ``tracking``, bucketed."""
        campaign = self.store.get(campaign_id)
        if campaign.started_at is None:
            return FunnelSeries(queued=0, step=timedelta(minutes=1), points=[])
        end = campaign.ended_at or self.clock()
        return funnel_series(
            self._moments(campaign), start=campaign.started_at, end=end, max_points=max_points
        )

    def _moments(self, campaign: Campaign) -> FunnelMoments:
        sends = self._sends_of(campaign)
        ledger = self.ledger.outcomes(s.command_id for s in sends)
        # The fallbacks: step n only of recipients whose step n - 1 failed.
        failed = [
            s for s in sends if s.command_id in ledger and ledger[s.command_id].state == "failed"
        ]
        for step in range(1, campaign.steps):
            if not failed:
                break
            ids = {send_id(campaign.id, s.customer_id, step): s.customer_id for s in failed}
            found = self.ledger.outcomes(ids)
            more = [CampaignSend(ids[c], o.channel, c, step) for c, o in found.items()]
            ledger.update(found)
            sends += more
            failed = [s for s in more if found[s.command_id].state == "failed"]
        outcomes = {c: (o.state, o.at, o.provider_ref) for c, o in ledger.items()}
        statuses = delivery_statuses(
            self.view, (o.provider_ref for o in ledger.values() if o.provider_ref)
        )
        sent = {
            (s.customer_id, s.channel): ledger[s.command_id]
            for s in sends
            if s.command_id in ledger and ledger[s.command_id].state == "sent"
        }
        inbound = []
        messages = []
        if sent:
            first = min(o.at for o in sent.values())
            inbound = [
                r
                for r in inbound_since(self.view, {c for c, _ in sent}, first)
                if (r.customer_id, r.channel) in sent
            ]
            messages = [
                SentMessage(campaign.id, customer, channel, o.at)
                for (customer, channel), o in sent.items()
            ]
            answered = {r.customer_id for r in inbound}
            if answered:
                messages += self._other_campaigns_messages(campaign, answered, first)
        return funnel_moments(
            campaign.id,
            sends,
            outcomes=outcomes,
            statuses=statuses,
            inbound=inbound,
            campaign_messages=messages,
        )

    def _sends_of(self, campaign: Campaign) -> list[CampaignSend]:
        if not self.plans.has(campaign.id):
            return [
                CampaignSend(s.customer_id, s.channel, s.command.command_id)
                for s in self.plan_to_run(campaign)
            ]
        return [CampaignSend(*key) for key in self.plans.keys(campaign.id)]

    def _other_campaigns_messages(
        self, campaign: Campaign, customers: set[UUID], since: datetime
    ) -> list[SentMessage]:
        """Other campaigns' sends to ``customers`` that may have come between ours and an
        answer (for attribution)."""
        others = [
            c
            for c in self.store.recent_campaigns(since - ATTRIBUTION)
            if c.campaign_id != campaign.id
        ]
        ids = {
            send_id(c.campaign_id, customer, step): (c.campaign_id, customer)
            for c in others
            for customer in customers
            for step in range(c.steps)
        }
        found = []
        for command_id, outcome in self.ledger.outcomes(ids).items():
            if outcome.state == "sent":
                campaign_id, customer = ids[command_id]
                found.append(SentMessage(campaign_id, customer, outcome.channel, outcome.at))
        return found


def _nothing_to_send(preview: CampaignPreview) -> str:
    if not preview.audience.count:
        return preview.audience.explanation
    skipped = ", ".join(
        f"{n} {code} (e.g. {preview.skip_reasons.get(code, '')})"
        for code, n in sorted(preview.skipped.items())
    )
    return (
        f"nothing to send: all {preview.audience.count} matching customers are skipped: {skipped}"
    )
