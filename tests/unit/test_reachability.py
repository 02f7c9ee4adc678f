"""The reachability rules: scripted customer histories, folded as the view folds them, give the
channels in the expected order with the expected reasons.  Pure: no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from contracts import DeliveryStatus
from projections.reachability import (
    ChannelReach,
    CustomerFacts,
    ReachState,
    channel_of_address,
    failure_of,
    fold,
    rank,
    wanted,
)
from services.domain import Customer
from services.domain.errors import InvalidDecision

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PHONE = "+493055501234"
WHATSAPP = f"whatsapp:{PHONE}"
MAIL = "anna@example.com"


class Story:
    """Customers' decisions and contacts, in the order they are recorded."""

    def __init__(self) -> None:
        self.state = ReachState()
        self.events: list = []

    def customer(self, address: str, channel: str = "sms") -> Customer:
        return self._did(Customer.first_contact(address, address, channel))

    def sent(self, c: Customer, channel: str, to: str, ref: str, minutes: float) -> None:
        self._contact(c, "message.sent.v1", channel, "outbound", to, ref, minutes, {})

    def reported(
        self,
        c: Customer,
        channel: str,
        to: str,
        ref: str,
        status: str,
        minutes: float,
        code: str | None = None,
    ) -> None:
        payload = {"message_ref": ref, "status": status}
        if code is not None:
            payload["error_code"] = code
        kind = "delivery.status.v1"
        self._contact(c, kind, channel, "outbound", to, f"{ref}:{status}", minutes, payload)

    def received(self, c: Customer, channel: str, party: str, ref: str, minutes: float) -> None:
        self._contact(c, "message.received.v1", channel, "inbound", party, ref, minutes, {})

    def _contact(self, c, kind, channel, direction, party, ref, minutes, payload) -> None:
        c.record_interaction(
            kind, channel, direction, party, ref, T0 + timedelta(minutes=minutes), payload
        )
        self._did(c)

    def _did(self, *customers: Customer) -> Customer:
        for c in customers:
            self.events += c.collect_events()
        return customers[0]

    def did(self, *customers: Customer) -> None:
        self._did(*customers)

    def ranking(self, c: Customer, *, purpose: str = "marketing") -> list[ChannelReach]:
        """As the view answers: the facts of the customer and of those merged into it."""
        fold(self.state, self.events)
        self.events = []
        merged = [f for f in self.state.customers.values() if f.survivor_id == c.id]
        own = self.state.customers.get(c.id)
        customers = [own or CustomerFacts(c.id), *merged] if merged or own else []
        people = {c.id, *(f.customer_id for f in merged)}
        facts = [f for f in self.state.addresses.values() if f.customer_id in people]
        return rank(customers, facts, purpose=purpose)


def words(ranking: list[ChannelReach]) -> list[str]:
    return [f"{r.channel}: {', '.join(r.reasons)}" for r in ranking]


def test_fast_replies_on_whatsapp_beat_sms_that_went_undelivered_twice() -> None:
    story = Story()
    anna = story.customer(PHONE)
    for i in range(4):  # four WhatsApp messages, three answered within minutes
        story.sent(anna, "whatsapp", WHATSAPP, f"wamid.{i}", i * 600)
        story.reported(anna, "whatsapp", WHATSAPP, f"wamid.{i}", "delivered", i * 600 + 1)
        if i != 2:
            story.received(anna, "whatsapp", WHATSAPP, f"wamid.in.{i}", i * 600 + 12)
    story.sent(anna, "sms", PHONE, "SM1", 3000)
    story.reported(anna, "sms", PHONE, "SM1", "undelivered", 3001, code="30003")
    story.sent(anna, "sms", PHONE, "SM2", 3100)
    story.reported(anna, "sms", PHONE, "SM2", "undelivered", 3101, code="30003")

    ranking = story.ranking(anna)

    assert words(ranking) == [
        "whatsapp: replies within an hour (3 of 4), wrote to us 3 times",
        "sms: undelivered twice",
    ]
    whatsapp, sms = ranking
    assert whatsapp.address == WHATSAPP and whatsapp.reachable
    assert sms.reachable and sms.score < whatsapp.score  # soft failures: worse, not excluded


