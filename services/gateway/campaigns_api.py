"""Campaigns over HTTP (``/v1/campaigns``; campaign managers and admins, see ``roles.py``).

The same operations as ``switchboard campaign …`` (``services.campaigns.service``): a
setting that cannot be taken answers 422 naming the field (an uploaded list: each row), a
step the campaign's state does not allow 409, an unknown campaign 404.  The store work is
synchronous, so the handlers are plain ``def``s (FastAPI runs them in its thread pool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.errors import Conflict, InputError, NotFound
from services.campaigns.audience import Segment
from services.campaigns.campaign import Campaign, CampaignNotReady
from services.campaigns.funnel import MAX_POINTS
from services.campaigns.service import (
    AudienceRefused,
    CampaignPreview,
    CampaignService,
    SettingRefused,
)
from services.campaigns.templates import ApprovedTemplate
from services.campaigns.tracking import CampaignTracking

__all__ = ["campaigns_router"]

MarketingChannel = Literal["sms", "email", "whatsapp", "messenger", "telegram"]
Language = Annotated[
    str, Path(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", examples=["en", "pt-BR"])
]
Reason = Annotated[str, Query(max_length=500, description="Why (kept with the event)")]
# A window further out than this is a typo, not a plan (and keeps the planner's date
# arithmetic far from datetime's limits).
MAX_AHEAD = timedelta(days=366)
_MAX_CSV_BYTES = 5 * 1024 * 1024


class NewCampaign(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Spring sale", "language": "en"}]}
    )
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    language: str = Field(
        "en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="The templates' default"
    )


class AudienceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"segment": {"tags": ["newsletter"]}, "channels": ["sms", "email"]}]
        },
    )
    segment: Segment = Field(description="All conditions hold; an empty segment is everyone")
    channels: list[MarketingChannel] | None = Field(
        None, min_length=1, description="The channels it may use (left out: as before)"
    )


class AudienceOut(BaseModel):
    matched: int = Field(description="Customers the segment matches now")
    looked_at: int
    explanation: str


class CsvOut(BaseModel):
    customers: int
    rows: int
    summary: str


class ApprovedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15, examples=["en_US"])
    parameters: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=20
    )


class TemplateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"body": "Hi {{ first_name | default('there') }}!"}]},
    )
    body: str = Field("", max_length=10_000, description="jinja text over the recipient fields")
    subject: str | None = Field(None, max_length=500, description="E-mail only")
    approved: ApprovedIn | None = Field(None, description="WhatsApp only")


class TemplateOut(BaseModel):
    channel: str
    language: str


Rate = Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]


class FrequencyCapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_contacts: int = Field(ge=1, le=1000)
    period_days: int = Field(ge=1, le=366)


class ScheduleIn(BaseModel):
    """What is left out stays as it was."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "starts_at": "2030-05-04T09:00:00+02:00",
                    "ends_at": "2030-05-11T09:00:00+02:00",
                    "rate_limits": {"sms": 5},
                }
            ]
        },
    )
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    allowed_from: str | None = Field(None, pattern=r"^\d{2}:\d{2}$", examples=["08:00"])
    allowed_until: str | None = Field(None, pattern=r"^\d{2}:\d{2}$", examples=["21:00"])
    time_zone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])
    rate_limits: dict[MarketingChannel, Rate] | None = Field(
        None, description="Messages a second per channel"
    )
    fallback: bool | None = Field(None, description="Try the customer's next channel")
    frequency_cap: FrequencyCapIn | None = None


class TrackingOut(BaseModel):
    """Computed when asked (see ``services/campaigns/tracking.py`` for each rule)."""

    queued: int = Field(description="Planned sends")
    produced: int | None = Field(description="On the outbound topic (null: not readable now)")
    sent: int
    failed: int
    delivered: int
    replied: int = Field(description="Answered on the channel within 7 days")
    opted_out: int = Field(description="Withdrew marketing consent within 7 days")


class CampaignOut(BaseModel):
    campaign_id: UUID
    name: str
    language: str
    state: str = Field(examples=["running"])
    created_by: str
    channels: list[str]
    segment: dict[str, Any] | None
    templates: list[dict[str, Any]]
    starts_at: datetime | None
    ends_at: datetime | None
    allowed_from: str
    allowed_until: str
    time_zone: str
    rate_limits: dict[str, float]
    fallback: bool
    frequency_cap: FrequencyCapIn
    started_at: datetime | None
    ended_at: datetime | None
    tracking: TrackingOut | None = None


class FunnelPointOut(BaseModel):
    at: datetime = Field(description="Everything up to this moment is counted")
    sent: int
    failed: int
    delivered: int
    replied: int
    opted_out: int


class FunnelOut(BaseModel):
    """Cumulative counts per stage from the start, the same rules as ``tracking``."""

    campaign_id: UUID
    state: str = Field(examples=["running"])
    queued: int = Field(description="Planned sends (what the other stages count towards)")
    step_seconds: int = Field(description="Between two points: whole minutes", examples=[60])
    points: list[FunnelPointOut] = Field(
        description="Oldest first, from the start's minute to now (to the last thing that "
        "happened, once it ended); empty before the start"
    )


