"""One person, one identity: phone numbers across channels, links, merges and unmerges, the
card, ranked candidates for a shared number, and duplicate suggestions — on SQLite and
PostgreSQL, through the history (the system of record) and the directory view built from it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.persistence import IntegrityError

from contracts import CallAnswered, CallRinging, Channel, ConsentChanged, MessageReceived
from contracts.errors import Conflict, InputError
from projections.follower import TimelineFollower
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.history.customers import CustomerNotFound

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PHONE = "+493055501234"


def sms(party: str, ref: str, minutes: int, body: str = "hello") -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms,
        party=party,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=body,
    )


def whatsapp(party: str, ref: str, minutes: int, body: str = "hi") -> MessageReceived:
    return MessageReceived(
        channel=Channel.whatsapp,
        party=party,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=body,
    )


def email(party: str, ref: str, minutes: int, subject: str = "Order") -> MessageReceived:
    return MessageReceived(
        channel=Channel.email,
        party=party,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        subject=subject,
        body="text",
    )


def call(party: str, ref: str, minutes: int) -> CallRinging:
    return CallRinging(
        channel=Channel.voice,
        direction="inbound",
        party=party,
        provider_ref=ref,
        call_id=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
    )


class Desk:
    """The history and the view, with the view caught up after each step."""

    def __init__(self, settings: Settings) -> None:
        hub = bootstrap(settings)
        self.history = hub.history(cached=False)
        self.recording = hub.history()  # the recorder's own (cached) instance
        self.view = hub.timeline_view()
        self.follower = TimelineFollower(self.history, self.view)

    def record(self, *interactions) -> None:
        try:
            self.recording.record_interactions(list(interactions))
        except IntegrityError:
            # As the recorder does: a customer it cached was changed elsewhere (a merge); its
            # cache is cleared, and the batch recorded again on what is stored now.
            self.recording.record_interactions(list(interactions))
        self.follower.catch_up()

    def caught_up(self) -> None:
        self.follower.catch_up()

    def owner(self, address: str):
        return self.history.customer_for_address(address)


@pytest.fixture
def desk(hub_settings: Settings) -> Desk:
    return Desk(hub_settings)


def test_a_phone_number_is_one_customer_across_voice_sms_and_whatsapp(desk: Desk) -> None:
    desk.record(
        call(PHONE, "CA1", 0), sms(PHONE, "SM1", 1), whatsapp(f"whatsapp:{PHONE}", "wamid.1", 2)
    )
    desk.record(whatsapp(f"whatsapp:{PHONE}", "wamid.2", 3))

    owner = desk.owner(PHONE)
    assert owner is not None and desk.owner(f"whatsapp:{PHONE}") == owner
    customer = desk.history.get_customer(owner)
    assert customer.contact_count == 4
    for address in (PHONE, f"whatsapp:{PHONE}"):
        found = desk.view.lookup(address)
        assert found.card is not None and found.card.customer_id == owner
        assert found.candidates == []
    card = desk.view.card(owner)
    assert card.contact_count == 4 and card.last_channel == "whatsapp"
    assert [r.channel for r in card.recent] == ["whatsapp", "whatsapp", "sms", "voice"]


def test_an_unknown_address_has_no_card(desk: Desk) -> None:
    desk.record(sms(PHONE, "SM1", 0))
    assert desk.view.lookup("+493055509999").card is None


def test_a_linked_address_records_later_contacts_on_that_customer(desk: Desk) -> None:
    desk.record(email("anna@example.com", "<m1@example.com>", 0))
    anna = desk.owner("anna@example.com")
    desk.history.link_address(anna, "telegram:4711", by="agent-1", reason="she said so")
    desk.record(
        MessageReceived(
            channel=Channel.telegram,
            party="telegram:4711",
            provider_ref="tg-1",
            occurred_at=T0 + timedelta(minutes=5),
            body="it's Anna",
        )
    )
    assert desk.owner("telegram:4711") == anna
    assert desk.history.get_customer(anna).contact_count == 2
    card = desk.view.lookup("telegram:4711").card
    assert card.customer_id == anna
    assert card.addresses == ["anna@example.com", "telegram:4711"]
    assert card.contact_count == 2


def test_linking_an_address_of_another_customer_is_refused_with_what_to_do(desk: Desk) -> None:
    desk.record(sms(PHONE, "SM1", 0), email("anna@example.com", "<m1@example.com>", 1))
    anna = desk.owner("anna@example.com")
    with pytest.raises(Conflict, match="merge the two customers"):
        desk.history.link_address(anna, PHONE, by="agent-1", reason="typo")
    assert desk.owner(PHONE) != anna


def test_merge_then_lookup_by_either_address_finds_one_person_with_both_histories(
    desk: Desk,
) -> None:
    desk.record(
        email("anna@example.com", "<m1@example.com>", 0),
        call(PHONE, "CA1", 1),
        ConsentChanged(
            channel=Channel.sms,
            direction="inbound",
            party=PHONE,
            provider_ref="stop-1",
            occurred_at=T0 + timedelta(minutes=2),
            purpose="marketing",
            granted=False,
            source="keyword",
        ),
    )
    anna, caller = desk.owner("anna@example.com"), desk.owner(PHONE)
    desk.history.merge(
        anna, caller, by="agent-1", reason="same person", evidence={"addresses": [PHONE]}
    )
    # A contact for the absorbed customer after the merge lands on the survivor.
    desk.record(sms(PHONE, "SM-after", 3))

    assert desk.owner(PHONE) == anna
    survivor, absorbed = desk.history.get_customer(anna), desk.history.get_customer(caller)
    assert absorbed.merged_into == anna
    assert survivor.has_consent("sms", "marketing") is False  # the opt-out came with it
    assert absorbed.contact_count == 2  # its own history stays its own
    for address in ("anna@example.com", PHONE):
        card = desk.view.lookup(address).card
        assert card.customer_id == anna
    card = desk.view.card(anna)
    assert card.addresses == [PHONE, "anna@example.com"]
    assert card.contact_count == 4
    assert card.consent == {"sms:marketing": False}
    assert sorted(e.provider_ref for e in desk.view.timeline(anna)) == sorted(
        ["<m1@example.com>", "CA1", "stop-1", "SM-after"]
    )
    assert desk.view.timeline(caller) == []


def test_bad_merges_are_refused_and_change_nothing(desk: Desk) -> None:
    desk.record(email("anna@example.com", "<m1>", 0), sms(PHONE, "SM1", 1))
    desk.record(email("bob@example.org", "<m2>", 2))
    anna, caller = desk.owner("anna@example.com"), desk.owner(PHONE)
    bob = desk.owner("bob@example.org")
    with pytest.raises(InputError, match="itself"):
        desk.history.merge(anna, anna, by="a", reason="r")
    desk.history.merge(anna, caller, by="a", reason="r")
    with pytest.raises(Conflict, match="was merged into"):
        desk.history.merge(bob, caller, by="a", reason="r")
    with pytest.raises(Conflict, match="was merged into"):
        desk.history.merge(caller, bob, by="a", reason="r")
    with pytest.raises(Conflict, match="never merged"):
        desk.history.unmerge(bob, anna, by="a", reason="r")
    from uuid import uuid4

    with pytest.raises(CustomerNotFound):
        desk.history.merge(anna, uuid4(), by="a", reason="r")
    assert desk.history.get_customer(bob).merged_into is None


def test_unmerge_restores_both_and_later_contacts_go_where_their_address_belongs(
    desk: Desk,
) -> None:
    desk.record(email("anna@example.com", "<m1>", 0), call(PHONE, "CA1", 1))
    anna, caller = desk.owner("anna@example.com"), desk.owner(PHONE)
    desk.caught_up()
    before = {
        anna: [e.provider_ref for e in desk.view.timeline(anna)],
        caller: [e.provider_ref for e in desk.view.timeline(caller)],
    }
    desk.history.merge(anna, caller, by="agent-1", reason="looked alike")
    # Recorded while merged: one from each person's address.
    desk.record(sms(PHONE, "SM-merged", 2), email("anna@example.com", "<m2>", 3))
    desk.history.unmerge(anna, caller, by="supervisor-1", reason="two people after all")
    desk.record(sms(PHONE, "SM-after", 4))

    assert desk.owner(PHONE) == caller and desk.owner("anna@example.com") == anna
    assert desk.history.get_customer(caller).merged_into is None
    assert [e.provider_ref for e in desk.view.timeline(anna)] == ["<m2>", *before[anna]]
    assert [e.provider_ref for e in desk.view.timeline(caller)] == [
        "SM-after",
        "SM-merged",
        *before[caller],
    ]
    assert desk.view.card(caller).contact_count == 3
    assert desk.view.card(anna).contact_count == 2
    assert desk.view.lookup(PHONE).card.customer_id == caller
    assert desk.history.get_customer(anna).contact_count == 2
    assert desk.history.get_customer(caller).contact_count == 3


def test_a_shared_number_gives_ranked_candidates_never_a_silent_guess(desk: Desk) -> None:
    landline = "+493055507777"
    desk.record(call(landline, "CA-mum", 0), email("kid@example.com", "<k1>", 1))
    mum, kid = desk.owner(landline), desk.owner("kid@example.com")
    desk.history.link_address(kid, landline, shared=True, by="agent-1", reason="family phone")
    desk.caught_up()
    found = desk.view.lookup(landline)
    assert [c.card.customer_id for c in found.candidates] == [mum, kid]
    assert "last contact from" in found.candidates[0].reason
    assert "no contact from" in found.candidates[1].reason
    # Contacts from the number stay with the customer who holds it.
    desk.record(call(landline, "CA-2", 5))
    assert desk.owner(landline) == mum


def test_profile_edits_are_events_and_a_stale_edit_is_a_conflict(desk: Desk) -> None:
    desk.record(sms(PHONE, "SM1", 0))
    cid = desk.owner(PHONE)
    desk.history.edit_profile(
        cid, {"name": "Anna Berg", "tier": "gold", "language": "de"}, by="a", expected_version=0
    )
    with pytest.raises(Conflict, match="changed meanwhile"):
        desk.history.edit_profile(cid, {"tier": "silver"}, by="b", expected_version=0)
    with pytest.raises(InputError, match="unknown profile field"):
        desk.history.edit_profile(cid, {"shoe_size": 42}, by="a", expected_version=1)
    desk.history.edit_profile(cid, {"tier": None}, by="a", expected_version=1)
    desk.caught_up()
    card = desk.view.card(cid)
    assert card.profile == {"name": "Anna Berg", "language": "de"}
    assert card.profile_version == 2
    assert [c.customer_id for c in desk.view.search("anna b")] == [cid]
    assert [c.customer_id for c in desk.view.search("+4930555012")] == [cid]


def _answered(ref: str, agent: str, seconds: int) -> CallAnswered:
    return CallAnswered(
        channel=Channel.voice,
        direction="inbound",
        party=PHONE,
        provider_ref=ref,
        call_id=ref,
        agent=agent,
        occurred_at=T0 + timedelta(seconds=seconds),
    )


def test_the_last_agent_who_handled_the_customer_is_on_the_card(desk: Desk) -> None:
    desk.record(call(PHONE, "CA1", 0), _answered("CA1", "agent-42", 20))
    assert desk.view.card(desk.owner(PHONE)).last_agent == "agent-42"


def test_the_latest_answer_in_one_batch_names_the_last_agent_a_tie_going_to_the_later(
    desk: Desk,
) -> None:
    # One batch, answers out of time order: the card shows the agent of the latest answer,
    # as applying them one by one does (PostgreSQL applies a batch's answers in one statement).
    desk.record(
        call(PHONE, "CA1", 0),
        _answered("CA1", "agent-late", 90),
        call(PHONE, "CA2", 0),
        _answered("CA2", "agent-early", 30),
    )
    assert desk.view.card(desk.owner(PHONE)).last_agent == "agent-late"
    desk.record(_answered("CA3", "agent-tie-1", 120), _answered("CA4", "agent-tie-2", 120))
    assert desk.view.card(desk.owner(PHONE)).last_agent == "agent-tie-2"
    desk.record(_answered("CA5", "agent-older", 60))  # a later batch, an older answer
    assert desk.view.card(desk.owner(PHONE)).last_agent == "agent-tie-2"


def test_duplicate_suggestions_are_ranked_with_reasons_and_dismissals_stick(
    desk: Desk,
) -> None:
    desk.record(
        email("anna@acme.example", "<a1>", 0),
        email("anna+shop@acme.example", "<a2>", 1),
        email("a.berg@acme.example", "<a3>", 2),
        email("other@example.org", "<o1>", 3),
    )
    anna = desk.owner("anna@acme.example")
    tagged = desk.owner("anna+shop@acme.example")
    namesake = desk.owner("a.berg@acme.example")
    for cid in (anna, namesake):
        desk.history.edit_profile(cid, {"name": "Anna Berg"}, by="a", expected_version=0)
    desk.caught_up()

    suggestions = desk.view.duplicates(anna)
    assert [s.customer_id for s in suggestions] == [tagged, namesake]
    assert "anna@acme.example" in suggestions[0].reasons[0]
    assert "same company (acme.example)" in suggestions[1].reasons[0]
    assert suggestions[0].score > suggestions[1].score

    desk.history.dismiss_duplicate(anna, namesake, by="agent-1", reason="two Annas")
    desk.caught_up()
    assert [s.customer_id for s in desk.view.duplicates(anna)] == [tagged]
    assert [s.customer_id for s in desk.view.duplicates(namesake)] == []


def test_a_rebuilt_directory_equals_the_one_built_as_it_happened(
    desk: Desk, hub_settings: Settings
) -> None:
    desk.record(email("anna@example.com", "<m1>", 0), call(PHONE, "CA1", 1))
    anna, caller = desk.owner("anna@example.com"), desk.owner(PHONE)
    desk.history.edit_profile(anna, {"name": "Anna"}, by="a", expected_version=0)
    desk.history.merge(anna, caller, by="a", reason="same")
    desk.record(sms(PHONE, "SM1", 2))
    desk.history.unmerge(anna, caller, by="a", reason="not the same")
    desk.history.link_address(anna, "telegram:99", by="a", reason="r")
    desk.history.link_address(caller, "anna@example.com", shared=True, by="a", reason="r")
    desk.record(sms(PHONE, "SM2", 3))

    def snapshot(view) -> tuple:
        return (
            [view.card(c) for c in (anna, caller)],
            [view.timeline(c) for c in (anna, caller)],
            view.lookup("anna@example.com"),
        )

    live = snapshot(desk.view)
    rebuilt_view = bootstrap(hub_settings).timeline_view()
    rebuilt_view.reset()
    TimelineFollower(desk.history, rebuilt_view).catch_up()
    assert snapshot(rebuilt_view) == live
    assert live[0][1].addresses == [PHONE]


def test_a_store_from_before_identities_is_filled_in_once_and_keeps_its_customers(
    hub_settings: Settings,
) -> None:
    """Customers stored before the identity table existed (a WhatsApp-only customer had an
    id of its own then): opening the store fills the table from their first contacts, and
    later contacts from the number, on any phone channel, land on that customer."""
    from services.domain import Customer, customer_id_for

    history = bootstrap(hub_settings).history()
    legacy_id = customer_id_for(f"whatsapp:{PHONE}")  # how it was derived before
    legacy = Customer.first_contact(f"whatsapp:{PHONE}", f"whatsapp:{PHONE}", "whatsapp")
    assert legacy.id == legacy_id
    history.save(legacy)  # no identity row, as in an old store
    assert history.customer_for_address(PHONE) is None

    reopened = bootstrap(hub_settings).history()  # what every process does on start
    assert reopened.customer_for_address(f"whatsapp:{PHONE}") == legacy_id
    reopened.record_interactions([call(PHONE, "CA1", 0), whatsapp(f"whatsapp:{PHONE}", "w1", 1)])
    assert reopened.get_customer(legacy_id).contact_count == 2
    assert reopened.migrate_identities() == 0  # once only


def test_open_conversations_are_on_the_card_and_follow_a_merge(
    desk: Desk, hub_settings: Settings
) -> None:
    from services.domain.conversation_rules import Status

    hub = bootstrap(hub_settings)
    desk.record(sms(PHONE, "SM1", 0), email("anna@example.com", "<m1@example.com>", 1))
    hub.desk_follower().catch_up()
    desk.caught_up()
    caller, anna = desk.owner(PHONE), desk.owner("anna@example.com")
    card = desk.view.card(caller)
    (chat,) = card.conversations
    assert (chat.channel, chat.status, chat.assignee) == ("sms", "open", None)
    assert [r.type for r in card.recent] == ["message.received.v1"]  # contacts, not desk work
    opened = [e for e in desk.view.timeline(caller) if e.type == "conversation.opened"]
    assert [e.occurred_at for e in opened] == [T0]  # beside the contact that opened it

    service = hub.desk()
    (conversation,) = service.conversations(caller)
    service.change_status(
        conversation.conversation_id,
        Status.assigned,
        by="supervisor-1",
        assignee="agent-7",
        expected_version=conversation.version,
    )
    desk.history.merge(anna, caller, by="agent-7", reason="same person")
    desk.caught_up()
    card = desk.view.card(anna)
    assert sorted((c.channel, c.status, c.assignee) for c in card.conversations) == [
        ("email", "open", None),
        ("sms", "assigned", "agent-7"),
    ]
    (thread,) = service.conversations(anna)
    service.change_status(
        thread.conversation_id, Status.resolved, by="agent-7", expected_version=thread.version
    )
    desk.caught_up()
    assert [c.channel for c in desk.view.card(anna).conversations] == ["sms"]


def test_a_whatsapp_customer_calling_for_the_first_time_is_known_to_the_voice_webhook(
    desk: Desk,
) -> None:
    """The voice webhook's caller lookup (``customer_for_address``) finds the person by their
    number on any phone channel, before the first call from it is recorded."""
    desk.record(whatsapp(f"whatsapp:{PHONE}", "wamid.1", 0))
    assert desk.view.customer_for_address(PHONE) == desk.owner(f"whatsapp:{PHONE}")
    assert desk.view.customer_for_address("+493055509999") is None