def test_a_bounced_email_is_last_and_not_reachable() -> None:
    story = Story()
    anna = story.customer(MAIL, "email")
    story.received(anna, "email", MAIL, "<m1@example.com>", 0)
    story.sent(anna, "email", MAIL, "<out1@hub>", 60)
    story.reported(anna, "email", MAIL, "<out1@hub>", "failed", 61, code="5.1.1")
    story.sent(anna, "sms", PHONE, "SM1", 70)  # a number she gave; never answered

    ranking = story.ranking(anna)

    assert words(ranking) == ["sms: sent 1, no reply yet", "email: bounced, wrote to us"]
    assert ranking[-1] == ChannelReach("email", MAIL, False, 0.0, ("bounced", "wrote to us"))


def test_an_address_that_writes_again_after_a_bounce_is_reachable_again() -> None:
    story = Story()
    anna = story.customer(MAIL, "email")
    story.sent(anna, "email", MAIL, "<out1@hub>", 0)
    story.reported(anna, "email", MAIL, "<out1@hub>", "failed", 1)  # no status: permanent
    assert not story.ranking(anna)[0].reachable

    story.received(anna, "email", MAIL, "<back@example.com>", 60 * 24)

    assert story.ranking(anna)[0].reachable


def test_a_late_sent_report_does_not_undo_delivered_and_a_failure_after_it_counts() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.reported(anna, "sms", PHONE, "SM1", "delivered", 2)  # before its own "sent"
    story.sent(anna, "sms", PHONE, "SM1", 0)
    fold(story.state, story.events)
    story.events = []
    facts = story.state.addresses[(anna.id, "sms", PHONE)]
    assert (facts.attempts, facts.delivered, facts.awaiting) == (1, 1, 1)

    story.reported(anna, "sms", PHONE, "SM1", "failed", 5, code="30006")

    assert words(story.ranking(anna)) == ["sms: landline or unreachable carrier"]
    assert (facts.delivered, facts.hard_failures) == (0, 1)


def test_an_opt_out_makes_the_channel_unreachable_for_marketing_but_not_for_service() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    story.received(anna, "whatsapp", WHATSAPP, "wamid.in", 1)
    anna.change_consent("sms", "marketing", False, "sms-keyword")
    story.did(anna)

    marketing = story.ranking(anna)
    service = story.ranking(anna, purpose="service")

    assert [(r.channel, r.reachable) for r in marketing] == [("whatsapp", True), ("sms", False)]
    assert marketing[-1].reasons == ("opted out of marketing", "wrote to us")
    assert {r.channel: r.reachable for r in service} == {"whatsapp": True, "sms": True}


def test_stop_on_a_channel_stops_every_purpose() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    anna.change_consent("sms", "service", False, "sms-keyword")
    story.did(anna)

    (sms,) = story.ranking(anna, purpose="service")

    assert not sms.reachable and sms.reasons[0] == "opted out"


def test_the_stated_preferred_channel_comes_first_when_reachable() -> None:
    story = Story()
    anna = story.customer(PHONE)
    for i in range(3):
        story.sent(anna, "whatsapp", WHATSAPP, f"wamid.{i}", i * 60)
        story.received(anna, "whatsapp", WHATSAPP, f"wamid.in.{i}", i * 60 + 5)
    story.received(anna, "email", MAIL, "<m1@example.com>", 500)
    anna.change_profile({"preferred_channel": "email"}, by="agent", expected_version=0)
    story.did(anna)

    ranking = story.ranking(anna)

    assert [r.channel for r in ranking] == ["email", "whatsapp"]
    assert ranking[0].reasons == ("preferred channel", "wrote to us")
    assert ranking[0].score < ranking[1].score  # first because she said so


def test_a_preferred_channel_that_is_not_reachable_does_not_come_first() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    story.sent(anna, "email", MAIL, "<out@hub>", 1)
    story.reported(anna, "email", MAIL, "<out@hub>", "failed", 2, code="5.1.1")
    anna.change_profile({"preferred_channel": "email"}, by="agent", expected_version=0)
    story.did(anna)

    assert words(story.ranking(anna)) == ["sms: wrote to us", "email: preferred channel, bounced"]


def test_a_preferred_channel_without_an_address_is_listed_last() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    anna.change_profile({"preferred_channel": "telegram"}, by="agent", expected_version=0)
    story.did(anna)

    assert story.ranking(anna)[-1] == ChannelReach(
        "telegram", None, False, 0.0, ("preferred channel", "no address known")
    )