class CampaignItem(BaseModel):
    campaign_id: UUID
    name: str
    state: str
    channels: list[str]


class RecipientOut(BaseModel):
    customer_id: UUID
    channel: str
    address: str
    not_before: datetime
    body: str
    subject: str | None


class PreviewOut(BaseModel):
    matched: int
    looked_at: int
    explanation: str
    sends: int
    skipped: dict[str, int] = Field(description="Skip reason code -> recipients")
    skip_reasons: dict[str, str] = Field(description="Skip reason code -> an example")
    summary: str
    sample: list[RecipientOut]


def _campaign_out(c: Campaign, tracking: CampaignTracking | None = None) -> CampaignOut:
    cap, days = c.cap_setting
    return CampaignOut(
        campaign_id=c.id,
        name=c.name,
        language=c.language,
        state=c.state,
        created_by=c.created_by,
        channels=list(c.channels),
        segment=c.segment_data,
        templates=[dict(t) for t in c.template_data.values()],
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        allowed_from=c.allowed_hours[0],
        allowed_until=c.allowed_hours[1],
        time_zone=c.time_zone,
        rate_limits=dict(c.rate_limits),
        fallback=c.fallback_allowed,
        frequency_cap=FrequencyCapIn(max_contacts=cap, period_days=days),
        started_at=c.started_at,
        ended_at=c.ended_at,
        tracking=None if tracking is None else TrackingOut(**tracking.as_dict()),
    )


def _preview_out(p: CampaignPreview) -> PreviewOut:
    return PreviewOut(
        matched=p.audience.count,
        looked_at=p.audience.looked_at,
        explanation=p.audience.explanation,
        sends=p.sends,
        skipped=p.skipped,
        skip_reasons=p.skip_reasons,
        summary=p.summary,
        sample=[_recipient(r) for r in p.sample],
    )


def _recipient(r: Any) -> RecipientOut:
    return RecipientOut(
        customer_id=r.customer_id,
        channel=r.channel,
        address=r.address,
        not_before=r.not_before,
        body=r.body,
        subject=r.subject,
    )


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *field.split(".")), "msg": message}])


@contextmanager
def _answers() -> Iterator[None]:
    """Our refusals as the API answers them."""
    try:
        yield
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    except Conflict as e:
        raise HTTPException(409, str(e)) from None
    except AudienceRefused as e:
        raise RequestValidationError(
            [{"loc": ("body", f"row {r.row}", r.column), "msg": r.reason} for r in e.errors]
        ) from None
    except CampaignNotReady as e:
        raise RequestValidationError(
            [{"loc": ("campaign",), "msg": problem} for problem in e.problems]
        ) from None
    except SettingRefused as e:
        raise _invalid(e.field, e.reason) from None
    except InputError as e:
        raise _invalid("request", e.reason) from None


def _window_bound(body: ScheduleIn) -> None:
    latest = datetime.now().astimezone() + MAX_AHEAD
    for name in ("starts_at", "ends_at"):
        value = getattr(body, name)
        if value is not None and value > latest:
            raise _invalid(name, f"more than {MAX_AHEAD.days} days ahead: plan nearer")


