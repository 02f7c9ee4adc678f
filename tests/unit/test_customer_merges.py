"""The Customer aggregate's rules for merges, unmerges, links and profile edits (pure: no store)."""

from __future__ import annotations

import pytest

from services.domain import Customer
from services.domain.errors import DecisionRefused, InvalidDecision


def customer(address: str) -> Customer:
    return Customer.first_contact(address, address, "sms")


def test_an_opt_out_on_either_side_stands_after_a_merge() -> None:
    anna, caller = customer("anna@example.com"), customer("+493055501234")
    anna.change_consent(channel="sms", purpose="marketing", granted=True, source="form")
    caller.change_consent(channel="sms", purpose="marketing", granted=False, source="keyword")
    caller.change_consent(channel="email", purpose="service", granted=True, source="form")

    caller.merge_into(anna, by="agent-1", reason="same person", evidence={})

    assert anna.has_consent("sms", "marketing") is False
    assert anna.has_consent("email", "service") is True
    assert caller.merged_into == anna.id
    assert anna.all_addresses == ["anna@example.com", "+493055501234"]


def test_unmerge_gives_back_the_consent_the_merge_changed_unless_it_changed_since() -> None:
    anna, caller = customer("anna@example.com"), customer("+493055501234")
    anna.change_consent(channel="sms", purpose="marketing", granted=True, source="form")
    caller.change_consent(channel="sms", purpose="marketing", granted=False, source="keyword")
    caller.change_consent(channel="email", purpose="service", granted=True, source="form")
    caller.merge_into(anna, by="a", reason="r", evidence={})
    # After the merge the person opts in to e-mail service again on the survivor: that stays.
    anna.change_consent(channel="email", purpose="service", granted=False, source="agent")

    anna.unmerge(caller, moved=[], by="s", reason="two people")

    assert anna.has_consent("sms", "marketing") is True  # the merge's opt-out went back
    assert anna.has_consent("email", "service") is False  # changed since the merge: kept
    assert caller.merged_into is None
    assert caller.has_consent("sms", "marketing") is False  # its own, untouched


def test_contacts_move_back_with_an_unmerge() -> None:
    from datetime import UTC, datetime

    anna, caller = customer("anna@example.com"), customer("+493055501234")
    caller.contact_count = 3
    caller.merge_into(anna, by="a", reason="r", evidence={})
    assert anna.contact_count == 3
    anna.record_interaction(  # recorded on the survivor while merged, from the caller's number
        interaction_type="message.received.v1",
        channel="sms",
        direction="inbound",
        party="+493055501234",
        provider_ref="SM9",
        occurred_at=datetime(2026, 11, 30, tzinfo=UTC),
        payload={},
    )
    anna.unmerge(caller, moved=["message.received.v1|sms|SM9"], by="s", reason="r")
    assert (anna.contact_count, caller.contact_count) == (0, 4)


@pytest.mark.parametrize(
    ("decide", "refused"),
    [
        (lambda a, b: a.merge_into(a, by="x", reason="r", evidence={}), InvalidDecision),
        (lambda a, b: b.unmerge(a, moved=[], by="x", reason="r"), DecisionRefused),
        (lambda a, b: a.change_profile({"name": "A"}, by="x", expected_version=1), DecisionRefused),
        (lambda a, b: a.change_profile({"shoe": 42}, by="x", expected_version=0), InvalidDecision),
        (lambda a, b: a.dismiss_duplicate(a.id, reason="r", by="x"), InvalidDecision),
    ],
)
def test_decisions_that_make_no_sense_are_refused_and_record_nothing(decide, refused) -> None:
    a, b = customer("a@example.com"), customer("b@example.com")
    a.collect_events()
    b.collect_events()
    with pytest.raises(refused):
        decide(a, b)
    assert a.collect_events() == [] and b.collect_events() == []


def test_a_merged_customer_takes_no_decisions_and_absorbs_no_one() -> None:
    a, b, c = customer("a@example.com"), customer("b@example.com"), customer("c@example.com")
    b.merge_into(a, by="x", reason="r", evidence={})
    with pytest.raises(DecisionRefused, match="was merged into"):
        b.link_address("telegram:1", shared=False, by="x", reason="r")
    with pytest.raises(DecisionRefused, match="was merged into"):
        c.merge_into(b, by="x", reason="r", evidence={})
    with pytest.raises(DecisionRefused, match="has customers merged into it"):
        a.merge_into(c, by="x", reason="r", evidence={})


def test_profile_edits_count_versions_and_skip_what_does_not_change() -> None:
    a = customer("a@example.com")
    a.change_profile({"name": "Anna", "tier": "gold"}, by="x", expected_version=0)
    a.change_profile({"name": "Anna"}, by="x", expected_version=1)  # nothing new: no event
    assert a.profile_version == 1
    a.change_profile({"tier": None}, by="x", expected_version=1)
    assert a.profile == {"name": "Anna"} and a.profile_version == 2