def test_the_profile_accepts_only_known_fields_preferred_channel_among_them() -> None:
    anna = Customer.first_contact(PHONE, PHONE, "sms")
    anna.change_profile({"preferred_channel": "whatsapp"}, by="agent", expected_version=0)
    assert anna.profile["preferred_channel"] == "whatsapp"
    with pytest.raises(InvalidDecision):
        anna.change_profile({"favourite_channel": "sms"}, by="agent", expected_version=1)


def test_a_survivor_ranks_with_what_was_learnt_on_the_customer_merged_into_it() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    mail = story.customer(MAIL, "email")
    story.sent(mail, "email", MAIL, "<out@hub>", 10)
    story.received(mail, "email", MAIL, "<re@example.com>", 20)
    mail.change_consent("sms", "marketing", False, "web-form")  # an opt-out is never lost
    story.did(mail)
    assert [r.channel for r in story.ranking(anna)] == ["sms"]

    mail.merge_into(anna, by="agent", reason="same person", evidence={})
    story.did(anna, mail)

    assert words(story.ranking(anna)) == [
        "email: replies within an hour (1 of 1), wrote to us",
        "sms: opted out of marketing, wrote to us",
    ]


def test_after_an_unmerge_each_customer_has_its_own_ranking_again() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    mail = story.customer(MAIL, "email")
    story.received(mail, "email", MAIL, "<m1@example.com>", 1)
    mail.merge_into(anna, by="agent", reason="same person", evidence={})
    story.did(anna, mail)
    assert [r.channel for r in story.ranking(anna)] == ["email", "sms"]  # a tie: by name

    anna.unmerge(mail, moved=[], by="agent", reason="two people")
    story.did(anna, mail)

    assert [r.channel for r in story.ranking(anna)] == ["sms"]
    assert [r.channel for r in story.ranking(mail)] == ["email"]


def test_a_send_our_policy_refused_says_nothing_about_the_address() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    anna.record_interaction(
        "delivery.status.v1",
        "sms",
        "outbound",
        PHONE,
        "cmd-1:failed",
        T0,
        {"message_ref": "cmd-1", "status": "failed", "error_code": "refused"},
    )
    story.did(anna)

    assert words(story.ranking(anna)) == ["sms: wrote to us"]


def test_a_linked_address_is_listed_as_not_tried_yet() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.received(anna, "sms", PHONE, "SM-in", 0)
    anna.link_address("telegram:4242", shared=False, by="agent", reason="she said so")
    story.did(anna)

    assert words(story.ranking(anna)) == ["sms: wrote to us", "telegram: not tried yet"]


@pytest.mark.parametrize(
    ("channel", "status", "code", "expected"),
    [
        ("email", "failed", "5.1.1", (True, "bounced")),
        ("email", "failed", "5.2.2", (False, "bounced (temporarily)")),
        ("email", "failed", "4.4.7", (False, "bounced (temporarily)")),
        ("email", "failed", "550", (True, "bounced")),
        ("email", "failed", "rejected", (False, "failed")),
        ("sms", "undelivered", "30003", (False, "undelivered")),
        ("sms", "failed", "21211", (True, "invalid number")),
        ("whatsapp", "failed", "131026", (True, "not on WhatsApp")),
        ("telegram", "failed", "403", (True, "blocked us")),
        ("sms", "failed", None, (False, "failed")),
    ],
)
def test_hard_failures_are_those_that_say_the_address_is_wrong(
    channel: str, status: str, code: str | None, expected: tuple[bool, str]
) -> None:
    assert failure_of(channel, DeliveryStatus(status), code, None) == expected


def test_the_channel_of_an_address() -> None:
    assert [channel_of_address(a) for a in (PHONE, WHATSAPP, MAIL, "telegram:1", "x")] == [
        "sms",
        "whatsapp",
        "email",
        "telegram",
        None,
    ]


def test_every_id_the_batch_touches_is_named_for_loading() -> None:
    story = Story()
    anna = story.customer(PHONE)
    story.sent(anna, "sms", PHONE, "SM1", 0)
    anna.change_consent("sms", "marketing", True, "web-form")
    story.did(anna)

    want = wanted(story.events)

    assert want.message_refs == {"SM1"}
    assert want.addresses == {(anna.id, "sms", PHONE)}
    assert want.customers == {anna.id}
    assert isinstance(next(iter(want.customers)), UUID)