def campaigns_router(service: Callable[[], CampaignService]) -> APIRouter:
    """``service`` is built on first use (building the document opens no store)."""
    router = APIRouter(prefix="/campaigns", tags=["campaigns"])
    built: list[CampaignService] = []

    def campaigns() -> CampaignService:
        if not built:
            built.append(service())
        return built[0]

    def by(request: Request) -> str:
        return request.state.caller.username

    unknown = {404: {"description": "No campaign has this id."}}
    refused = {422: {"description": "A setting refused; each field named."}}
    conflict = {409: {"description": "The campaign's state does not allow it."}}

    @router.post("", status_code=201, responses=refused)
    def create_campaign(body: NewCampaign, request: Request) -> CampaignOut:
        """Create a campaign (a draft)."""
        with _answers():
            return _campaign_out(
                campaigns().create(body.name, by=by(request), language=body.language)
            )

    @router.get("")
    def list_campaigns() -> list[CampaignItem]:
        """Every campaign, oldest first."""
        return [
            CampaignItem(campaign_id=c.id, name=c.name, state=c.state, channels=list(c.channels))
            for c in campaigns().list()
        ]

    @router.get("/{campaign_id}", responses=unknown)
    def get_campaign(campaign_id: UUID) -> CampaignOut:
        """State, settings and tracking (queued → produced → sent → delivered → replied;
        failed, opted out)."""
        with _answers():
            service = campaigns()
            return _campaign_out(service.get(campaign_id), service.tracking(campaign_id))

    @router.get("/{campaign_id}/funnel", responses=unknown)
    def campaign_funnel(
        campaign_id: UUID,
        points: Annotated[int, Query(ge=2, le=MAX_POINTS, description="At most")] = MAX_POINTS,
    ) -> FunnelOut:
        """The funnel over time: sent, failed, delivered, replied and opted out so far, at
        evenly spaced moments (a whole number of minutes apart) since the start."""
        with _answers():
            service = campaigns()
            campaign = service.get(campaign_id)
            series = service.funnel(campaign_id, max_points=points)
        return FunnelOut(
            campaign_id=campaign.id,
            state=campaign.state,
            queued=series.queued,
            step_seconds=int(series.step.total_seconds()),
            points=[FunnelPointOut(at=p.at, **p.counts) for p in series.points],
        )

    @router.put("/{campaign_id}/audience", responses={**unknown, **refused, **conflict})
    def set_audience(campaign_id: UUID, body: AudienceIn) -> AudienceOut:
        """Who it is for: a segment over the directory, and the channels it may use."""
        with _answers():
            found = campaigns().set_audience(
                campaign_id, body.segment, list(body.channels) if body.channels else None
            )
        return AudienceOut(
            matched=found.count, looked_at=found.looked_at, explanation=found.explanation
        )

    @router.post(
        "/{campaign_id}/audience/csv",
        responses={**unknown, **refused, **conflict},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {"type": "string", "examples": ["phone\n+4930123456789\n"]}
                    }
                },
                "description": "A header naming customer_id, phone, email or address, then one "
                "customer a row; any bad row refuses the list (422, each row named)",
            }
        },
    )
    async def upload_audience(
        campaign_id: UUID,
        request: Request,
        channels: Annotated[list[MarketingChannel] | None, Query(alias="channel")] = None,
    ) -> CsvOut:
        """An explicit list of customers, all or nothing."""
        raw = await request.body()
        if len(raw) > _MAX_CSV_BYTES:
            raise _invalid("csv", f"the list is larger than {_MAX_CSV_BYTES // 1024 // 1024} MB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("csv", "the list is not UTF-8 text") from None

        def upload() -> CsvOut:
            with _answers():
                listed = campaigns().set_audience_csv(
                    campaign_id, text, list(channels) if channels else None
                )
            return CsvOut(
                customers=len(listed.customer_ids), rows=listed.rows, summary=listed.summary
            )

        return await run_in_threadpool(upload)

    @router.put(
        "/{campaign_id}/templates/{channel}/{language}",
        responses={**unknown, **refused, **conflict},
    )
    def set_template(
        campaign_id: UUID, channel: MarketingChannel, language: Language, body: TemplateIn
    ) -> TemplateOut:
        """The message on one channel in one language; unknown fields are refused, named."""
        approved = None
        if body.approved is not None:
            approved = ApprovedTemplate(
                body.approved.name, body.approved.language, tuple(body.approved.parameters)
            )
        with _answers():
            campaigns().set_template(
                campaign_id,
                channel,
                language,
                body=body.body,
                subject=body.subject,
                approved=approved,
            )
        return TemplateOut(channel=channel, language=language)

    @router.put("/{campaign_id}/schedule", responses={**unknown, **refused, **conflict})
    def set_schedule(campaign_id: UUID, body: ScheduleIn) -> CampaignOut:
        """When and how fast: window, the recipients' allowed hours, rate limits, fallback,
        frequency cap."""
        _window_bound(body)
        cap = body.frequency_cap
        with _answers():
            saved = campaigns().set_schedule(
                campaign_id,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                allowed_from=body.allowed_from,
                allowed_until=body.allowed_until,
                time_zone=body.time_zone,
                rate_limits=None if body.rate_limits is None else dict(body.rate_limits),
                fallback=body.fallback,
                frequency_cap=None if cap is None else (cap.max_contacts, cap.period_days),
            )
        return _campaign_out(saved)

    @router.get("/{campaign_id}/preview", responses={**unknown, **refused})
    def preview_campaign(
        campaign_id: UUID, sample: Annotated[int, Query(ge=0, le=100)] = 10
    ) -> PreviewOut:
        """What starting now would do: who gets what, on which channel, when; skips."""
        with _answers():
            return _preview_out(campaigns().preview(campaign_id, sample=sample))

    @router.post("/{campaign_id}/start", responses={**unknown, **refused, **conflict})
    def start_campaign(campaign_id: UUID, request: Request) -> PreviewOut:
        """Check, plan and record the start; the hub's campaigns service sends it."""
        with _answers():
            return _preview_out(campaigns().start(campaign_id, by=by(request)))

    @router.post("/{campaign_id}/pause", responses={**unknown, **conflict})
    def pause_campaign(campaign_id: UUID, request: Request, reason: Reason = "") -> CampaignOut:
        """Stop sending within a second; resume continues."""
        with _answers():
            return _campaign_out(campaigns().pause(campaign_id, by=by(request), reason=reason))

    @router.post("/{campaign_id}/resume", responses={**unknown, **conflict})
    def resume_campaign(campaign_id: UUID, request: Request) -> CampaignOut:
        with _answers():
            return _campaign_out(campaigns().resume(campaign_id, by=by(request)))

    @router.post("/{campaign_id}/cancel", responses={**unknown, **conflict})
    def cancel_campaign(campaign_id: UUID, request: Request, reason: Reason = "") -> CampaignOut:
        """End it for good: nothing more is sent."""
        with _answers():
            return _campaign_out(campaigns().cancel(campaign_id, by=by(request), reason=reason))

    return router
