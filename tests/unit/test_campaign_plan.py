"""Planning a campaign: who gets what, on which channel, when, and why the others do not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from contracts import SendMessage
from projections.audience import AudienceRow
from services.campaigns.audience import Segment, parse_audience_csv, preview
from services.campaigns.campaign import Campaign, CampaignNotReady, InvalidCampaignSetting
from services.campaigns.caps import LedgerContacts, RecentCampaign
from services.campaigns.plan import CampaignPlanner, PlannedSend, Skip, plan_campaign
from services.campaigns.quiet_hours import next_allowed, recipient_zones
from services.campaigns.recipients import campaign_of, send_id
from services.campaigns.templates import ApprovedTemplate, ChannelTemplate, unknown_fields
from services.history.ledger import OutboundLedger

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
BERLIN, NEW_YORK, TOKYO = (
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Tokyo"),
)
ALL_MARKETING = {"sms:marketing": True, "email:marketing": True, "whatsapp:marketing": True}


@dataclass(frozen=True)
class ChannelReach:
    channel: str
    address: str | None
    reachable: bool
    score: float
    reasons: tuple[str, ...] = ()


def customer(
    *addresses: str,
    consent: dict[str, bool] | None = None,
    inbound_whatsapp: datetime | None = None,
    **profile: object,
) -> AudienceRow:
    return AudienceRow(
        customer_id=uuid4(),
        addresses=tuple(sorted(addresses)),
        profile={"name": "Ann Lee", "tier": "gold", "language": "en", **profile},
        consent=dict(ALL_MARKETING if consent is None else consent),
        last_contact_at=NOW - timedelta(days=30),
        last_inbound_at={"whatsapp": inbound_whatsapp} if inbound_whatsapp else {},
    )


def campaign(
    channels: tuple[str, ...] = ("sms", "email"),
    *,
    start: datetime = NOW,
    end: datetime | None = None,
    fallback: bool = False,
    whatsapp_approved: bool = True,
    body: str = "Hi {{ first_name }}, 20% off for {{ tier }} members.",
    cap: int | None = None,
) -> Campaign:
    c = Campaign.create("Spring sale", by="carla")
    c.set_audience(Segment(), list(channels))
    for channel in channels:
        c.set_template(
            ChannelTemplate(
                channel,
                "en",
                body,
                subject="Spring sale" if channel == "email" else None,
                approved=ApprovedTemplate("spring_sale", "en", ("first_name", "tier"))
                if channel == "whatsapp" and whatsapp_approved
                else None,
            )
        )
    c.set_schedule_window(start, end or start + timedelta(days=3), time_zone="Europe/Berlin")
    c.set_rate_limits(dict.fromkeys(channels, 5))
    if fallback:
        c.allow_fallback()
    if cap is not None:
        c.set_frequency_cap(cap)
    return c


def plan_one(
    c: Campaign,
    row: AudienceRow,
    ranking: list[ChannelReach] | None = None,
    contacts: list[datetime] | None = None,
    now: datetime = NOW,
) -> PlannedSend | Skip:
    planner = CampaignPlanner(c, now=now)
    return planner.plan_one(row, ranking or [], contacts)


# -- quiet hours -----------------------------------------------------------------------------


def test_quiet_hours_follow_new_yorks_dst_change() -> None:
    # Saturday 7 March 2026, 22:00 EST; clocks go forward that night: 08:00 is EDT (UTC-4).
    late_saturday = datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
    allowed = next_allowed(late_saturday, (NEW_YORK,))
    assert allowed == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    # A week earlier 08:00 was EST (UTC-5).
    assert next_allowed(late_saturday - timedelta(days=7), (NEW_YORK,)) == datetime(
        2026, 3, 1, 13, 0, tzinfo=UTC
    )


def test_quiet_hours_follow_berlins_dst_change() -> None:
    # Saturday 28 March 2026, 21:30 CET; Europe moves to CEST (UTC+2) that night.
    assert next_allowed(datetime(2026, 3, 28, 20, 30, tzinfo=UTC), (BERLIN,)) == datetime(
        2026, 3, 29, 6, 0, tzinfo=UTC
    )
    # 20:59 CEST is still allowed, 21:00 is not.
    assert next_allowed(datetime(2026, 3, 30, 18, 59, tzinfo=UTC), (BERLIN,)) == datetime(
        2026, 3, 30, 18, 59, tzinfo=UTC
    )
    assert next_allowed(datetime(2026, 3, 30, 19, 0, tzinfo=UTC), (BERLIN,)) == datetime(
        2026, 3, 31, 6, 0, tzinfo=UTC
    )


def test_each_recipient_gets_the_morning_of_their_own_zone() -> None:
    at = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
    planner = CampaignPlanner(campaign(start=at), now=at)
    rows = [
        customer("+4930901820", "ann@example.com"),  # Berlin by its number: 04:00, wait for 08:00
        customer("+12125550100"),  # New York by its number: 22:00, wait for 08:00 EDT
        customer("ann@example.jp", time_zone="Asia/Tokyo"),  # by the profile: 11:00, now
        customer("bob@example.com"),  # nothing tells: the campaign's zone, Berlin
    ]
    plan = planner.plan(rows, {}, {})
    assert [p.not_before for p in plan.sends] == [
        datetime(2026, 5, 4, 6, 0, tzinfo=UTC),
        datetime(2026, 5, 4, 12, 0, tzinfo=UTC),
        at,
        datetime(2026, 5, 4, 6, 0, tzinfo=UTC),
    ]


def test_a_recipient_in_several_zones_is_messaged_only_when_all_of_them_allow() -> None:
    both = (NEW_YORK, ZoneInfo("America/Los_Angeles"))
    # 08:00 in New York is 05:00 in Los Angeles: wait for 08:00 there (11:00 in New York).
    at = next_allowed(datetime(2026, 5, 4, 12, 0, tzinfo=UTC), both)
    assert at == datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
    # A toll-free number spans Guam to Newfoundland: one hour a day is daytime in all of them.
    everywhere = recipient_zones(None, ["+18005551234"], BERLIN)
    assert len(everywhere) > 10
    at = next_allowed(NOW, everywhere, window_end=NOW + timedelta(days=3))
    assert at == datetime(2026, 5, 4, 22, 0, tzinfo=UTC)
    assert all(8 <= at.astimezone(zone).hour < 21 for zone in everywhere)
    assert next_allowed(NOW, everywhere, window_end=at) is None


def test_a_window_that_closes_before_the_recipients_morning_is_a_skip() -> None:
    c = campaign(start=NOW, end=datetime(2026, 5, 4, 19, 30, tzinfo=UTC))
    tokyo = customer("ann@example.jp", time_zone="Asia/Tokyo")
    outcome = plan_one(c, tokyo, now=datetime(2026, 5, 4, 19, 0, tzinfo=UTC))  # 04:00 in Tokyo
    assert isinstance(outcome, Skip) and outcome.code == "window_closed"
    assert "before quiet hours allow a message in Asia/Tokyo" in outcome.reason


# -- channels and consent --------------------------------------------------------------------


def test_the_best_reachable_consented_channel_of_the_ranking_is_chosen() -> None:
    c = campaign(("sms", "email", "whatsapp"))
    row = customer("+4930901820", "ann@example.com", "whatsapp:+4930901820")
    ranking = [
        ChannelReach("whatsapp", "whatsapp:+4930901820", False, 0.9, ("number not on WhatsApp",)),
        ChannelReach("email", "ann@example.com", True, 0.8),
        ChannelReach("sms", "+4930901820", True, 0.5),
    ]
    planned = plan_one(c, row, ranking)
    assert isinstance(planned, PlannedSend)
    assert (planned.channel, planned.address) == ("email", "ann@example.com")
    command = planned.command
    assert command.command_id == send_id(c.id, row.customer_id, 0)
    assert command.purpose == "marketing" and campaign_of(command.requested_by) == c.id
    assert command.subject == "Spring sale" and command.body.startswith("Hi Ann, 20% off for gold")
    # what the planner built is what SendMessage's own validation makes of it
    assert SendMessage.model_validate(command.model_dump()) == command


def test_the_preferred_channel_wins_when_reachable_and_consented() -> None:
    c = campaign(("sms", "email"))
    row = customer("+4930901820", "ann@example.com", preferred_channel="sms")
    ranking = [ChannelReach("email", None, True, 0.9), ChannelReach("sms", None, True, 0.2)]
    assert plan_one(c, row, ranking).channel == "sms"  # type: ignore[union-attr]
    no_sms_consent = customer(
        "+4930901820",
        "ann@example.com",
        preferred_channel="sms",
        consent={"email:marketing": True},
    )
    assert plan_one(c, no_sms_consent, ranking).channel == "email"  # type: ignore[union-attr]


def test_no_marketing_opt_in_anywhere_is_a_skip_that_says_so() -> None:
    c = campaign(("sms",))
    row = customer("+4930901820", consent={"sms:marketing": False})
    outcome = plan_one(c, row)
    assert outcome == Skip(
        row.customer_id, "no_consent", "the customer opted out of marketing on sms"
    )


def test_a_customer_without_a_reachable_channel_is_a_skip() -> None:
    c = campaign(("sms",))
    row = customer("ann@example.com")
    outcome = plan_one(c, row)
    assert isinstance(outcome, Skip) and outcome.code == "no_channel"
    assert "sms: no address" in outcome.reason


def test_reachability_may_give_the_address_the_customer_row_lacks() -> None:
    c = campaign(("whatsapp",))
    row = customer("+4930901820")
    planned = plan_one(c, row, [ChannelReach("whatsapp", "whatsapp:+4930901820", True, 1.0)])
    assert isinstance(planned, PlannedSend) and planned.address == "whatsapp:+4930901820"


# -- fallback --------------------------------------------------------------------------------


def test_after_a_hard_failure_the_next_channel_is_planned_as_the_next_step() -> None:
    c = campaign(("sms", "email"), fallback=True)
    row = customer("+4930901820", "ann@example.com")
    ranking = [ChannelReach("sms", None, True, 0.9), ChannelReach("email", None, True, 0.5)]
    planner = CampaignPlanner(c, now=NOW)
    first = planner.plan([row], {row.customer_id: ranking}, {}).sends[0]
    assert (first.channel, first.step) == ("sms", 0)
    second = planner.fallback(first, "sms")
    assert second is not None
    assert (second.channel, second.step, second.address) == ("email", 1, "ann@example.com")
    assert second.command.command_id == send_id(c.id, row.customer_id, 1)
    assert planner.fallback(second, "email") is None  # nothing left


def test_no_fallback_unless_the_campaign_allows_it() -> None:
    c = campaign(("sms", "email"), fallback=False)
    row = customer("+4930901820", "ann@example.com")
    planner = CampaignPlanner(c, now=NOW)
    first = planner.plan([row], {}, {}).sends[0]
    assert planner.fallback(first, first.channel) is None


# -- the frequency cap -----------------------------------------------------------------------


def test_the_frequency_cap_counts_contacts_of_other_campaigns_from_the_ledger() -> None:
    now = datetime.now(UTC)
    ledger = OutboundLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    row = customer("+4930901820", "ann@example.com", time_zone="UTC")
    earlier, spring = campaign(("sms",), start=now), campaign(("sms",), start=now)
    # Two campaigns reached the customer this week (what the dispatcher records).
    for other in (earlier, spring):
        sent = CampaignPlanner(other, now=now).plan([row], {}, {}).sends[0]
        record = ledger.claim(sent.command.command_id, channel=sent.channel, to=sent.address)
        ledger.record_sent(record, provider_ref=f"SM-{other.id}")
    contacts = LedgerContacts(
        ledger, lambda since: [RecentCampaign(earlier.id, 1), RecentCampaign(spring.id, 1)]
    )

    # Planned after those sends were recorded, as in the hub (the ledger stamps them with the
    # clock: planned at ``now`` from before them, inside the sending hours, they would lie
    # after the planned send and not count).
    later = datetime.now(UTC)
    summer = campaign(("sms",), start=later)
    _, plan = plan_campaign(summer, [row], reachability=NoRankings(), contacts=contacts, now=later)
    assert plan.sends == []
    assert plan.skips[0].code == "capped"
    assert "2 marketing contact(s) in the last 7 days (at most 2)" in plan.skips[0].reason

    generous = campaign(("sms",), start=later, cap=3)
    _, plan = plan_campaign(
        generous, [row], reachability=NoRankings(), contacts=contacts, now=later
    )
    assert len(plan.sends) == 1


def test_a_failed_send_is_no_contact() -> None:
    now = datetime.now(UTC)
    ledger = OutboundLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    row = customer("+4930901820")
    other = campaign(("sms",), start=now)
    cid = send_id(other.id, row.customer_id, 0)
    ledger.record_failed(
        ledger.claim(cid, channel="sms", to="+4930901820"), "blocked", "30004", kind="rejected"
    )
    contacts = LedgerContacts(ledger, lambda since: [RecentCampaign(other.id, 1)])
    assert contacts([row.customer_id], now - timedelta(days=7)) == {}


class NoRankings:
    def rankings(self, customer_ids: list[UUID]) -> dict:
        return {}


# -- templates -------------------------------------------------------------------------------


def test_template_validation_lists_the_unknown_fields() -> None:
    template = ChannelTemplate(
        "email", "en", "Dear {{ title }} {{ name }}", subject="{{ voucher_code }} inside"
    )
    assert unknown_fields(template) == ["title", "voucher_code"]


def test_a_field_the_customer_lacks_is_a_skip_naming_it() -> None:
    c = campaign(("sms",))
    row = customer("+4930901820", name=None)
    outcome = plan_one(c, row)
    assert isinstance(outcome, Skip) and outcome.code == "template"
    assert "missing template field 'first_name'" in outcome.reason


def test_whatsapp_outside_the_24_hour_window_sends_the_approved_template() -> None:
    c = campaign(("whatsapp",))
    quiet = customer("whatsapp:+4930901820", inbound_whatsapp=NOW - timedelta(days=2))
    planned = plan_one(c, quiet)
    assert isinstance(planned, PlannedSend)
    assert planned.command.body == ""
    assert planned.command.template is not None
    assert (planned.command.template.name, planned.command.template.parameters) == (
        "spring_sale",
        ["Ann", "gold"],
    )
    chatting = customer("whatsapp:+4930901820", inbound_whatsapp=NOW - timedelta(hours=1))
    free = plan_one(c, chatting)
    assert isinstance(free, PlannedSend) and free.command.template is None
    assert free.command.body.startswith("Hi Ann")


def test_whatsapp_outside_the_window_without_an_approved_template_is_a_skip() -> None:
    c = campaign(("whatsapp",), whatsapp_approved=False)
    row = customer("whatsapp:+4930901820")  # never wrote: outside the window
    outcome = plan_one(c, row)
    assert isinstance(outcome, Skip) and outcome.code == "template"
    assert "only an approved template may be sent" in outcome.reason


def test_an_sms_too_long_is_a_skip() -> None:
    c = campaign(("sms",), body="{{ name }} " + "x" * 1700)
    outcome = plan_one(c, customer("+4930901820"))
    assert isinstance(outcome, Skip) and "segments (at most 10)" in outcome.reason


# -- the audience ----------------------------------------------------------------------------


def test_a_segment_matching_nobody_says_which_condition_empties_it() -> None:
    rows = [customer("+4930901820", tags=["vip"], tier="gold"), customer("a@example.com")]
    answer = preview(rows, Segment(tags=["vip"], tiers=["platinum"]), sample=5)
    assert answer.count == 0 and answer.sample == []
    assert answer.explanation == (
        "no customer matches this segment (2 customers looked at; customers meeting each "
        "condition alone: tags ['vip']: 1; tier in ['platinum']: 0)"
    )


def test_a_segment_preview_counts_and_samples() -> None:
    rows = [customer(f"+49309018{i:02d}", language="de" if i % 2 else "en") for i in range(10)]
    answer = preview(rows, Segment(languages=["de"], reachable_on=["sms"]), sample=3)
    assert (answer.count, len(answer.sample)) == (5, 3)
    assert answer.explanation == "5 of 10 customers match"


def test_a_csv_with_bad_numbers_reports_each_row_and_keeps_the_good_ones() -> None:
    ann, bob = uuid4(), uuid4()
    known = {"+4930901820": ann, "bob@example.com": bob}
    csv_text = (
        "phone,email\n"
        "+49 30 901820,\n"  # row 2: Ann
        "12345,\n"  # row 3: not a number
        "+4930901821,\n"  # row 4: a number no customer has
        "030 901820,\n"  # row 5: Ann again (national format, region DE)
        ",bob@example.com\n"  # row 6: Bob
        ",\n"  # row 7: empty
    )
    result = parse_audience_csv(
        csv_text, find_customer=known.get, customer_exists=lambda c: False, default_region="DE"
    )
    assert result.customer_ids == [ann, bob]
    assert [(e.row, e.column) for e in result.errors] == [
        (3, "phone"),
        (4, "phone"),
        (5, "phone"),
        (7, "phone/email"),
    ]
    assert result.errors[0].reason.startswith("bad phone number:")
    assert "unknown customer" in result.errors[1].reason
    assert result.errors[2].reason == "duplicate: the same customer as row 2"
    assert result.summary == "2 customers from 6 rows; 4 row(s) refused"


# -- what stops a campaign before planning ---------------------------------------------------


def test_a_schedule_in_the_past_and_a_zero_rate_limit_are_refused() -> None:
    c = campaign(start=NOW - timedelta(days=5), end=NOW - timedelta(days=4))
    with pytest.raises(CampaignNotReady, match="in the past"):
        c.schedule(now=NOW, by="carla")
    with pytest.raises(InvalidCampaignSetting, match="rate limit of email is 0"):
        c.set_rate_limits({"sms": 3, "email": 0})
